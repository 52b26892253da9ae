#!/bin/bash
# What one call of the charm binary as restore_command costs: `wal-fetch` of
# a 16 MiB segment that is in the archive, and of one that is not (the probe
# PostgreSQL makes for the next segment and for history files), each a new
# process, as recovery runs it. Wall and CPU seconds (user+sys), medians of
# RUNS calls (default 20), against juju-local's S3 server behind nginx with
# TLS on loopback, as in the restore benchmark.
#
#   bench/wal-fetch.sh [BINARY...]      default: target/release/postgresql-charm
#
# Several binaries (say, two builds to compare) are measured in turn on the
# same archive, alternating call by call. Needs root (nginx binds a port),
# nginx, openssl, curl, python3 and a release build of juju-local. Prints a
# table; writes nothing into the repository.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench_name=wal-fetch
runs=${RUNS:-20}
upstream_keepalive=16
# shellcheck source=lib/pgbackrest-bench.sh
. "$root/bench/lib/pgbackrest-bench.sh"

[ "$(id -u)" = 0 ] || die "run as root: nginx binds a loopback port"
for tool in nginx openssl curl python3; do need "$tool" "apt-get install -y $tool"; done
[ $# -gt 0 ] || set -- "$target/release/postgresql-charm"
for bin in "$@"; do [ -x "$bin" ] || die "$bin is not an executable (cargo build --release?)"; done
[ -x "$jl" ] || cargo build --quiet --release --locked -p juju-local --manifest-path "$root/Cargo.toml"

bench_on_exit() { [ -z "${s3_pid:-}" ] || kill "$s3_pid" 2>/dev/null || true; }
bench_workdir

# juju-local's S3 server on a free port, nginx with TLS in front of it.
access_key=bench-access secret_key=bench-secret-key-0123456789
s3_port=$(free_port)
JUJU_LOCAL_S3_ACCESS_KEY=$access_key JUJU_LOCAL_S3_SECRET_KEY=$secret_key \
    "$jl" s3-server --dir "$work/s3" --address "127.0.0.1:$s3_port" --bucket juju-local \
    >"$work/logs/s3.log" 2>&1 &
s3_pid=$!
s3_http="http://127.0.0.1:$s3_port"
bench_tls_front

# The settings the archive programs read, and one segment in the archive.
python3 - "$work/settings.json" "$https" "$work/tls/ca.pem" "$access_key" "$secret_key" <<'PY'
import json, sys
out, endpoint, ca, access, secret = sys.argv[1:]
json.dump({"endpoint": endpoint, "region": None, "bucket": "juju-local", "path": "/wal-fetch-bench",
           "uri-style": "path", "tls-ca-chain": [open(ca).read()], "storage-class": None,
           "access-key": access, "secret-key": secret, "repository": "bench.postgresql"},
          open(out, "w"))
PY
segment=000000010000000000000001
python3 -c "
import os, sys
block = os.urandom(4096) + bytes(12288)
sys.stdout.buffer.write(block * 1024)" >"$work/$segment"
"$1" wal-push --settings "$work/settings.json" "$work/$segment" \
    || die "wal-push of the test segment failed"

call() { # bin name; prints "wall cpu" after checking the exit code
    local bin=$1 name=$2 want t rc
    want=$([ "$name" = "$segment" ] && echo 0 || echo 1)
    rm -f "$work/fetched" "$work/rc"
    t=$({ TIMEFORMAT='%3R %3U %3S'; time { "$bin" wal-fetch --settings "$work/settings.json" \
        "$name" "$work/fetched" 2>"$work/logs/fetch.err" && echo 0 >"$work/rc" || echo $? >"$work/rc"; }; } 2>&1)
    rc=$(cat "$work/rc")
    [ "$rc" = "$want" ] || die "$bin wal-fetch $name exited $rc: $(cat "$work/logs/fetch.err")"
    if [ "$rc" = 0 ]; then cmp -s "$work/fetched" "$work/$segment" || die "$bin fetched another segment"; fi
    echo "$t" | awk '{ printf "%s %.3f\n", $1, $2 + $3 }'
}

say "$runs calls of each binary, alternating"
for i in $(seq "$runs"); do
    for n in $(seq $#); do
        bin=${!n}
        printf '%s\t%s\t%s\n' "$n" segment "$(call "$bin" "$segment")" >>"$work/times"
        printf '%s\t%s\t%s\n' "$n" probe "$(call "$bin" 000000010000000000000099)" >>"$work/times"
    done
done

python3 - "$work/times" "$@" <<'PY'
import statistics, sys
times, bins = sys.argv[1], sys.argv[2:]
rows = [l.split() for l in open(times)]
print("| binary | call | wall, median (min–max) | CPU user+sys, median |")
print("|---|---|---|---|")
for n, b in enumerate(bins, 1):
    for what in ("segment", "probe"):
        w = [float(r[2]) for r in rows if r[0] == str(n) and r[1] == what]
        c = [float(r[3]) for r in rows if r[0] == str(n) and r[1] == what]
        label = "a 16 MiB segment" if what == "segment" else "a probe (not in the archive)"
        print(f"| {b} | {label} | {statistics.median(w) * 1000:.0f} ms ({min(w) * 1000:.0f}–{max(w) * 1000:.0f}) "
              f"| {statistics.median(c) * 1000:.0f} ms |")
PY
