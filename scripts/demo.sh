#!/bin/sh
# A three-unit PostgreSQL cluster on juju-local, from a freshly packed charm:
# status, a row written on the primary and read on a replica, backups (full
# and incremental) to juju-local's own S3 server with WAL archiving, and a
# failover when the primary's unit is removed. The model stays for you to
# explore.
#
#   scripts/demo.sh             model in /tmp/postgresql-demo (or $JUJU_LOCAL_MODEL)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
export JUJU_LOCAL_MODEL=${JUJU_LOCAL_MODEL:-/tmp/postgresql-demo/model}
target=${CARGO_TARGET_DIR:-$root/target}
jl="$target/release/juju-local"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "juju-local $*"; "$jl" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
address() { "$jl" status --format json | json "d['applications']['postgresql']['units']['$1']['public-address']"; }
sql() {
    say "psql -h $(address "$1") -U operator -c \"$2\""
    PGPASSWORD=$operator psql -X -q -h "$(address "$1")" -U operator -d postgres -c "$2"
}

charm=$("$root/charm/pack.sh")
cargo build --quiet --release --locked -p juju-local --manifest-path "$root/Cargo.toml"
"$jl" destroy-model --force >/dev/null 2>&1 || true
mkdir -p "$(dirname "$JUJU_LOCAL_MODEL")" && chmod 0755 "$(dirname "$JUJU_LOCAL_MODEL")"

run deploy "$charm" -n 3
run status
run run postgresql/leader get-primary
operator=$("$jl" run postgresql/leader get-password --format json | json "d['postgresql/0']['results']['password']")
sql postgresql/0 "CREATE TABLE demo (id int, note text); INSERT INTO demo VALUES (1, 'written on the primary')"
sleep 1
sql postgresql/1 "SELECT *, pg_is_in_recovery() AS on_a_replica FROM demo"
run deploy s3-integrator
run integrate postgresql:s3-parameters s3-integrator
run run postgresql/0 create-backup
sql postgresql/0 "INSERT INTO demo VALUES (2, 'after the full backup')"
run run postgresql/0 create-backup type=incremental
run run postgresql/2 list-backups
run run postgresql/leader create-backup type=weekly || true
run remove-unit postgresql/0
run status
run run postgresql/leader get-primary
say "juju-local debug-log | grep juju-log | tail -n 8"
"$jl" debug-log --replay | grep juju-log | tail -n 8

printf '\nThe model is in %s. Explore it with %s, remove it with: juju-local destroy-model\n' \
    "$JUJU_LOCAL_MODEL" "$jl"
