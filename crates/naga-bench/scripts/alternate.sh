#!/usr/bin/env bash
# Runs naga-bench's end-to-end runs on naga binaries in turn (each pass runs
# every binary once) for shallow and deep sessions, so that all see the
# same machine: the side-by-side figures in BENCHMARKS.md. With PG set to a
# PostgreSQL URL (at its defaults: postgres_defaults.sh), the first
# binary's runs also drain through one and two PostgreSQL nodes.
# Usage: [PASSES=3] [SESSIONS="97 1000"] [BATCHES=20000] [PG=<url>] \
#        alternate.sh <naga> [<naga>...]
# Prints one line per run, headed by the binary, the sessions and the time.
set -euo pipefail
bench=${NAGA_BENCH:-$(dirname "$0")/../../../target/release/naga-bench}
for _ in $(seq "${PASSES:-3}"); do
    for naga in "$@"; do
        for sessions in ${SESSIONS:-97 1000}; do
            extra=()
            [ -n "${PG:-}" ] && [ "$naga" = "$1" ] && extra=(--postgres "$PG")
            echo "== $naga, $sessions sessions, $(date +%T)"
            "$bench" --naga "$naga" --end-to-end-only --rounds 1 \
                --batches "${BATCHES:-20000}" --sessions "$sessions" "${extra[@]}" 2>/dev/null \
                | grep median
        done
    done
done
