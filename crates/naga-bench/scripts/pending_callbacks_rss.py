#!/usr/bin/env python3
"""Memory of pending callbacks: B batches whose one echo call returns ~S
bytes, their callbacks sent to a port nothing listens on (each waits for
its retry); prints naga's RSS before, at the peak while they were sent, and
once every callback waits for its retry.

Usage: pending_callbacks_rss.py <naga binary> [batches] [bytes]
"""
import json, sys, time, urllib.request

naga = sys.argv[1]
batches = int(sys.argv[2]) if len(sys.argv) > 2 else 60
size = int(sys.argv[3]) if len(sys.argv) > 3 else 900_000

from naga_rss import free_port, rss_mib, start_naga

proc, base, port = start_naga(naga, "agent")
dead = free_port()
before = peak = rss_mib(proc.pid)
text = "x" * size
for i in range(batches):
    body = json.dumps({"agent_calls": [{"tool_name": "echo", "instruction": text}],
                       "session_id": f"s{i}", "request_id": f"big-{i}",
                       "callback_url": f"http://127.0.0.1:{dead}/cb"}).encode()
    req = urllib.request.Request(base + "/schedule", data=body,
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=60).read()
    peak = max(peak, rss_mib(proc.pid))
# Every callback has made its first attempt and waits (5 s, then 5 min).
deadline = time.time() + 120
while time.time() < deadline:
    peak = max(peak, rss_mib(proc.pid))
    pending = json.load(urllib.request.urlopen(base + "/callbacks?status=pending&limit=1000"))
    if pending["count"] == batches and all(c["attempts"] >= 2 for c in pending["callbacks"]):
        break
    time.sleep(0.5)
time.sleep(1)
waiting = rss_mib(proc.pid)
proc.terminate(); proc.wait()
print(f"batches={batches} bytes={size}: RSS before {before:.1f} MiB, peak {peak:.1f} MiB, "
      f"waiting for retries {waiting:.1f} MiB")
