#!/bin/bash
# WAL archiving: the charm binary's `wal-push` against pgBackRest's
# `archive-push` as PostgreSQL's archive_command, on the same WAL, the same
# S3 server and the same machine, in one run.
#
#   bench/wal-archive-vs-pgbackrest.sh     SEGMENTS=200 RUNS=3 LOAD_SECS=30 RATE=400 by default
#   SEGMENTS=20 RUNS=1 LOAD_SECS=5 bench/wal-archive-vs-pgbackrest.sh    a quick check
#   TOOLS="ours pgbackrest pgbackrest-async"   which tools (the default is the first two)
#   PGBR_LOG=detail            pgBackRest's own log files, in the work directory
#
# Two measures, each with PostgreSQL's own archiver calling the tool:
#
# - Backlog: a scratch PostgreSQL 15 cluster is loaded with pgbench while
#   its archive_command is empty, until SEGMENTS segments wait in
#   pg_wal/archive_status as `.ready`; it is stopped and kept as a template.
#   Each timed run starts a copy of the template, sets the tool's
#   archive_command, reloads, and times until no `.ready` is left:
#   segments per second. Every run archives into a repository path of its
#   own, so nothing is "already archived".
# - Lag: right after the backlog is drained, the same server gets a steady
#   `pgbench -R RATE` load for LOAD_SECS; every 0.5 s the `.ready` files
#   (segments waiting to be archived) are counted. Reported: the median and
#   the largest count, and how long the last segment took to be archived
#   after the load stopped (a WAL switch, then the wait).
#
# The tools, in alternating order from run to run:
#   ours        `postgresql-charm wal-push --settings <file> %p` (release build)
#   pgbackrest  `pgbackrest archive-push %p`, synchronous (its default)
#   pgbackrest-async   the same with archive-async=y, process-max=<cores>
#                      and a spool directory; only with TOOLS="ours
#                      pgbackrest pgbackrest-async". Against juju-local's S3
#                      server, pgBackRest 2.45's async push has failed on one
#                      segment of each backlog with "[500] Internal Server
#                      Error" after two minutes, while its synchronous push
#                      of the same segments succeeds; until that is
#                      understood it is left out of the default run.
# Both compress with zstd at the charm's level and speak HTTPS to
# juju-local's S3 server through an nginx TLS front (pgBackRest speaks only
# HTTPS to S3), as in bench/backup-vs-pgbackrest.sh.
#
# Writes docs/benchmarks/wal-archive-vs-pgbackrest.json and the generated
# section of docs/benchmarks.md (OUTPUT_DIR=DIR writes both under DIR);
# REPORT_ONLY=1 only rewrites that section; KEEP_LOGS=1 keeps the work
# directory. Needs root, PostgreSQL 15 (server, client, pgbench),
# pgBackRest, nginx, openssl, curl, python3 and cargo. Not part of
# `cargo test`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench_name=wal-archive-vs-pgbackrest
segments=${SEGMENTS:-200}
runs=${RUNS:-3}
load_secs=${LOAD_SECS:-30}
rate=${RATE:-400}
scale=${SCALE:-10}
output=${OUTPUT_DIR:-$root/docs}
upstream_keepalive=16
# shellcheck source=lib/pgbackrest-bench.sh
. "$root/bench/lib/pgbackrest-bench.sh"

report_json="$output/benchmarks/wal-archive-vs-pgbackrest.json"
report_md="$output/benchmarks.md"
pgbin=/usr/lib/postgresql/15/bin

report() {
    python3 "$root/bench/lib/wal_archive_report.py" "$report_json" "$report_md"
}
if [ -n "${REPORT_ONLY:-}" ]; then
    report
    exit 0
fi

bench_prerequisites
[ -x "$pgbin/postgres" ] || die "PostgreSQL 15's server is missing: apt-get install -y postgresql-15"
bench_on_exit() {
    local dir
    for dir in "${template:-}" "${pg_run:-}"; do
        [ -n "$dir" ] && [ -f "$dir/postmaster.pid" ] || continue
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1 || true
    done
    [ -z "${s3_pid:-}" ] || kill "$s3_pid" 2>/dev/null || true
}
bench_workdir
mkdir -p "$work/runs"

say "building the charm binary and juju-local (release)"
cargo build --quiet --release --locked -p postgresql-charm -p juju-local --bins --manifest-path "$root/Cargo.toml"
install -m 0755 "$target/release/postgresql-charm" "$work/postgresql-charm"

# juju-local's S3 server on a free port, nginx with TLS in front of it.
access_key=bench-access secret_key=bench-secret-key-0123456789
s3_port=$(free_port)
JUJU_LOCAL_S3_ACCESS_KEY=$access_key JUJU_LOCAL_S3_SECRET_KEY=$secret_key \
    "$jl" s3-server --dir "$work/s3" --address "127.0.0.1:$s3_port" --bucket juju-local \
    >"$work/logs/s3.log" 2>&1 &
s3_pid=$!
s3_http="http://127.0.0.1:$s3_port"
bench_tls_front

pg_port=$(free_port)
sock="$work/sock"
mkdir -p "$sock" "$work/pgbackrest/log" "$work/pgbackrest/lock" "$work/pgbackrest/spool" "$work/template" "$work/pglogs"
chown -R postgres:postgres "$sock" "$work/pgbackrest" "$work/runs" "$work/template" "$work/pglogs"
chmod 0700 "$work/template"
chmod 1777 "$work/pgbackrest/log" "$work/pgbackrest/lock"
pg() { runuser -u postgres -- "$@"; }
psql_run() { sql -h "$sock" -p "$pg_port" -U postgres -d postgres "$@"; }
ctl() { pg "$pgbin/pg_ctl" -D "$1" -l "$work/pglogs/postgres.log" -w -t 120 "${@:2}" >/dev/null; }

# The template: a cluster with SEGMENTS segments waiting to be archived.
template="$work/template"
say "a scratch cluster: pgbench -i -s $scale, then load until $segments segments wait to be archived"
pg "$pgbin/initdb" -D "$template" --data-checksums -U postgres -A trust >"$work/logs/initdb.log" 2>&1
cat >>"$template/postgresql.conf" <<EOF
listen_addresses = ''
port = $pg_port
unix_socket_directories = '$sock'
shared_buffers = 128MB
max_wal_size = 16GB
wal_level = replica
archive_mode = on
archive_command = ''
include_if_exists = 'archive.conf'
EOF
ctl "$template" start
pgbench -h "$sock" -p "$pg_port" -U postgres -i -q -s "$scale" postgres >"$work/logs/pgbench-init.log" 2>&1
ready() { find "$1/pg_wal/archive_status" -name '*.ready' | wc -l; }
# Without waiting for each commit's flush: the same WAL, made sooner. A
# checkpoint before each round makes the first change to each page after it
# write a full-page image, as a busy server's WAL holds.
while [ "$(ready "$template")" -lt "$segments" ]; do
    psql_run -c CHECKPOINT
    PGOPTIONS='-c synchronous_commit=off' pgbench -h "$sock" -p "$pg_port" -U postgres -c 4 -j 2 -T 5 \
        postgres >>"$work/logs/pgbench-backlog.log" 2>&1
done
ctl "$template" -m fast stop
backlog=$(ready "$template")
wal_bytes=$(find "$template/pg_wal" -maxdepth 1 -type f -name '0*' -printf '%s\n' | awk '{ n += $1 } END { printf "%.0f\n", n }')
say "template: $backlog segments ready ($((wal_bytes / 1048576)) MiB in pg_wal)"

# pgBackRest's configuration; each run gets its own repo1-path.
pgbr_conf="$work/pgbackrest/pgbackrest.conf"
cat >"$pgbr_conf" <<EOF
[global]
repo1-type=s3
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$port
repo1-storage-ca-file=$work/tls/ca.pem
repo1-s3-uri-style=path
repo1-s3-bucket=juju-local
repo1-s3-region=us-east-1
repo1-s3-key=$access_key
repo1-s3-key-secret=$secret_key
compress-type=zst
compress-level=$level
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
spool-path=$work/pgbackrest/spool
log-level-console=warn
log-level-file=${PGBR_LOG:-off}

[bench]
pg1-path=$work/runs/data
pg1-socket-path=$sock
pg1-port=$pg_port
pg1-user=postgres
EOF
chown postgres:postgres "$pgbr_conf"

# Our settings file, for one repository path.
ours_settings() { # path
    python3 - "$work/settings-$1.json" "$https" "$work/tls/ca.pem" "$access_key" "$secret_key" "$1" <<'PY'
import json, sys
out, endpoint, ca, access, secret, path = sys.argv[1:]
json.dump({"endpoint": endpoint, "region": None, "bucket": "juju-local", "path": "/" + path,
           "uri-style": "path", "tls-ca-chain": [open(ca).read()], "storage-class": None,
           "access-key": access, "secret-key": secret, "repository": "bench.postgresql"},
          open(out, "w"))
PY
    chown postgres:postgres "$work/settings-$1.json"
    chmod 0600 "$work/settings-$1.json"
    printf '%s' "$work/settings-$1.json"
}

# One timed run of one tool: the backlog, then the lag under load.
one_run() { # run tool
    local run=$1 tool=$2 path="wal-$2-run$1" data="$work/runs/data" cmd
    rm -rf "$data"
    cp -a "$template" "$data"
    case $tool in
    ours) cmd="'$work/postgresql-charm' wal-push --settings '$(ours_settings "$path")' %p" ;;
    pgbackrest | pgbackrest-async)
        local async=n
        [ "$tool" = pgbackrest ] || async=y
        cmd="pgbackrest --config=$pgbr_conf --stanza=bench --repo1-path=/$path --archive-async=$async --process-max=$(nproc) archive-push %p"
        ;;
    esac
    pg_run=$data
    ctl "$data" start
    if [ "$tool" != ours ]; then
        pg pgbackrest --config="$pgbr_conf" --stanza=bench --repo1-path="/$path" stanza-create \
            >"$work/logs/stanza-$run-$tool.log" 2>&1 || die "stanza-create failed: $(tail -n 3 "$work/logs/stanza-$run-$tool.log")"
    fi
    sync
    local n t0 t1 failed
    n=$(ready "$data")
    printf "archive_command = '%s'\n" "${cmd//\'/\'\'}" >"$data/archive.conf"
    chown postgres:postgres "$data/archive.conf"
    t0=$(date +%s.%N)
    psql_run -c "SELECT pg_reload_conf()" >/dev/null
    while [ "$(ready "$data")" -gt 0 ]; do sleep 0.05; done
    t1=$(date +%s.%N)
    failed=$(psql_run -c "SELECT failed_count FROM pg_stat_archiver")

    # The steady load, sampled.
    local samples="$work/logs/lag-$run-$tool.txt" t2 t3 last
    : >"$samples"
    pgbench -h "$sock" -p "$pg_port" -U postgres -c 2 -j 2 -R "$rate" -T "$load_secs" postgres \
        >"$work/logs/pgbench-load-$run-$tool.log" 2>&1 &
    local load=$!
    while kill -0 "$load" 2>/dev/null; do
        ready "$data" >>"$samples"
        sleep 0.5
    done
    wait "$load" || die "pgbench under load failed: $(tail -n 3 "$work/logs/pgbench-load-$run-$tool.log")"
    last=$(psql_run -c "SELECT pg_walfile_name(pg_switch_wal())")
    t2=$(date +%s.%N)
    while [ "$(psql_run -c "SELECT coalesce(last_archived_wal, '') >= '$last' FROM pg_stat_archiver")" != t ]; do
        sleep 0.05
    done
    t3=$(date +%s.%N)
    local tps
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/logs/pgbench-load-$run-$tool.log" | head -n 1)
    ctl "$data" -m immediate stop
    pg_run=

    local stored
    stored=$(object_bytes "$work/s3/juju-local/$path")
    python3 - "$run" "$tool" "$n" "$t0" "$t1" "$failed" "$samples" "$t2" "$t3" "$stored" "${tps:-0}" \
        >>"$work/runs.jsonl" <<'PY'
import json, statistics, sys
run, tool, n, t0, t1, failed, samples, t2, t3, stored, tps = sys.argv[1:]
waiting = [int(l) for l in open(samples) if l.strip()]
print(json.dumps({
    "run": int(run), "tool": tool, "segments": int(n),
    "drain_s": float(t1) - float(t0), "segments_per_s": int(n) / (float(t1) - float(t0)),
    "failed_attempts": int(failed), "stored_bytes": int(stored),
    "load_tps": float(tps), "waiting_samples": waiting,
    "waiting_median": statistics.median(waiting) if waiting else 0,
    "waiting_max": max(waiting) if waiting else 0,
    "catch_up_s": float(t3) - float(t2),
}))
PY
    say "run $run $tool: $n segments in $(python3 -c "print(round($t1 - $t0, 2))") s; waiting under load: max $(sort -n "$samples" | tail -n 1); last segment archived $(python3 -c "print(round($t3 - $t2, 2))") s after the load"
}

read -r -a tools <<<"${TOOLS:-ours pgbackrest}"
for run in $(seq "$runs"); do
    order=("${tools[@]}")
    if [ $((run % 2)) = 0 ]; then for i in "${!tools[@]}"; do order[i]=${tools[${#tools[@]} - 1 - i]}; done; fi
    for tool in "${order[@]}"; do one_run "$run" "$tool"; done
done

# The raw numbers, then the report.
export BENCH_DATE BENCH_COMMAND BENCH_COMMIT
BENCH_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
BENCH_COMMAND="SEGMENTS=$segments RUNS=$runs LOAD_SECS=$load_secs RATE=$rate SCALE=$scale bench/$bench_name.sh"
BENCH_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p "$(dirname "$report_json")"
python3 - "$work/runs.jsonl" "$report_json" "$level" "$wal_bytes" "$backlog" <<'PY'
import json, os, statistics, subprocess, sys
runs_file, out, level, wal_bytes, backlog = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_file)]
def stats(tool, key):
    v = [r[key] for r in runs if r["tool"] == tool]
    return {"median": statistics.median(v), "min": min(v), "max": max(v)}
tools = [t for t in ("ours", "pgbackrest", "pgbackrest-async") if any(r["tool"] == t for r in runs)]
summary = {t: {k: stats(t, k) for k in ("segments_per_s", "drain_s", "waiting_median", "waiting_max", "catch_up_s", "stored_bytes", "load_tps")}
           for t in tools}
ours = summary["ours"]["segments_per_s"]["median"]
sync = summary["pgbackrest"]["segments_per_s"]["median"]
targets = [
    {"label": "WAL archiving, segments per second", "ours": ours, "reference": sync,
     "reference_name": "pgBackRest archive-push", "unit": "segments/s", "ratio": ours / sync,
     "target": 2.0, "rule": "at_least", "met": ours / sync >= 2.0},
]
if "pgbackrest-async" in summary:
    asyn = summary["pgbackrest-async"]["segments_per_s"]["median"]
    targets.append(
        {"label": "WAL archiving, segments per second (pgBackRest async)", "ours": ours, "reference": asyn,
         "reference_name": "pgBackRest archive-push, archive-async", "unit": "segments/s", "ratio": ours / asyn,
         "target": None, "rule": "at_least", "met": None})
meta = {
    "date": os.environ["BENCH_DATE"], "command": os.environ["BENCH_COMMAND"], "commit": os.environ["BENCH_COMMIT"],
    "zstd_level": int(level), "backlog_segments": int(backlog), "backlog_wal_bytes": int(wal_bytes),
    "nproc": os.cpu_count(),
    "memory": subprocess.run(["awk", '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }', "/proc/meminfo"], capture_output=True, text=True).stdout,
    "loadavg_end": open("/proc/loadavg").read().split()[:3],
    "pgbackrest": subprocess.run(["pgbackrest", "version"], capture_output=True, text=True).stdout.split()[-1],
    "kernel": os.uname().release,
}
json.dump({"meta": meta, "summary": summary, "targets": targets, "runs": runs}, open(out, "w"), indent=1)
PY
report
say "wrote $report_json and the section in $report_md"
