#!/bin/sh
# A three-unit postgresql application on juju-local, from a freshly packed
# charm: status, passwords, leadership. The model stays for you to explore.
#
#   scripts/demo.sh             model in /tmp/postgresql-demo (or $JUJU_LOCAL_MODEL)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
export JUJU_LOCAL_MODEL=${JUJU_LOCAL_MODEL:-/tmp/postgresql-demo}
target=${CARGO_TARGET_DIR:-$root/target}

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "juju-local $*"; "$target/release/juju-local" "$@"; }

charm=$("$root/charm/pack.sh")
cargo build --quiet --release --locked -p juju-local --manifest-path "$root/Cargo.toml"
"$target/release/juju-local" destroy-model --force >/dev/null 2>&1 || true
mkdir -p "$JUJU_LOCAL_MODEL" && chmod 0755 "$JUJU_LOCAL_MODEL"

run deploy "$charm" -n 3
run status
run run postgresql/leader get-password
run run postgresql/1 get-password username=replication
run run postgresql/leader set-password username=monitoring
run run postgresql/leader create-backup type=weekly || true
run remove-unit postgresql/0
run status
say "juju-local debug-log | tail -n 15"
"$target/release/juju-local" debug-log | tail -n 15

printf '\nThe model is in %s. Explore it with %s, remove it with: juju-local destroy-model\n' \
    "$JUJU_LOCAL_MODEL" "$target/release/juju-local"
