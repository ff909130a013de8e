#!/usr/bin/env bash
# Runs naga-bench's end-to-end runs on two naga binaries in turn (new, old,
# new, old, ...) for shallow and deep sessions, so that both see the same
# machine: the side-by-side figures in BENCHMARKS.md. With a PostgreSQL URL
# (at its defaults: postgres_defaults.sh), the new binary's runs also drain
# through one and two PostgreSQL nodes.
# Usage: alternate.sh <old naga> <new naga> [pairs=3] [postgres url]
# Env: SESSIONS="97 1000" (sessions per run), BATCHES=20000.
# Prints one line per run, headed by the binary, the sessions and the time.
set -euo pipefail
old=$1 new=$2 pairs=${3:-3} pg=${4:-}
bench=${NAGA_BENCH:-$(dirname "$0")/../../../target/release/naga-bench}
for _ in $(seq "$pairs"); do
    for naga in "$new" "$old"; do
        for sessions in ${SESSIONS:-97 1000}; do
            extra=()
            [ -n "$pg" ] && [ "$naga" = "$new" ] && extra=(--postgres "$pg")
            echo "== $naga, $sessions sessions, $(date +%T)"
            "$bench" --naga "$naga" --end-to-end-only --rounds 1 \
                --batches "${BATCHES:-20000}" --sessions "$sessions" "${extra[@]}" 2>/dev/null \
                | grep median
        done
    done
done
