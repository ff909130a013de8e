#!/usr/bin/env python3
"""A store under hours of steady load (issue 43): batches of two echo calls,
each with a callback to a local receiver, at a fixed rate spread over many
sessions, for MINUTES, against one SQLite node or NODES nodes sharing a
PostgreSQL database; retention at WINDOW (0: keep everything).

Every SAMPLE seconds it reads the store's size from /health (bytes, rows
per table; on PostgreSQL each table's bytes and dead row versions) and the
nodes' commit times from /metrics; it times every accept (POST /schedule)
and every batch from its accept to its callback; it reads the nodes' log
for each prune round (when, how long). It prints a JSON report: per 5-minute
window the throughput, the accept and end-to-end latencies, the mean store
commit; the size series; the accept p99 inside and outside prune rounds.

Usage: steady.py --naga target/release/naga --minutes 30 --rate 20 \
           [--postgres postgres://naga@127.0.0.1:54330 --nodes 2] \
           [--window 2m] [--every 30s] [--sessions 100] > report.json
"""
import argparse, http.client, json, os, queue, subprocess, sys, tempfile, threading, time, uuid
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from naga_rss import free_port

A = argparse.ArgumentParser()
A.add_argument("--naga", required=True)
A.add_argument("--minutes", type=float, default=30)
A.add_argument("--rate", type=float, default=20)
A.add_argument("--sessions", type=int, default=100)
A.add_argument("--window", default="2m")
A.add_argument("--every", default="30s")
A.add_argument("--batch", type=int, default=0, help="[retention] batch (0: naga's default)")
A.add_argument("--sample", type=float, default=15)
A.add_argument("--postgres")
A.add_argument("--nodes", type=int, default=1)
A.add_argument("--workers", type=int, default=16)
args = A.parse_args()

received = {}  # task id -> time its callback arrived
received_lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        now = time.time()
        self.send_response(200)
        self.end_headers()
        try:
            task = json.loads(body).get("task_id")
        except ValueError:
            task = None
        with received_lock:
            received.setdefault(task, now)

    def log_message(self, *a):
        pass


recv_port = free_port()
server = ThreadingHTTPServer(("127.0.0.1", recv_port), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()

work = tempfile.mkdtemp(prefix="naga-steady-")
config = os.path.join(work, "naga.toml")
with open(config, "w") as f:
    w = args.window
    f.write(f'[retention]\ntasks = "{w}"\ncallbacks = "{w}"\ndead_callbacks = "{w}"\n'
            f'conversations = "{w}"\nrequests = "{w}"\nevery = "{args.every}"\n')
    if args.batch:
        f.write(f"batch = {args.batch}\n")
database = None
if args.postgres:
    name = "naga_steady_" + uuid.uuid4().hex[:8]
    subprocess.run(["psql", f"{args.postgres}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    database = f"{args.postgres}/{name}"

prunes = []  # (start, end) of each prune round, any node


def follow_log(proc):
    for line in proc.stderr:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        fields = entry.get("fields", {})
        if "took_ms" in fields and "removed" in fields:
            end = time.time()
            prunes.append((end - fields["took_ms"] / 1000, end, fields["removed"]))


nodes = []
for i in range(args.nodes):
    port = free_port()
    cmd = [args.naga, "serve", "--config", config, "--data-dir", os.path.join(work, f"node{i}"),
           "--only", "agent", "--agent-addr", f"127.0.0.1:{port}", "--log-json"]
    if database:
        cmd += ["--database-url", database]
    env = dict(os.environ, RUST_LOG="naga_engine::retention=info,warn")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    threading.Thread(target=follow_log, args=(proc,), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    nodes.append((proc, port, base))


def get_json(base, path):
    return json.load(urllib.request.urlopen(base + path, timeout=10))


def commit_totals():
    """Sum and count of naga_store_commit_seconds over the nodes."""
    total, count = 0.0, 0
    for _, _, base in nodes:
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith("naga_store_commit_seconds_sum"):
                total += float(line.split()[-1])
            elif line.startswith("naga_store_commit_seconds_count"):
                count += int(float(line.split()[-1]))
    return total, count


accepts = []  # (sent, seconds, status, task id)
todo = queue.Queue()
stop = threading.Event()


def worker(n):
    _, port, _ = nodes[n % len(nodes)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        item = todo.get()
        if item is None:
            return
        rid, session = item
        body = json.dumps({
            "query": "steady", "session_id": session, "request_id": rid,
            "analysis_session_id": f"analysis_{session}",
            "callback_url": f"http://127.0.0.1:{recv_port}/cb",
            "agent_calls": [{"tool_name": "echo", "instruction": f"step {k}", "agentType": "agent",
                             "parameters": {"delay_ms": 10}} for k in range(2)]})
        sent = time.time()
        try:
            conn.request("POST", "/schedule", body, {"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except Exception:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = 0
        accepts.append((sent, time.time() - sent, status, rid))


threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.workers)]
for t in threads:
    t.start()

samples = []


def sampler(began):
    while not stop.is_set():
        now = time.time()
        try:
            size = get_json(nodes[0][2], "/health")["store"].get("size")
            total, count = commit_totals()
        except Exception as e:
            print(f"sample failed: {e}", file=sys.stderr)
            size, total, count = None, 0, 0
        files = {}
        if not database:
            d = os.path.join(work, "node0")
            files = {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("naga.db")}
        with received_lock:
            done = len(received)
        samples.append({"t": round(now - began, 1), "size": size, "files": files,
                        "commit_sum": total, "commit_count": count, "callbacks": done,
                        "accepted": len(accepts)})
        stop.wait(args.sample)


began = time.time()
threading.Thread(target=sampler, args=(began,), daemon=True).start()
end = began + args.minutes * 60
i = 0
while True:
    due = began + i / args.rate
    if due >= end:
        break
    wait = due - time.time()
    if wait > 0:
        time.sleep(wait)
    todo.put((str(uuid.uuid4()), f"steady-{i % args.sessions}"))
    i += 1
for _ in threads:
    todo.put(None)
for t in threads:
    t.join()
deadline = time.time() + 60
while time.time() < deadline:
    with received_lock:
        if len(received) >= sum(1 for a in accepts if a[2] == 200):
            break
    time.sleep(0.5)
time.sleep(args.sample)
stop.set()


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000, 2) if xs else None


def window(lo, hi):
    """Figures of the accepts sent in [lo, hi) seconds after the start."""
    sent = [a for a in accepts if lo <= a[0] - began < hi]
    ok = [a for a in sent if a[2] == 200]
    e2e = [received[a[3]] - (a[0] + a[1]) for a in ok if a[3] in received]
    s = [x for x in samples if lo <= x["t"] <= hi]
    commit = None
    if len(s) >= 2 and s[-1]["commit_count"] > s[0]["commit_count"]:
        commit = round((s[-1]["commit_sum"] - s[0]["commit_sum"]) /
                       (s[-1]["commit_count"] - s[0]["commit_count"]) * 1000, 3)
    cb = (s[-1]["callbacks"] - s[0]["callbacks"]) / (s[-1]["t"] - s[0]["t"]) if len(s) >= 2 else None
    return {"from_s": lo, "to_s": hi, "accepted": len(ok), "refused": len(sent) - len(ok),
            "callbacks_per_s": round(cb, 2) if cb else None,
            "accept_p50_ms": pct([a[1] for a in ok], 50), "accept_p99_ms": pct([a[1] for a in ok], 99),
            "end_to_end_p50_ms": pct(e2e, 50), "end_to_end_p99_ms": pct(e2e, 99),
            "store_commit_mean_ms": commit}


def in_prune(a):
    return any(s <= a[0] + a[1] and a[0] <= e for s, e, _ in prunes)


total_s = args.minutes * 60
ok = [a for a in accepts if a[2] == 200]
during = [a[1] for a in ok if in_prune(a)]
outside = [a[1] for a in ok if not in_prune(a)]
report = {
    "backend": "postgres" if database else "sqlite", "nodes": args.nodes, "minutes": args.minutes,
    "rate": args.rate, "sessions": args.sessions, "window": args.window, "every": args.every,
    "sent": len(accepts), "accepted": len(ok),
    "lost_callbacks": sum(1 for a in ok if a[3] not in received),
    "first_5_min": window(0, 300), "last_5_min": window(total_s - 300, total_s),
    "batch": args.batch, "prune_rounds": len(prunes),
    "prune_round_ms_max": round(max((e - s for s, e, _ in prunes), default=0) * 1000, 1),
    "accept_p99_ms_during_prunes": pct(during, 99), "accepts_during_prunes": len(during),
    "accept_p99_ms_outside_prunes": pct(outside, 99),
    "samples": samples,
}
print(json.dumps(report, indent=1))
for proc, _, _ in nodes:
    proc.terminate()
for proc, _, _ in nodes:
    proc.wait(timeout=30)
if database:
    subprocess.run(["psql", f"{args.postgres}/postgres", "-qc", f"DROP DATABASE {name} WITH (FORCE)"])
subprocess.run(["rm", "-rf", work])
