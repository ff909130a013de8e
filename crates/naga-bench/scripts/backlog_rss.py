"""Memory of a naga node whatever the backlog: one long batch (an hour of
echo) in session `backlog`, then N more batches behind it from 8 keep-alive
clients; prints the answers by status. Usage (see BENCHMARKS.md):
    naga serve --only agent --agent-addr 127.0.0.1:18990 --data-dir /tmp/rss/data &
    python3 crates/naga-bench/scripts/backlog_rss.py 60000
    grep VmRSS /proc/$(pgrep -f 18990)/status
"""
import http.client, json, threading, sys
N = int(sys.argv[1]); T = 8
codes = {}
lock = threading.Lock()
def body(i, delay):
    return json.dumps({"agent_calls": [{"tool_name": "echo", "instruction": "x" * 40, "parameters": {"delay_ms": delay}}],
                       "session_id": "backlog", "request_id": f"backlog-{i:08d}-0b7a4c2e-5d1f-4a8e-9c3b", "query": "批量Agent任务执行 (1 个)",
                       "analysis_session_id": "analysis_backlog_1703123456"})
c = http.client.HTTPConnection("127.0.0.1", 18990); c.request("POST", "/schedule", body(0, 3_600_000), {"content-type": "application/json"}); print(c.getresponse().status)
def worker(t):
    conn = http.client.HTTPConnection("127.0.0.1", 18990)
    for i in range(1 + t, N + 1, T):
        conn.request("POST", "/schedule", body(i, 0), {"content-type": "application/json"})
        r = conn.getresponse(); r.read()
        with lock: codes[r.status] = codes.get(r.status, 0) + 1
ts = [threading.Thread(target=worker, args=(t,)) for t in range(T)]
[t.start() for t in ts]; [t.join() for t in ts]
print(codes)
