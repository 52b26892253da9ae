#!/bin/sh
# Builds the release binary and packs it, with dispatch and the charm's YAML,
# into a .charm zip that Juju (and juju-local) deploys.
#
#   charm/pack.sh [OUTPUT]      default: build/postgresql.charm
#
# CHARM_BINARY=<path> packs that binary instead of building the release one
# (the end-to-end tests pack the build they were compiled with).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/postgresql.charm}
target=${CARGO_TARGET_DIR:-$root/target}

binary=${CHARM_BINARY:-}
if [ -z "$binary" ]; then
    cargo build --quiet --release --locked -p postgresql-charm --manifest-path "$root/Cargo.toml"
    binary=$target/release/postgresql-charm
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
cp "$binary" "$stage/bin/postgresql-charm"
cp "$root/charm/dispatch" "$root/metadata.yaml" "$root/actions.yaml" "$root/config.yaml" "$stage/"
chmod 0755 "$stage/dispatch" "$stage/bin/postgresql-charm"
cat > "$stage/manifest.yaml" <<MANIFEST
charmcraft-version: 3.4.0
charmcraft-started-at: '$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)'
bases:
- name: ubuntu
  channel: '24.04'
  architectures:
  - amd64
analysis:
  attributes:
  - name: language
    result: rust
  - name: framework
    result: none
MANIFEST

mkdir -p "$(dirname "$out")"
# Written beside the target and renamed, so a reader never sees half a zip.
python3 - "$stage" "$out.tmp" <<'PY'
import os, sys, zipfile
stage, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for dirpath, _, files in os.walk(stage):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            z.write(path, os.path.relpath(path, stage))
PY
mv "$out.tmp" "$out"
echo "$out"
