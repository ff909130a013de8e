"""What the memory scripts share: a free loopback port, a process's RSS,
and a naga started on a temporary data dir once it answers."""
import socket, subprocess, tempfile, time, urllib.request


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_naga(naga, service):
    """`naga serve --only <service>` on a free port; (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([naga, "serve", "--data-dir", tempfile.mkdtemp(), "--only", service,
                             f"--{service}-addr", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    time.sleep(0.5)
    return proc, base, port
