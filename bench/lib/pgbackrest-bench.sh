# The setup shared by the benchmarks against pgBackRest (sourced by
# bench/backup-vs-pgbackrest.sh and bench/restore-vs-pgbackrest.sh, not run
# on its own): one unit of the packed charm under juju-local, juju-local's S3
# server behind an nginx TLS front, both tools pointed at it, a pgbench
# database, a pgBackRest stanza on the unit's data directory and an
# archive_command that gives both tools every WAL segment. See the first of
# those scripts and docs/benchmarks.md for why each piece is as it is.
#
# The sourcing script sets, before sourcing:
#   bench_name   its name, for messages and the work directory's prefix
#   root         the repository's root
#   runs         how many runs (pgBackRest's retention is set above it)
# and may define bench_on_exit, called first when the script exits (to stop
# what it started itself). Each step below is a function the script calls in
# order; each sets the variables named in its comment.

target=${CARGO_TARGET_DIR:-$root/target}
jl="$target/release/juju-local"

die() { printf '%s: %s\n' "$bench_name" "$*" >&2; exit 1; }
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Sum of the sizes of the objects (files) s3s-fs keeps under a directory.
object_bytes() { find "$1" -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%.0f\n", n }'; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# timed OUT ERR CMD...: runs CMD, prints "wall user sys" (seconds; CPU of the
# command and its descendants, not of the server or the S3 server).
timed() {
    local out=$1 err=$2 t
    shift 2
    t=$({ TIMEFORMAT='%3R %3U %3S'; time "$@" >"$out" 2>"$err"; } 2>&1) || return 1
    printf '%s\n' "$t"
}

# Checks what the benchmark needs; sets level (the charm's zstd level, given
# to pgBackRest so both compress alike).
bench_prerequisites() {
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
    level=$(sed -n 's/^pub const ZSTD_LEVEL: i32 = \([0-9]*\);.*/\1/p' "$root/src/backup/codec.rs")
    [ -n "$level" ] || die "cannot read ZSTD_LEVEL from src/backup/codec.rs"
}

# A new work directory under /tmp (reachable by the postgres user), removed
# on exit (its logs kept after a failure, everything with KEEP_LOGS=1), with
# nginx and the model stopped; sets work and JUJU_LOCAL_MODEL.
bench_workdir() {
    work=$(mktemp -d "/tmp/${bench_name%-vs-pgbackrest}-bench-XXXXXX")
    chmod 0755 "$work"
    export JUJU_LOCAL_MODEL="$work/model"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mkdir -p "$work/logs" "$work/tls" "$work/nginx/logs" "$work/nginx/tmp" "$work/pgbackrest/log" "$work/pgbackrest/lock"
}

bench_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if declare -F bench_on_exit >/dev/null; then
        bench_on_exit || true
    fi
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

# The charm packed into the work directory (build/postgresql.charm is shared
# with the demo and other scripts) and juju-local built; sets charm.
bench_build() {
    say "packing the charm and building juju-local (release)"
    charm=$("$root/charm/pack.sh" "$work/postgresql.charm")
    cargo build --quiet --release --locked -p juju-local --manifest-path "$root/Cargo.toml"
}

# One unit (profile=testing) and the built-in s3-integrator, which starts
# juju-local's S3 server; sets model_json, s3_http, s3_dir, access_key,
# secret_key.
bench_deploy() {
    say "deploying one unit (profile=testing) and s3-integrator in $JUJU_LOCAL_MODEL"
    "$jl" deploy "$charm" --config profile=testing >"$work/logs/deploy.log"
    "$jl" deploy s3-integrator >>"$work/logs/deploy.log"
    model_json="$JUJU_LOCAL_MODEL/model.json"
    s3() { json "d['s3_server']['$1']" <"$model_json"; }
    s3_http=$(s3 endpoint)
    s3_dir=$(s3 dir)
    access_key=$(s3 access_key)
    secret_key=$(s3 secret_key)
    local bucket
    bucket=$(s3 bucket)
    [ "$bucket" = juju-local ] || die "the model's S3 server has bucket $bucket, expected juju-local"
}

# A CA, a server certificate for 127.0.0.1 and nginx with TLS in front of the
# S3 server; sets port and https. With upstream_keepalive=0 (set by the
# sourcing script; 16 otherwise) nginx opens a connection to the S3 server
# per request instead of reusing idle ones. Until the S3 server set
# TCP_NODELAY, on a reused connection a response written in two parts
# waited for nginx's delayed ACK, about 40 ms per request, while a new
# connection acknowledged at once; the restore benchmark keeps a connection
# per request so that its runs stay comparable with those before the fix.
#
# pgBackRest 2.45 matches the host only against DNS names (and the common
# name), the charm's client (rustls) only against IP addresses: the server
# certificate carries 127.0.0.1 as both.
bench_tls_front() {
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
    local nginx_conf="$work/nginx/nginx.conf" keepalive=""
    [ "${upstream_keepalive:-16}" = 0 ] || keepalive=" keepalive ${upstream_keepalive:-16};"
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
    upstream s3 { server ${s3_http#http://};$keepalive }
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
}

# The charm on the HTTPS endpoint (s3-integrator with the CA, path-style,
# path=charm) and the unit's facts; sets charm_repo, storage, data, address
# and PGHOST, PGUSER, PGDATABASE, PGPASSWORD for psql and pgbench.
bench_charm_on_https() {
    say "s3-integrator: endpoint=$https, tls-ca-chain, s3-uri-style=path, path=charm"
    "$jl" config s3-integrator "endpoint=$https" "tls-ca-chain=$(base64 -w0 "$work/tls/ca.pem")" \
        s3-uri-style=path path=charm bucket=juju-local >"$work/logs/config.log"
    "$jl" integrate postgresql:s3-parameters s3-integrator >>"$work/logs/config.log"
    local unit_status
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
}

# pgbench -i -s SCALE on the unit.
bench_load_data() { # scale
    say "pgbench -i -s $1"
    pgbench -i -q -s "$1" >"$work/logs/pgbench-init.log" 2>&1 \
        || die "pgbench -i failed: $(tail -n 5 "$work/logs/pgbench-init.log")"
}

# pgBackRest's stanza 'bench' on the unit's data directory, and the unit's
# archive_command extended so that both tools get every WAL segment; sets
# pgbr_conf, ours_archive (the charm's own command) and both_archive, and
# defines pgbr (pgbackrest with that config and stanza).
#
# It runs as root, as the charm does, and connects as operator by peer
# authentication over the unit's socket (the charm's pg_ident map admits
# root). archive-push runs as postgres from archive_command: its config, log
# and lock directories are readable and writable by that user.
bench_pgbackrest() {
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
    pgbr stanza-create >"$work/logs/pgbackrest-stanza.log" 2>&1 \
        || die "pgbackrest stanza-create failed: $(tail -n 3 "$work/logs/pgbackrest-stanza.log")"

    # The charm's own archive_command, then pgBackRest's archive-push, in
    # one command.
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
}
pgbr() { pgbackrest --config="$pgbr_conf" --stanza=bench "$@"; }

# The load between backups, from the environment: `pgbench -c 2 -j 2 -T
# LOAD_SECONDS` (15 by default), or `-t TXNS` transactions per client
# instead when TXNS is set. Sets load_args (pgbench's options), load_setting
# (for the command line reported) and pgbench_load (the command, for the
# report).
bench_load_settings() {
    local seconds=${LOAD_SECONDS:-15} txns=${TXNS:-}
    case $seconds$txns in *[!0-9]*) die "LOAD_SECONDS and TXNS must be whole numbers" ;; esac
    # shellcheck disable=SC2034 # load_setting is read by the sourcing script
    if [ -n "$txns" ]; then
        [ "$txns" -ge 1 ] || die "TXNS must be at least 1"
        load_args=(-c 2 -j 2 -t "$txns")
        load_setting="TXNS=$txns"
    else
        [ "$seconds" -ge 1 ] || die "LOAD_SECONDS must be at least 1"
        load_args=(-c 2 -j 2 -T "$seconds")
        load_setting="LOAD_SECONDS=$seconds"
    fi
    pgbench_load="pgbench ${load_args[*]}"
}

# bench_run_load LOG: that load on the unit, its output in LOG; prints the
# number of transactions it committed.
bench_run_load() {
    say "  $pgbench_load"
    pgbench "${load_args[@]}" >"$1" 2>&1 || die "pgbench failed: $(tail -n 5 "$1")"
    local n
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$1")
    [ -n "$n" ] || die "pgbench did not say how many transactions it processed: $(tail -n 5 "$1")"
    printf '%s\n' "$n"
}

# A checkpoint and an empty archiver queue on the unit, so that the timed
# command that follows pays neither for the other tool's dirty buffers nor
# for a WAL backlog.
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

# The machine, the versions and the run, exported as BENCH_* for the
# script's report: BENCH_COMMAND is the command line to print.
bench_meta() { # command
    local disk_dev
    disk_dev=$(df --output=source /tmp | tail -n 1)
    export BENCH_DATE BENCH_COMMAND BENCH_LEVEL=$level BENCH_DB_BYTES BENCH_NPROC BENCH_MEMORY \
        BENCH_TMPFS=$disk_dev BENCH_DISK BENCH_KERNEL BENCH_LOADAVG BENCH_PGBACKREST \
        BENCH_POSTGRESQL BENCH_NGINX BENCH_COMMIT
    BENCH_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    BENCH_COMMAND=$1
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
    # The paths the packed charm or juju-local was built from with changes
    # not committed, one per line.
    export BENCH_DIRTY
    BENCH_DIRTY=$(git -C "$root" status --porcelain -- src juju-local charm Cargo.toml Cargo.lock 2>/dev/null || true)
    if [ -n "$BENCH_DIRTY" ]; then
        BENCH_COMMIT="$BENCH_COMMIT with uncommitted changes"
    fi
}
