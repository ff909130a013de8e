#!/usr/bin/env python3
"""MCP session memory: N `initialize` requests to naga's MCP face (`/mcp` on
the agent server) that never say DELETE; prints naga's RSS before, at the
peak and after, and how many sessions the last one still reaches.

Usage: mcp_sessions_rss.py <naga binary> [initializations]
"""
import http.client, json, sys, time

from naga_rss import rss_mib, start_naga

naga, n = sys.argv[1], int(sys.argv[2:3] and sys.argv[2] or 10_000)
proc, base, port = start_naga(naga, "agent")
before = rss_mib(proc.pid)
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                              "clientInfo": {"name": "rss", "version": "1"}}})
headers = {"content-type": "application/json", "host": f"127.0.0.1:{port}",
           "accept": "application/json, text/event-stream"}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
peak, ids, started = before, [], time.time()
for i in range(n):
    conn.request("POST", "/mcp", body, headers)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
    ids.append(resp.getheader("mcp-session-id"))
    if i % 500 == 0:
        peak = max(peak, rss_mib(proc.pid))
took = time.time() - started
time.sleep(2)
peak = max(peak, rss_mib(proc.pid))
alive = 0
probe = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"})
for sid in ids[-300:]:
    conn.request("POST", "/mcp", probe, {**headers, "mcp-session-id": sid})
    resp = conn.getresponse()
    resp.read()
    alive += resp.status == 200
after = rss_mib(proc.pid)
proc.terminate(); proc.wait()
print(f"initializations={n} in {took:.1f} s: RSS before {before:.1f} MiB, peak {peak:.1f} MiB, "
      f"after {after:.1f} MiB; of the last 300 sessions {alive} still answer")
