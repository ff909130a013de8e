#!/usr/bin/env python3
"""Slow and idle clients against one naga: N connections that send their
request headers a byte every few seconds and N that send headers and then
trickle the body the same way, while a normal client asks `/health` once a
second. Prints how many slow connections naga closed and when, and the
normal client's slowest answer. Run it under a low open-files limit to see
that the slow ones do not starve the rest, e.g.
`prlimit --nofile=300:300 python3 slow_clients.py <naga> 200 60`.

Usage: slow_clients.py <naga binary> [connections of each kind] [seconds]
"""
import socket, sys, threading, time, urllib.request

from naga_rss import start_naga

naga = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 60

proc, base, port = start_naga(naga, "agent")
start = time.time()
closed = []  # seconds after the start at which naga closed a slow connection
refused = [0]
lock = threading.Lock()


def trickle(kind):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        with lock:
            refused[0] += 1
        return
    if kind == "header":
        data = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    else:
        s.sendall(b"POST /schedule HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                  b"content-length: 100000\r\n\r\n")
        data = b"{" + b" " * 99_999
    try:
        for b in data:
            s.sendall(bytes([b]))
            s.settimeout(3)
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    raise ConnectionError
                break  # an answer (an error status): naga ended it
            except socket.timeout:
                pass
            if time.time() - start > seconds:
                return
    except (ConnectionError, OSError):
        pass
    with lock:
        closed.append(time.time() - start)


threads = [threading.Thread(target=trickle, args=(k,), daemon=True)
           for k in ("header", "body") for _ in range(n)]
for t in threads:
    t.start()
slowest = 0.0
failures = 0
while time.time() - start < seconds:
    t0 = time.time()
    try:
        urllib.request.urlopen(base + "/health", timeout=5).read()
        slowest = max(slowest, time.time() - t0)
    except Exception:
        failures += 1
    time.sleep(max(0.0, 1 - (time.time() - t0)))
proc.terminate()
proc.wait()
closed.sort()
print(f"{n} slow-header + {n} slow-body connections for {seconds} s: "
      f"{len(closed)} closed by naga (after {closed[0] if closed else 0:.1f} s at the earliest, "
      f"{closed[len(closed) // 2] if closed else 0:.1f} s for half, {closed[-1] if closed else 0:.1f} s "
      f"at the latest), {refused[0]} refused at connect; "
      f"/health once a second: slowest {slowest * 1000:.0f} ms, {failures} failed")
