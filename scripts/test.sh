#!/bin/bash
# Every test: formatting, lints, unit and golden tests, end-to-end tests on
# the real FUSE mount with real cgroups and namespaces, runc, and the
# benches in test mode. Needs root, /dev/fuse and the tools .ci/run installs;
# fails (never skips) without them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end tests need root (FUSE mounts, cgroups, namespaces)" >&2
  exit 1
fi
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --locked 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
