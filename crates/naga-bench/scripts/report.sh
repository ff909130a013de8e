#!/usr/bin/env bash
# BENCHMARKS.md's table, measured: naga-bench's end-to-end run on each build
# in turn (every pass runs every build, so all see the same machine), with
# shallow and deep sessions, and through one and two PostgreSQL nodes when
# PG names a server at its defaults (postgres_defaults.sh). The runs go to
# target/bench/results.jsonl; report.py then writes the table.
# Usage: [PASSES=3] [SESSIONS="97 1000"] [BATCHES=20000] [PG=<url>] \
#        report.sh <label>=<naga binary> [<label>=<naga binary>...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/../../..
bench=${NAGA_BENCH:-$root/target/release/naga-bench}
mkdir -p "$root/target/bench"
out=$root/target/bench/results.jsonl
: >"$out"
for pass in $(seq "${PASSES:-3}"); do
    for build in "$@"; do
        label=${build%%=*}
        naga=${build#*=}
        for sessions in ${SESSIONS:-97 1000}; do
            extra=()
            [ -n "${PG:-}" ] && extra=(--postgres "$PG")
            echo "pass $pass: $label, $sessions sessions, $(date +%T)" >&2
            "$bench" --naga "$naga" --end-to-end-only --rounds 1 --json \
                --batches "${BATCHES:-20000}" --sessions "$sessions" "${extra[@]}" 2>/dev/null |
                python3 -c 'import json, sys
run = json.load(sys.stdin)
run["build"], run["pass"] = sys.argv[1], int(sys.argv[2])
print(json.dumps(run))' "$label" "$pass" >>"$out"
        done
    done
done
python3 "$here/report.py" "$out" "$root/BENCHMARKS.md"
