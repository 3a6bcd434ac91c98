#!/bin/bash
# Every test: formatting, lints, the Debian package (scripts/deb.sh, needs
# cargo-deb), unit and golden tests, end-to-end tests on
# the real FUSE mount with real cgroups and namespaces, runc, the container
# engines (docker, podman, containerd, LXC), the benches in test mode, and
# then, inside a Debian kernel under qemu on pure cgroup v2 with systemd as
# PID 1 (tests/vm/run.sh --systemd), the package's unit driven by systemd
# (tests/systemd.rs) and the end-to-end, fidelity, container, fresh,
# pressure and engines suites again. Needs root, /dev/fuse and the tools
# .ci/run installs; fails (never skips) without them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end tests need root (FUSE mounts, cgroups, namespaces)" >&2
  exit 1
fi
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# tests/systemd.rs is not among --all-targets (test = false: it needs
# systemd as PID 1, so only the VM runs it).
cargo clippy --locked --test systemd -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The Debian package first (its release build is also the VM's daemon);
# tests/deb.rs installs, verifies and purges it.
deb_out=$(scripts/deb.sh 2> >(tee -a "$log" >&2)) || status=1
PROCLENS_DEB="$PWD/$(printf '%s\n' "$deb_out" | tail -n1)"
export PROCLENS_DEB
echo "scripts/test.sh: package $PROCLENS_DEB"
# The soak reads 100k times here; scripts/soak.sh runs the full million.
export SOAK_READS=${SOAK_READS:-100000}
# --no-fail-fast: a failing target must not hide what the others say.
cargo test --all-targets --locked --no-fail-fast 2>&1 | tee "$log" || status=$?

# Pure cgroup v2 with systemd as PID 1, in the VM: the package installed
# with dpkg -i and its unit driven by systemd (tests/systemd.rs), then the
# same e2e, fidelity, container, fresh, pressure and engines binaries
# against the release daemon (a debug one is several times slower under
# TCG). Its console, with the `test result:` lines, goes to the same log.
echo "scripts/test.sh: proclens.service under systemd, then the e2e, fidelity, container, fresh, pressure and engines suites, on pure cgroup v2 (tests/vm/run.sh --systemd)"
vm_status=0
cargo build --release --locked --bin proclens 2>&1 | tee -a "$log" || vm_status=$?
bins=()
for t in systemd e2e fidelity container fresh pressure engines; do
  b=$(cargo test --locked --test "$t" --no-run --message-format=json 2>/dev/null |
    grep '"kind":\["test"\]' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 || true)
  [ -n "$b" ] && bins+=("$b")
done
if [ "$vm_status" != 0 ] || [ "${#bins[@]}" != 7 ] || [ ! -f "$PROCLENS_DEB" ]; then
  echo "scripts/test.sh: cannot build the release daemon, the package or the systemd, e2e, fidelity, container, fresh, pressure and engines test binaries" | tee -a "$log"
  vm_status=1
else
  start=$(date +%s)
  # One test at a time (they serialize anyway): the console then shows
  # each result as it ends, not "running for over 60 seconds" for waiters.
  PROCLENS_VM_TIMEOUT=${PROCLENS_VM_TIMEOUT:-3600} \
    tests/vm/run.sh --systemd "${bins[0]}" --deb "$PROCLENS_DEB" --daemon target/release/proclens \
    "${bins[@]:1}" -- --test-threads=1 2>&1 |
    tee -a "$log" || vm_status=$?
  echo "scripts/test.sh: the VM (systemd, e2e, fidelity, container, fresh, pressure and engines suites) took $(($(date +%s) - start)) s, exit status $vm_status"
fi
[ "$vm_status" = 0 ] || status=1

# One closing line for the whole run, summed over every test binary (the
# VM's included).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
