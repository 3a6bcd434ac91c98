#!/bin/bash
# Every test: formatting, lints, unit and golden tests, end-to-end tests on
# the real FUSE mount with real cgroups and namespaces, and runc.
# Needs root, /dev/fuse and the tools .ci/run installs; fails (never skips)
# without them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end tests need root (FUSE mounts, cgroups, namespaces)" >&2
  exit 1
fi
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
