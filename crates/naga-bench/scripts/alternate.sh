#!/usr/bin/env bash
# Runs naga-bench on two naga binaries in turn (new, old, new, old, ...), so
# that both see the same machine and server: the side-by-side figures in
# BENCHMARKS.md. PostgreSQL at its defaults first: postgres_defaults.sh.
# Usage: alternate.sh <old naga> <new naga> [pairs=4] [postgres url]
# Prints each run's summary lines, headed by the binary and the time.
set -euo pipefail
old=$1 new=$2 pairs=${3:-4}
pg=${4:-postgres://naga@127.0.0.1:54330}
bench=${NAGA_BENCH:-$(dirname "$0")/../../../target/release/naga-bench}
for _ in $(seq "$pairs"); do
    for naga in "$new" "$old"; do
        echo "== $naga $(date +%T)"
        "$bench" --naga "$naga" --rounds 1 --batches 10000 --postgres "$pg" 2>/dev/null \
            | grep -E "batches/s|lost|node"
    done
done
