#!/bin/sh
# Cost of a hook with nothing to do: the packed charm's update-status under
# juju-local on a healthy primary and on a streaming replica, wall time and
# peak RSS of the whole hook (dispatch, the charm binary and the hook tools
# it runs), over many runs.
#
#   bench/hook-overhead.sh [RUNS]       default 200
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-200}
target=${CARGO_TARGET_DIR:-$root/target}

charm=$("$root/charm/pack.sh")
cargo build --quiet --release --locked -p juju-local --manifest-path "$root/Cargo.toml"
model=$(mktemp -d /tmp/hook-bench-XXXXXX)
chmod 0755 "$model"
export JUJU_LOCAL_MODEL="$model/model"
trap '"$target/release/juju-local" destroy-model --force >/dev/null 2>&1; rm -rf "$model"' EXIT

"$target/release/juju-local" deploy "$charm" -n 2 >/dev/null
for unit in postgresql/0 postgresql/1; do
    "$target/release/juju-local" run-hook "$unit" update-status --repeat "$runs" --timings | tail -n 1
done
