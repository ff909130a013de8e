"""Writes BENCHMARKS.md's table from report.sh's runs (one JSON object a
line, naga-bench --json plus "build" and "pass"): the medians per build and
depth of sessions, between the file's report markers.

Usage: report.py <results.jsonl> <BENCHMARKS.md>
"""

import datetime
import json
import statistics
import subprocess
import sys

BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def row(build, sessions, runs):
    e2e = [r["end_to_end"] for r in runs]
    pg = [r["rounds"][0].get("postgres") or {} for r in runs]
    per_one = [p.get("one_node_per_batch") or {} for p in pg]
    lost = sum(e["naga_lost_callbacks"] for e in e2e) + sum(
        (p.get("one_node_lost_callbacks") or 0) + (p.get("two_nodes_lost_callbacks") or 0)
        for p in pg
    )
    cells = [
        build,
        f"{sessions:,}",
        fmt(median(e["naga_batches_per_s"] for e in e2e)),
        fmt(median(e["naga_cpu_us_per_batch"] for e in e2e)),
        fmt(max(e["naga_rss_mib_after"] for e in e2e)),
        fmt(median(p.get("one_node_batches_per_s") for p in pg)),
        fmt(median(p.get("two_nodes_batches_per_s") for p in pg)),
        fmt(median(p.get("two_nodes_to_sqlite") for p in pg), 2),
        fmt(median(p.get("statements") for p in per_one), 1),
        fmt(median(p.get("commits") for p in per_one), 1),
        f"{lost:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def table(runs):
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    first = runs[0]
    lines = [
        f"Written by `report.py` on {datetime.date.today()} at commit {commit}: "
        f"{max(r['pass'] for r in runs)} passes, {first['batches']:,} batches of "
        f"{first['calls_per_batch']} `echo` calls with a callback each, "
        f"{first['concurrency']} clients, {first['machine']['cores']} cores; "
        "medians over the passes, RSS the largest.",
        "",
        "| build | sessions | SQLite batches/s | CPU µs/batch | RSS after (MiB) "
        "| PostgreSQL 1 node | 2 nodes | 2 nodes / SQLite | statements/batch (1 node) "
        "| commits/batch (1 node) | callbacks lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = []
    for r in runs:
        key = (r["build"], r["sessions"])
        if key not in keys:
            keys.append(key)
    for build, sessions in sorted(keys, key=lambda k: (k[1], keys.index(k))):
        lines.append(
            row(build, sessions, [r for r in runs if (r["build"], r["sessions"]) == (build, sessions)])
        )
    return "\n".join(lines)


def main(results, document):
    with open(results) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    text = open(document).read()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(document, "w") as f:
        f.write(f"{head}{BEGIN}\n{table(runs)}\n{END}{tail}")


if __name__ == "__main__":
    main(*sys.argv[1:])
