#!/usr/bin/env bash
# Starts a PostgreSQL server for benchmarks at its default settings (fsync
# on, as users run it; unlike .ci/postgres's test server), on loopback,
# data under /tmp, and prints its URL for `naga-bench --postgres`.
# Usage: url=$(bash crates/naga-bench/scripts/postgres_defaults.sh)
set -euo pipefail
cd /
port=${PORT:-54330}
dir=/tmp/naga-bench-postgres-$port
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
    as=(runuser -u postgres --)
fi
if ! { [ -f "$dir/data/postmaster.pid" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }; then
    rm -rf "$dir" && mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U naga --auth=trust -E UTF8 --no-locale >/dev/null
    # Where it listens, and pg_stat_statements (naga-bench counts the
    # statements per batch): every other setting is the default.
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir \
            -c shared_preload_libraries=pg_stat_statements" >/dev/null
    psql "postgres://naga@127.0.0.1:$port/postgres" -qc "CREATE EXTENSION pg_stat_statements" >/dev/null
fi
echo "postgres://naga@127.0.0.1:$port"
