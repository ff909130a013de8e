"""A backlog behind one long batch: accepted, held in the store (not in
memory), drained in order. One batch of session `backlog` runs for
LONG_S seconds; meanwhile 8 keep-alive clients send batches of the same
session for LOAD_S seconds. Prints the answers by status, naga's peak
RSS while the backlog grows and waits, how long the backlog took to drain
once the long batch ended, and whether every batch of the session started
only after the one before it ended (read from the SQLite file).
Usage (see BENCHMARKS.md):
    python3 crates/naga-bench/scripts/backlog_drain.py target/release/naga [LOAD_S] [LONG_S]
"""
import http.client, json, os, sqlite3, subprocess, sys, tempfile, threading, time

naga = sys.argv[1]
LOAD_S = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
LONG_S = float(sys.argv[3]) if len(sys.argv) > 3 else LOAD_S + 2
PORT, T = 18991, 8
data = tempfile.mkdtemp(prefix="naga-backlog-")
proc = subprocess.Popen([naga, "serve", "--only", "agent", "--agent-addr", f"127.0.0.1:{PORT}",
                         "--data-dir", data], stdout=subprocess.DEVNULL,
                        stderr=open(f"{data}/naga.log", "w"))


def rss_mib():
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def body(i, delay):
    return json.dumps({"agent_calls": [{"tool_name": "echo", "instruction": "x" * 40,
                                        "parameters": {"delay_ms": delay}}],
                       "session_id": "backlog", "request_id": f"backlog-{i:08d}-0b7a4c2e-5d1f-4a8e-9c3b",
                       "query": "批量Agent任务执行 (1 个)", "analysis_session_id": "analysis_backlog_1703123456"})


def post(conn, payload):
    conn.request("POST", "/schedule", payload, {"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status


for _ in range(200):
    try:
        c = http.client.HTTPConnection("127.0.0.1", PORT)
        c.request("GET", "/health")
        c.getresponse().read()
        break
    except OSError:
        time.sleep(0.05)
start = time.time()
assert post(c, body(0, int(LONG_S * 1000))) == 200
codes, lock, peak = {}, threading.Lock(), [0.0]
stop_at = start + LOAD_S


def worker(t):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    i = 1 + t
    while time.time() < stop_at:
        status = post(conn, body(i, 0))
        with lock:
            codes[status] = codes.get(status, 0) + 1
        i += T


def sampler():
    while proc.poll() is None and not done.is_set():
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.2)


done = threading.Event()
threading.Thread(target=sampler, daemon=True).start()
ts = [threading.Thread(target=worker, args=(t,)) for t in range(T)]
[t.start() for t in ts]
[t.join() for t in ts]
accepted = codes.get(200, 0)
db = sqlite3.connect(f"file:{data}/naga.db?mode=ro", uri=True)


def unfinished():
    return db.execute("SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running')").fetchone()[0]


while time.time() < start + LONG_S:
    time.sleep(0.1)
long_end = time.time()
while unfinished() > 0 and proc.poll() is None:
    time.sleep(0.2)
if proc.poll() is not None:
    sys.exit(f"naga exited ({proc.returncode}): see {data}/naga.log")
drained = time.time() - long_end
done.set()
after = rss_mib()
out_of_order = db.execute(
    "SELECT COUNT(*) FROM tasks t JOIN tasks p ON t.prev_seq = p.seq "
    "WHERE t.session_id = 'backlog' AND t.started_at < p.finished_at").fetchone()[0]
total = db.execute("SELECT COUNT(*) FROM tasks WHERE status = 'succeeded'").fetchone()[0]
proc.terminate()
proc.wait()
print(json.dumps({"answers": codes, "accepted": accepted, "peak_rss_mib": round(peak[0], 1),
                  "rss_after_drain_mib": round(after, 1), "drain_s": round(drained, 1),
                  "drain_batches_per_s": round(accepted / drained) if drained else None,
                  "succeeded": total, "started_before_the_previous_ended": out_of_order}))
