#!/bin/bash
# Every benchmark, one after another on this machine, then the summary:
# the chart (docs/benchmarks/summary.png) and the table at the top of
# docs/benchmarks.md, drawn from the JSON each benchmark wrote.
#
#   bench/run.sh                  all of them, at their defaults (about 25 minutes on 2 cores)
#   bench/run.sh wal-archive hook-overhead       only those (names as below)
#   REPORT_ONLY=1 bench/run.sh    only the summary, from the committed JSON
#
# Run as root on a quiet machine with PostgreSQL 15, pgBackRest, nginx,
# openssl, curl, python3 with pip, fonts-dejavu-core and cargo:
#   apt-get update && apt-get install -y pgbackrest nginx fonts-dejavu-core
# Each script checks its own prerequisites and says what is missing, and
# takes its own settings from the environment (SCALE, RUNS, ...; see the
# head of each). Not part of `cargo test`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
all=(backup-vs-pgbackrest restore-vs-pgbackrest wal-archive-vs-pgbackrest backup-memory hook-overhead)
[ $# -gt 0 ] || set -- "${all[@]}"

if [ -z "${REPORT_ONLY:-}" ]; then
    for name in "$@"; do
        script="$root/bench/$name.sh"
        [ -x "$script" ] || { echo "run.sh: no benchmark $name (one of: ${all[*]})" >&2; exit 2; }
        printf '\n[%s] === %s ===\n' "$(date +%H:%M:%S)" "$name" >&2
        "$script"
    done
fi

cargo build --quiet --release --locked --manifest-path "$root/bench/report/Cargo.toml"
"$root/bench/report/target/release/bench-report" \
    "$root/docs/benchmarks" "$root/docs/benchmarks.md" "$root/docs/benchmarks/summary.png"
