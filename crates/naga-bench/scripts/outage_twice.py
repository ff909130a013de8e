#!/usr/bin/env python3
"""Two naga nodes on one PostgreSQL through an outage, at the defaults
(heartbeat 2 s, lease 30 s): B batches of three 300 ms echo calls in S
sessions, PostgreSQL stopped for D seconds mid-run and started again.
Prints how many calls were recorded twice (a task's steps beyond 3), how
many callbacks reached the receiver more than once (by webhook-id), and
when the last callback came after PostgreSQL's return.

Usage: outage_twice.py <naga binary> <outage seconds> [batches] [sessions]
(it starts a PostgreSQL server of its own at its default settings, with
`postgres_defaults.sh` on a free port, and stops it at the end)
"""
import http.server, json, os, subprocess, sys, tempfile, threading, time, urllib.request

from naga_rss import free_port

naga, outage = sys.argv[1], float(sys.argv[2])
batches = int(sys.argv[3]) if len(sys.argv) > 3 else 200
sessions = int(sys.argv[4]) if len(sys.argv) > 4 else 50
here = os.path.dirname(os.path.abspath(__file__))
# PostgreSQL at its default settings (fsync on), on a port of its own.
pg_port = free_port()
pg_dir = f"/tmp/naga-bench-postgres-{pg_port}"
subprocess.run(["bash", os.path.join(here, "postgres_defaults.sh")], check=True,
               env=dict(os.environ, PORT=str(pg_port)), stdout=subprocess.DEVNULL)
pg_bin = subprocess.run("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1", shell=True,
                        capture_output=True, text=True).stdout.strip()
as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
work = tempfile.mkdtemp(prefix="naga-outage-")


def pg_ctl(*args):
    subprocess.run(as_pg + [f"{pg_bin}/pg_ctl", "-D", f"{pg_dir}/data", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


got, lock = [], threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with lock:
            got.append((self.headers["webhook-id"], body.get("task_id"), time.time()))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
callback = f"http://127.0.0.1:{receiver.server_address[1]}/cb"

database = f"postgres://naga@127.0.0.1:{pg_port}/naga_outage"
nodes = []
for name in ["a", "b"]:
    port = free_port()
    proc = subprocess.Popen([naga, "serve", "--only", "agent", "--agent-addr", f"127.0.0.1:{port}",
                             "--data-dir", f"{work}/{name}", "--database-url", database],
                            stdout=subprocess.DEVNULL, stderr=open(f"{work}/{name}.log", "w"))
    nodes.append((proc, f"http://127.0.0.1:{port}"))
    for _ in range(100):
        try:
            urllib.request.urlopen(nodes[-1][1] + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.1)


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))


ids = [f"outage-{i}" for i in range(batches)]
for i, id in enumerate(ids):
    calls = [{"tool_name": "echo", "instruction": f"{id}#{c}", "parameters": {"delay_ms": 300}}
             for c in range(3)]
    post(nodes[i % 2][1], "/schedule", {"agent_calls": calls, "session_id": f"s{i % sessions}",
                                        "request_id": id, "callback_url": callback})
time.sleep(1.5)
pg_ctl("stop", "-m", "fast", "-w")
time.sleep(outage)
pg_ctl("start", "-w", "-l", f"{pg_dir}/log", "-o",
       f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {pg_dir}")
back = time.time()
deadline = back + 180
while time.time() < deadline:
    with lock:
        called = {t for _, t, _ in got}
    if all(id in called for id in ids):
        break
    time.sleep(0.2)
with lock:
    called = {t for _, t, _ in got}
    last = max((at for _, _, at in got), default=back)
    per_id = {}
    for wid, _, _ in got:
        per_id[wid] = per_id.get(wid, 0) + 1
twice_calls = 0
for id in ids:
    task = json.load(urllib.request.urlopen(f"{nodes[0][1]}/tasks/{id}", timeout=10))
    twice_calls += max(0, task.get("steps_count", 0) - 3)
for proc, _ in nodes:
    proc.terminate()
    proc.wait()
pg_ctl("stop", "-m", "immediate", "-w")
subprocess.run(["rm", "-rf", pg_dir])
print(f"outage {outage:.0f} s, {batches} batches in {sessions} sessions: "
      f"{len(called)}/{batches} called back, calls recorded twice {twice_calls}, "
      f"callbacks sent more than once {sum(1 for n in per_id.values() if n > 1)}, "
      f"last callback {last - back:.1f} s after PostgreSQL's return")
