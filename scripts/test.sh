#!/bin/bash
# Every test: formatting, lints, unit and golden tests, end-to-end tests on
# the real FUSE mount with real cgroups and namespaces, runc, the benches in
# test mode, and then the end-to-end suite again on pure cgroup v2, inside a
# Debian kernel under qemu (tests/vm/run.sh). Needs root, /dev/fuse and the
# tools .ci/run installs; fails (never skips) without them.
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
# The soak reads 100k times here; scripts/soak.sh runs the full million.
export SOAK_READS=${SOAK_READS:-100000}
cargo test --all-targets --locked 2>&1 | tee "$log" || status=$?

# Pure cgroup v2: the same e2e binary in the VM, against the release daemon
# (a debug one is several times slower under TCG). Its console, with its
# `test result:` line, goes to the same log.
echo "scripts/test.sh: the e2e suite on pure cgroup v2 (tests/vm/run.sh)"
vm_status=0
cargo build --release --locked --bin proclens 2>&1 | tee -a "$log" || vm_status=$?
e2e=$(cargo test --locked --test e2e --no-run --message-format=json 2>/dev/null |
  grep '"kind":\["test"\]' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 || true)
if [ "$vm_status" != 0 ] || [ -z "$e2e" ]; then
  echo "scripts/test.sh: cannot build the release daemon or find the e2e test binary" | tee -a "$log"
  vm_status=1
else
  start=$(date +%s)
  # One test at a time (they serialize anyway): the console then shows
  # each result as it ends, not "running for over 60 seconds" for waiters.
  tests/vm/run.sh --daemon target/release/proclens "$e2e" -- --test-threads=1 2>&1 |
    tee -a "$log" || vm_status=$?
  echo "scripts/test.sh: v2 VM suite took $(($(date +%s) - start)) s, exit status $vm_status"
fi
[ "$vm_status" = 0 ] || status=1

# One closing line for the whole run, summed over every test binary (the
# VM's included).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
