#!/usr/bin/env python3
"""SSE fan-out memory: N subscribers of one session that never read, then
E notifications of S bytes each; prints naga's RSS before, at the end of the
burst, and once every subscriber has closed.

Usage: sse_fanout_rss.py <naga binary> [subscribers] [events] [bytes]
"""
import json, socket, sys, time, urllib.request

naga, subs, events, size = sys.argv[1], int(sys.argv[2:3] and sys.argv[2] or 300), \
    int(sys.argv[3:4] and sys.argv[3] or 20), int(sys.argv[4:5] and sys.argv[4] or 900_000)

from naga_rss import free_port, rss_mib, start_naga

proc, base, port = start_naga(naga, "api")
before = rss_mib(proc.pid)
socks = []
for _ in range(subs):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /sessions/fan/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    socks.append(s)
time.sleep(1)
text = "满" * (size // 3)
peak = before
for i in range(events):
    body = json.dumps({"session_id": "fan", "action": "show_tool_ai_response",
                       "ai_response": f"{i}:{text}"}, ensure_ascii=False).encode()
    req = urllib.request.Request(base + "/ui_notification", data=body,
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    peak = max(peak, rss_mib(proc.pid))
time.sleep(2)
peak = max(peak, rss_mib(proc.pid))
for s in socks:
    s.close()
time.sleep(3)
after = rss_mib(proc.pid)
proc.terminate(); proc.wait()
print(f"subscribers={subs} events={events} bytes={size}: RSS before {before:.1f} MiB, "
      f"peak {peak:.1f} MiB, after close {after:.1f} MiB")
