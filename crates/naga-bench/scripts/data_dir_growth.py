#!/usr/bin/env python3
"""Data directory growth: N batches of one echo call with an S-byte
instruction, callbacks delivered to a local receiver; prints the sizes of
naga.db and its WAL before, after (idle) and after a clean stop. Then
`sqlite3 DIR/naga.db "select name, sum(pgsize) from dbstat group by name"`.

Usage: data_dir_growth.py <naga binary> <empty data dir> [batches] [bytes]
"""
import json, os, subprocess, sys, time, urllib.request
from naga_rss import free_port
naga = sys.argv[1]; d = sys.argv[2]; n = int(sys.argv[3]) if len(sys.argv) > 3 else 10
size = int(sys.argv[4]) if len(sys.argv) > 4 else 900_000
port = free_port()
p = subprocess.Popen([naga, "serve", "--data-dir", d, "--only", "agent", "--agent-addr", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(100):
    try: urllib.request.urlopen(base + "/health", timeout=1); break
    except Exception: time.sleep(0.1)
def sizes():
    return {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("naga.db")}
print("before", sizes())
text = "x" * size
recv = free_port()
import threading, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"])); self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", recv), H); threading.Thread(target=srv.serve_forever, daemon=True).start()
for i in range(n):
    body = json.dumps({"agent_calls": [{"tool_name": "echo", "instruction": text}], "session_id": f"s{i}", "request_id": f"big-{i}",
                       "callback_url": f"http://127.0.0.1:{recv}/cb"}).encode()
    urllib.request.urlopen(urllib.request.Request(base + "/schedule", data=body, headers={"content-type": "application/json"}), timeout=60).read()
deadline = time.time() + 60
while time.time() < deadline:
    t = json.load(urllib.request.urlopen(base + "/callbacks?status=delivered&limit=1000"))
    if t["count"] == n: break
    time.sleep(0.3)
time.sleep(2)
print("after", sizes())
p.terminate(); p.wait()
print("after stop", sizes())
