#!/usr/bin/env python3
"""The rows BENCHMARKS.md shows for `steady.py` reports: per run, the
store's size once the first window has passed (its range around the mean),
at the end, and the first and last 5 minutes side by side.

Usage: steady_table.py REPORT.json [REPORT.json ...]
"""
import json, sys


def window_s(text):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return 0 if text == "0" else float(text[:-1]) * units[text[-1]]


def every_table(r, name):
    for s in r["samples"]:
        for t in (s["size"] or {}).get("tables", []):
            if t["table"] == name:
                yield s["t"], t


print("| run | size after the first window (range) | size at the end | tasks rows at the end "
      "| callbacks/s first → last 5 min | end-to-end p50 / p99 ms first → last | store commit "
      "mean ms first → last | accept p99 ms during prunes / outside (accepts during) | lost |")
print("|---|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    r = json.load(open(path))
    settle = window_s(r["window"]) + window_s(r["every"]) + 60
    sizes = [(s["t"], s["size"]["bytes"]) for s in r["samples"] if s["size"]]
    steady = [b for t, b in sizes if t >= settle] if r["window"] != "0" else [b for _, b in sizes]
    mean = sum(steady) / len(steady)
    spread = max(abs(b - mean) for b in steady) / mean * 100
    tasks = [t["rows"] for _, t in every_table(r, "tasks")]
    f, l = r["first_5_min"], r["last_5_min"]
    run = f"{r['backend']}, {r['nodes']} node{'s' if r['nodes'] > 1 else ''}, " \
          f"{r['rate']:g}/s, window {r['window']}"
    size = f"{mean / 1e6:.1f} MB ±{spread:.0f}%" if r["window"] != "0" else \
        f"{steady[0] / 1e6:.1f} → {steady[-1] / 1e6:.1f} MB (growing)"
    during = r["accept_p99_ms_during_prunes"]
    prunes = f"{during} / {r['accept_p99_ms_outside_prunes']} ({r['accepts_during_prunes']})" \
        if during is not None else f"— / {r['accept_p99_ms_outside_prunes']}"
    print(f"| {run} | {size} | {sizes[-1][1] / 1e6:.1f} MB | {tasks[-1] if tasks else '?'} "
          f"| {f['callbacks_per_s']} → {l['callbacks_per_s']} "
          f"| {f['end_to_end_p50_ms']} / {f['end_to_end_p99_ms']} → {l['end_to_end_p50_ms']} / {l['end_to_end_p99_ms']} "
          f"| {f['store_commit_mean_ms']} → {l['store_commit_mean_ms']} | {prunes} | {r['lost_callbacks']} |")
