#!/bin/bash
# The charm's backup engine against pgBackRest, on the same data, the same S3
# server and the same machine, in one run: full and incremental backups of a
# pgbench database on one unit of the packed charm under juju-local, wall
# seconds, CPU seconds and stored bytes of each, alternating the two tools.
#
#   bench/backup-vs-pgbackrest.sh          SCALE=100 RUNS=3 TXNS=10000 by default
#   SCALE=5 RUNS=1 bench/backup-vs-pgbackrest.sh      a quick check
#
# Writes docs/benchmarks/backup-vs-pgbackrest.json (every measure, raw) and
# the generated section of docs/benchmarks.md (OUTPUT_DIR=DIR writes both
# under DIR instead); REPORT_ONLY=1 only rewrites that section from the JSON;
# KEEP_LOGS=1 keeps the work directory under /tmp (logs, certificates,
# configs), which otherwise goes, logs excepted after a failure. Not part of
# `cargo test`.
#
# Prerequisites (checked below):
#   - root (nginx on a loopback port, pgBackRest reading the unit's data
#     directory, files handed to the postgres user);
#   - PostgreSQL 15 server and client programs (psql, pgbench) and the
#     `postgres` OS user, as for the end-to-end tests;
#   - pgBackRest and nginx:  apt-get update && apt-get install -y pgbackrest nginx
#   - openssl, curl, python3, cargo.
#
# The setup, in order: pack the charm and build juju-local; a model in a new
# directory under /tmp (reachable by the postgres user); one unit of the
# charm (profile=testing) and the built-in s3-integrator, which starts
# juju-local's S3 server (s3s-fs) on loopback; nginx in front of it with TLS
# (a CA and server certificate made here, its own config, pid and logs in the
# work directory, a free loopback port), because pgBackRest speaks only HTTPS
# to S3; both tools pointed at that HTTPS endpoint with the CA, path-style
# URIs, bucket juju-local, the charm under path `charm`, pgBackRest under
# repo1-path /pgbackrest. Then `pgbench -i -s SCALE`, a pgBackRest stanza on
# the unit's data directory, and archive_command extended so that both tools
# get every WAL segment (see the doc). Each run: a full backup with each
# tool, `pgbench -c 2 -j 2 -t TXNS`, an incremental with each tool; the tool
# that goes first alternates from run to run. Everything started here is
# stopped on exit, failure included.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
scale=${SCALE:-100}
runs=${RUNS:-3}
txns=${TXNS:-10000}
output=${OUTPUT_DIR:-$root/docs}
target=${CARGO_TARGET_DIR:-$root/target}
jl="$target/release/juju-local"

report_json="$output/benchmarks/backup-vs-pgbackrest.json"
report_md="$output/benchmarks.md"

die() { printf 'backup-vs-pgbackrest: %s\n' "$*" >&2; exit 1; }
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }

# The generated section of the doc, from the JSON (REPORT_ONLY=1 does only
# this, from the JSON already there); text outside its markers is kept.
render_report() {
    python3 - "$report_json" "$report_md" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
md = sys.argv[2]
m, summary, rows = doc["meta"], doc["summary"], doc["runs"]
measures = [("wall_s", "wall seconds"), ("cpu_s", "CPU seconds (user+sys)"),
            ("object_bytes", "stored bytes: objects under the backup's prefix"),
            ("tool_stored_bytes", "stored bytes: the tool's own figure (data files)")]

def fmt(key, v):
    if key.endswith("bytes"):
        return f"{v / 1e6:.2f} MB" if abs(v) >= 1e5 else f"{v / 1e3:.1f} kB"
    return f"{v:.2f} s"

def cell(key, s):
    return f"{fmt(key, s['median'])} ({fmt(key, s['min'])}–{fmt(key, s['max'])})"

out = []
out.append(f"Run on {m['date'][:10]}: `{m['command']}` (at commit {m['versions']['charm_commit']}).\n")
out.append(f"Machine: {m['machine']['nproc']} cores, {m['machine']['memory']} of memory, "
           f"/tmp on {m['machine']['tmp_filesystem']} ({m['machine']['disk'] or 'disk unknown'}), "
           f"Linux {m['machine']['kernel']}; load average at the end "
           f"{m['machine']['load_average_at_end']}. "
           f"PostgreSQL {m['versions']['postgresql']}, pgBackRest {m['versions']['pgbackrest']}, "
           f"nginx {m['versions']['nginx']}.\n")
out.append(f"Data: `pgbench -i -s {m['scale']}`, a {m['database_bytes'] / 1e9:.2f} GB database; "
           f"between the full and the incremental backups of each run: `{m['pgbench_load']}`. "
           f"{m['runs']} run(s), ours first in odd runs and pgBackRest first in even ones; "
           f"medians, min–max in brackets, and the ratio of the medians.\n")
out.append("| backup | measure | ours | pgBackRest | ours / pgBackRest |")
out.append("|---|---|---|---|---|")
for kind in ("full", "incremental"):
    for key, label in measures:
        s = summary[kind][key]
        out.append(f"| {kind} | {label} | {cell(key, s['ours'])} | {cell(key, s['pgbackrest'])} "
                   f"| {s['ratio_ours_over_pgbackrest']:.3f} |")
out.append("")
targets = []
for kind in ("full", "incremental"):
    w = summary[kind]["wall_s"]
    b = summary[kind]["object_bytes"]
    extra = b["ours"]["median"] - b["pgbackrest"]["median"]
    targets.append(
        f"{kind}: time **{'met' if w['ratio_ours_over_pgbackrest'] <= 1 else 'missed'}** "
        f"({w['ratio_ours_over_pgbackrest']:.3f}), stored bytes "
        f"**{'met' if extra <= 0 else 'missed'}** ({b['ratio_ours_over_pgbackrest']:.4f}, "
        f"{'+' if extra > 0 else '−'}{fmt('bytes', abs(extra))} per backup)")
out.append("Targets, ours no slower and no larger (ratio of medians): " + "; ".join(targets) + ".\n")
out.append("Each run (wall seconds; stored bytes under the prefix):\n")
out.append("| run | backup | ours | pgBackRest |")
out.append("|---|---|---|---|")
for run, kind in sorted({(r["run"], r["kind"]) for r in rows}, key=lambda x: (x[0], x[1] != "full")):
    o = next(x for x in rows if (x["run"], x["kind"], x["tool"]) == (run, kind, "ours"))
    p = next(x for x in rows if (x["run"], x["kind"], x["tool"]) == (run, kind, "pgbackrest"))
    out.append(f"| {run} | {kind} | {o['wall_s']:.2f} s, {fmt('bytes', o['object_bytes'])} "
               f"| {p['wall_s']:.2f} s, {fmt('bytes', p['object_bytes'])} |")
section = "\n".join(out) + "\n"

begin = "<!-- backup-vs-pgbackrest: begin (generated by the script) -->"
end = "<!-- backup-vs-pgbackrest: end -->"
heading = "## Backups: the charm's engine against pgBackRest\n\n"
if os.path.exists(md):
    text = open(md).read()
else:
    text = "# Benchmarks\n\n" + heading + f"{begin}\n{end}\n"
if begin not in text:
    text += "\n" + heading + f"{begin}\n{end}\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
with open(md, "w") as f:
    f.write(head + begin + "\n" + section + end + tail)
print(section)
PY
}

if [ -n "${REPORT_ONLY:-}" ]; then
    [ -f "$report_json" ] || die "no $report_json to render"
    render_report
    exit 0
fi

# --- prerequisites ----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root: nginx binds a loopback port, pgBackRest reads the unit's data directory (owned by postgres) and the charm's peer map admits root as operator"
id postgres >/dev/null 2>&1 || die "no postgres OS user: install PostgreSQL 15 (apt-get install -y postgresql-15)"
need pgbackrest "apt-get update && apt-get install -y pgbackrest"
need nginx "apt-get update && apt-get install -y nginx"
need pgbench "install the PostgreSQL 15 client programs (apt-get install -y postgresql-client-15)"
need psql "install the PostgreSQL 15 client programs (apt-get install -y postgresql-client-15)"
need openssl "apt-get install -y openssl"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"
need cargo "install Rust (https://rustup.rs)"
pgbackrest help backup compress-type 2>/dev/null | grep -q zst \
    || die "this pgBackRest has no zstd (compress-type=zst); use Debian's package"
case $scale$runs$txns in *[!0-9]*) die "SCALE, RUNS and TXNS must be whole numbers" ;; esac
[ "$runs" -ge 1 ] || die "RUNS must be at least 1"

# The charm's zstd level, so pgBackRest compresses with the same one.
level=$(sed -n 's/^pub const ZSTD_LEVEL: i32 = \([0-9]*\);.*/\1/p' "$root/src/backup/codec.rs")
[ -n "$level" ] || die "cannot read ZSTD_LEVEL from src/backup/codec.rs"

# --- the work directory, and cleaning up ------------------------------------
work=$(mktemp -d /tmp/backup-bench-XXXXXX)
chmod 0755 "$work"
export JUJU_LOCAL_MODEL="$work/model"
nginx_conf="$work/nginx/nginx.conf"
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -f "$work/nginx/nginx.pid" ]; then
        kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
    fi
    if [ -f "$JUJU_LOCAL_MODEL/model.json" ]; then
        "$jl" destroy-model --force >/dev/null 2>&1 || true
    fi
    if [ "$status" != 0 ] && [ -z "${KEEP_LOGS:-}" ]; then
        say "failed; logs kept in $work/logs"
        find "$work" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
    elif [ -n "${KEEP_LOGS:-}" ]; then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$work/logs" "$work/tls" "$work/nginx/logs" "$work/nginx/tmp" "$work/pgbackrest/log" "$work/pgbackrest/lock"

# --- build ------------------------------------------------------------------
# The charm is packed into the work directory: build/postgresql.charm is
# shared with the demo and other scripts.
say "packing the charm and building juju-local (release)"
charm=$("$root/charm/pack.sh" "$work/postgresql.charm")
cargo build --quiet --release --locked -p juju-local --manifest-path "$root/Cargo.toml"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Sum of the sizes of the objects (files) s3s-fs keeps under a directory.
object_bytes() { find "$1" -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%d\n", n }'; }

# --- the model: one unit and the S3 integrator ------------------------------
say "deploying one unit (profile=testing) and s3-integrator in $JUJU_LOCAL_MODEL"
"$jl" deploy "$charm" --config profile=testing >"$work/logs/deploy.log"
"$jl" deploy s3-integrator >>"$work/logs/deploy.log"
model_json="$JUJU_LOCAL_MODEL/model.json"
s3() { json "d['s3_server']['$1']" <"$model_json"; }
s3_http=$(s3 endpoint)
s3_dir=$(s3 dir)
access_key=$(s3 access_key)
secret_key=$(s3 secret_key)
bucket=$(s3 bucket)
[ "$bucket" = juju-local ] || die "the model's S3 server has bucket $bucket, expected juju-local"

# --- TLS in front of the S3 server ------------------------------------------
# pgBackRest 2.45 matches the host only against DNS names (and the common
# name), the charm's client (rustls) only against IP addresses: the server
# certificate carries 127.0.0.1 as both.
say "a CA and a server certificate for 127.0.0.1"
(
    cd "$work/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj "/CN=backup benchmark CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile server.ext
    chmod 0644 ca.pem
) >"$work/logs/openssl.log" 2>&1 || die "openssl failed: $(cat "$work/logs/openssl.log")"

port=$(free_port)
say "nginx: https://127.0.0.1:$port -> $s3_http"
cat >"$nginx_conf" <<EOF
# A TLS front for juju-local's S3 server; streams bodies both ways.
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    upstream s3 { server ${s3_http#http://}; keepalive 16; }
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $work/tls/server.pem;
        ssl_certificate_key $work/tls/server.key;
        client_max_body_size 0;
        location / {
            proxy_pass http://s3;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # SigV4 signs the Host header the client sent.
            proxy_set_header Host \$http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }
    }
}
EOF
nginx -c "$nginx_conf" -e "$work/nginx/logs/error.log" >"$work/logs/nginx.log" 2>&1 \
    || die "nginx did not start: $(cat "$work/logs/nginx.log" "$work/nginx/logs/error.log" 2>/dev/null)"
https="https://127.0.0.1:$port"
for _ in $(seq 50); do
    curl -s -o /dev/null --cacert "$work/tls/ca.pem" "$https/" && break
    sleep 0.2
done
curl -sS -o /dev/null --cacert "$work/tls/ca.pem" "$https/" || die "nginx does not answer on $https"

# --- the charm on the HTTPS endpoint ----------------------------------------
say "s3-integrator: endpoint=$https, tls-ca-chain, s3-uri-style=path, path=charm"
"$jl" config s3-integrator "endpoint=$https" "tls-ca-chain=$(base64 -w0 "$work/tls/ca.pem")" \
    s3-uri-style=path path=charm bucket=juju-local >"$work/logs/config.log"
"$jl" integrate postgresql:s3-parameters s3-integrator >>"$work/logs/config.log"
unit_status=$("$jl" status --format json | json "d['applications']['postgresql']['units']['postgresql/0']['workload-status']")
case $unit_status in
*"'active'"*) ;;
*) die "postgresql/0 is not active on the HTTPS endpoint: $unit_status" ;;
esac
charm_repo="$s3_dir/juju-local/charm/local.postgresql"
[ -f "$charm_repo/repository.json" ] || die "the charm did not claim $charm_repo"

storage=$(find "$JUJU_LOCAL_MODEL/units/postgresql-0/storage" -mindepth 1 -maxdepth 1 -type d | head -n 1)
data="$storage/data"
address=$("$jl" status --format json | json "d['applications']['postgresql']['units']['postgresql/0']['public-address']")
export PGHOST=$address PGUSER=operator PGDATABASE=postgres
PGPASSWORD=$("$jl" run postgresql/0 get-password --format json | json "d['postgresql/0']['results']['password']")
export PGPASSWORD
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# --- data -------------------------------------------------------------------
say "pgbench -i -s $scale"
pgbench -i -q -s "$scale" >"$work/logs/pgbench-init.log" 2>&1 \
    || die "pgbench -i failed: $(tail -n 5 "$work/logs/pgbench-init.log")"

# --- pgBackRest on the unit's data directory --------------------------------
# It runs as root, as the charm does, and connects as operator by peer
# authentication over the unit's socket (the charm's pg_ident map admits
# root). archive-push runs as postgres from archive_command: its config, log
# and lock directories are readable and writable by that user.
say "pgBackRest stanza 'bench': repo1-path=/pgbackrest, zst level $level, process-max=2"
chown -R postgres:postgres "$work/pgbackrest"
chmod 1777 "$work/pgbackrest/log" "$work/pgbackrest/lock"
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
repo1-path=/pgbackrest
repo1-retention-full=$((runs + 1))
compress-type=zst
compress-level=$level
process-max=2
start-fast=y
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
log-level-console=info
log-level-file=off

[bench]
pg1-path=$data
pg1-socket-path=$storage/run
pg1-port=5432
pg1-user=operator
EOF
chown postgres:postgres "$pgbr_conf"
chmod 0640 "$pgbr_conf"
pgbr() { pgbackrest --config="$pgbr_conf" --stanza=bench "$@"; }
pgbr stanza-create >"$work/logs/pgbackrest-stanza.log" 2>&1 \
    || die "pgbackrest stanza-create failed: $(tail -n 3 "$work/logs/pgbackrest-stanza.log")"

# Both tools need every WAL segment: the charm's own archive_command, then
# pgBackRest's archive-push, in one command.
ours_archive=$(sql -c "SHOW archive_command")
case $ours_archive in *" wal-push "*) ;; *) die "unexpected archive_command: $ours_archive" ;; esac
both_archive="$ours_archive && pgbackrest --config=$pgbr_conf --stanza=bench archive-push %p"
sql -v cmd="$both_archive" >/dev/null <<'EOF'
ALTER SYSTEM SET archive_command = :'cmd';
SELECT pg_reload_conf();
EOF
sleep 1
[ "$(sql -c "SHOW archive_command")" = "$both_archive" ] || die "archive_command was not changed"
pgbr check >"$work/logs/pgbackrest-check.log" 2>&1 \
    || die "pgbackrest check failed: $(tail -n 3 "$work/logs/pgbackrest-check.log")"

# Before each timed backup: a checkpoint and an empty archiver queue, so
# neither tool pays for the other's dirty buffers or WAL backlog.
settle() {
    sql -c CHECKPOINT
    local waited=0
    while find "$data/pg_wal/archive_status" -name '*.ready' | grep -q .; do
        [ "$waited" -lt 1200 ] || die "the archiver did not catch up within 10 minutes"
        sleep 0.5
        waited=$((waited + 1))
    done
    local failed
    failed=$(sql -c "SELECT failed_count FROM pg_stat_archiver")
    [ "$failed" = 0 ] || say "note: pg_stat_archiver counts $failed failed archive attempts"
}

results="$work/results.tsv"
: >"$results"
# timed OUT ERR CMD...: runs CMD, prints "wall user sys" (seconds; CPU of the
# command and its descendants, not of the server or the S3 server).
timed() {
    local out=$1 err=$2 t
    shift 2
    t=$({ TIMEFORMAT='%3R %3U %3S'; time "$@" >"$out" 2>"$err"; } 2>&1) || return 1
    printf '%s\n' "$t"
}

ours() { # run kind
    local run=$1 kind=$2 log="$work/logs/ours-$1-$2" t id rec
    settle
    sleep 1.1 # backup ids are whole seconds
    t=$(timed "$log.json" "$log.err" "$jl" run postgresql/0 create-backup "type=$kind" --format json) \
        || die "create-backup type=$kind failed: $(cat "$log.json" "$log.err")"
    [ "$(json "d['postgresql/0']['status']" <"$log.json")" = completed ] \
        || die "create-backup type=$kind: $(cat "$log.json")"
    id=$(json "d['postgresql/0']['results']['backup-id']" <"$log.json")
    rec="$charm_repo/backups/$id/record.json"
    [ -f "$rec" ] || die "no record at $rec"
    printf '%s\tours\t%s\t%s\t%s\t%s\t%s\n' "$run" "$kind" "$(echo "$t" | tr ' ' '\t')" \
        "$(object_bytes "$charm_repo/backups/$id")" \
        "$(json "d['stored-bytes'], d['database-bytes'], sep='\t'" <"$rec")" "$id" >>"$results"
    say "  ours $kind: $(echo "$t" | cut -d' ' -f1) s"
}

theirs() { # run kind (full or incr)
    local run=$1 kind=$2 log="$work/logs/pgbackrest-$1-$2" t label delta size
    settle
    t=$(timed "$log.out" "$log.err" pgbr "--type=$kind" backup) \
        || die "pgbackrest --type=$kind backup failed: $(tail -n 5 "$log.out" "$log.err")"
    pgbr info --output=json >"$log.info.json"
    read -r label delta size < <(python3 - "$log.info.json" "$kind" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))[0]["backup"][-1]
assert b["type"] == sys.argv[2], b
print(b["label"], b["info"]["repository"]["delta"], b["info"]["size"])
PY
)
    [ -n "$label" ] || die "pgbackrest info does not show the $kind backup"
    printf '%s\tpgbackrest\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$([ "$kind" = incr ] && echo incremental || echo full)" \
        "$(echo "$t" | tr ' ' '\t')" "$(object_bytes "$s3_dir/juju-local/pgbackrest/backup/bench/$label")" \
        "$delta" "$size" "$label" >>"$results"
    say "  pgBackRest $kind: $(echo "$t" | cut -d' ' -f1) s"
}

load() { # run
    say "  pgbench -c 2 -j 2 -t $txns"
    pgbench -c 2 -j 2 -t "$txns" >"$work/logs/pgbench-$1.log" 2>&1 \
        || die "pgbench failed: $(tail -n 5 "$work/logs/pgbench-$1.log")"
}

for run in $(seq "$runs"); do
    say "run $run of $runs"
    if [ $((run % 2)) = 1 ]; then
        ours "$run" full; theirs "$run" full
        load "$run"
        ours "$run" incremental; theirs "$run" incr
    else
        theirs "$run" full; ours "$run" full
        load "$run"
        theirs "$run" incr; ours "$run" incremental
    fi
done

# --- results ----------------------------------------------------------------
mkdir -p "$(dirname "$report_json")"
disk_dev=$(df --output=source /tmp | tail -n 1)
export BENCH_DATE BENCH_COMMAND BENCH_SCALE=$scale BENCH_RUNS=$runs BENCH_LOAD BENCH_LEVEL=$level \
    BENCH_DB_BYTES BENCH_NPROC BENCH_MEMORY BENCH_TMPFS=$disk_dev BENCH_DISK BENCH_KERNEL BENCH_LOADAVG \
    BENCH_PGBACKREST BENCH_POSTGRESQL BENCH_NGINX BENCH_COMMIT
BENCH_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
BENCH_COMMAND="SCALE=$scale RUNS=$runs TXNS=$txns bench/backup-vs-pgbackrest.sh"
BENCH_LOAD="pgbench -c 2 -j 2 -t $txns"
BENCH_DB_BYTES=$(sql -c "SELECT pg_database_size('postgres')")
BENCH_NPROC=$(nproc)
BENCH_MEMORY=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
BENCH_DISK=$(lsblk -dno NAME,SIZE,ROTA "$(echo "$disk_dev" | sed 's/[0-9]*$//')" 2>/dev/null \
    | awk 'NR == 1 { printf "block device %s, %s, rotational flag %s", $1, $2, $3 }' || true)
BENCH_KERNEL=$(uname -r)
BENCH_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_PGBACKREST=$(pgbackrest version | cut -d' ' -f2)
BENCH_POSTGRESQL=$(sql -c 'SHOW server_version')
BENCH_NGINX=$(nginx -v 2>&1 | sed 's|.*/||')
BENCH_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain -- src juju-local charm Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    BENCH_COMMIT="$BENCH_COMMIT with uncommitted changes"
fi
python3 - "$results" "$report_json" "$work/logs" <<'PY'
import json, os, statistics, sys
results, report, logs = sys.argv[1], sys.argv[2], sys.argv[3]
e = os.environ
meta = {
    "date": e["BENCH_DATE"], "command": e["BENCH_COMMAND"],
    "scale": int(e["BENCH_SCALE"]), "runs": int(e["BENCH_RUNS"]), "pgbench_load": e["BENCH_LOAD"],
    "database_bytes": int(e["BENCH_DB_BYTES"]),
    "machine": {"nproc": int(e["BENCH_NPROC"]), "memory": e["BENCH_MEMORY"],
                "tmp_filesystem": e["BENCH_TMPFS"], "disk": e["BENCH_DISK"],
                "kernel": e["BENCH_KERNEL"], "load_average_at_end": e["BENCH_LOADAVG"]},
    "versions": {"pgbackrest": e["BENCH_PGBACKREST"], "postgresql": e["BENCH_POSTGRESQL"],
                 "nginx": e["BENCH_NGINX"], "charm_commit": e["BENCH_COMMIT"]},
    "settings": {"zstd_level": int(e["BENCH_LEVEL"]), "pgbackrest_process_max": 2,
                 "charm_files_in_flight": 4,
                 "s3_endpoint": "nginx TLS on loopback in front of juju-local s3-server (s3s-fs)",
                 "pgbackrest_tls": "repo1-storage-ca-file (certificate verified)",
                 "archive_command": "<charm wal-push> && pgbackrest archive-push %p"},
}
rows = []
for line in open(results):
    run, tool, kind, wall, user, sys_, prefix, own, dbb, ident = line.rstrip("\n").split("\t")
    row = {"run": int(run), "tool": tool, "kind": kind, "wall_s": float(wall),
           "cpu_user_s": float(user), "cpu_sys_s": float(sys_),
           "object_bytes": int(prefix), "tool_stored_bytes": int(own),
           "database_bytes": int(dbb), "id": ident}
    if tool == "ours":
        task = json.load(open(os.path.join(logs, f"ours-{run}-{kind}.json")))["postgresql/0"]
        row["action_log"] = task.get("log", [])
    else:
        short = "incr" if kind == "incremental" else "full"
        text = open(os.path.join(logs, f"pgbackrest-{run}-{short}.out")).read()
        row["log"] = [l for l in text.splitlines()
                      if " INFO: " in l and "command begin" not in l or " WARN: " in l]
    rows.append(row)

def stat(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}

summary = {}
for kind in ("full", "incremental"):
    summary[kind] = {}
    for key in ("wall_s", "cpu_s", "object_bytes", "tool_stored_bytes"):
        per = {}
        for tool in ("ours", "pgbackrest"):
            vals = [r["cpu_user_s"] + r["cpu_sys_s"] if key == "cpu_s" else r[key]
                    for r in rows if r["tool"] == tool and r["kind"] == kind]
            per[tool] = stat(vals)
        per["ratio_ours_over_pgbackrest"] = per["ours"]["median"] / per["pgbackrest"]["median"]
        summary[kind][key] = per
doc = {"meta": meta, "summary": summary, "runs": rows}
with open(report, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

PY
render_report
say "wrote $report_json and $report_md"
