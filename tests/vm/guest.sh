#!/bin/bash
# Guest half of tests/vm/run.sh, run as root by the VM's PID 1 (tests/vm/init)
# on pure cgroup v2. Gives the scratch disk (ext4, made by the runner) to
# /var/tmp so the tests' dd lands on a real virtio disk that io.stat sees,
# sets up zram swap so memory.swap.* has something to account, then runs
# each test binary listed in /vm/tests with the arguments in /vm/args.
# Exit status: 0 when every binary passed, 1 otherwise, 2 on a setup failure.
set -uo pipefail

fail() {
  echo "guest: SETUP FAILED: $*" >&2
  exit 2
}

read -r REPO < /vm/repo || fail "no /vm/repo"

grep -q "^cgroup2 /sys/fs/cgroup cgroup2" /proc/mounts || fail "no cgroup2 at /sys/fs/cgroup"
grep -q "^cgroup " /proc/mounts && fail "a cgroup v1 hierarchy is mounted"

[ -b /dev/vda ] || fail "no scratch disk /dev/vda"
mount -t ext4 /dev/vda /var/tmp || fail "cannot mount /dev/vda (ext4) at /var/tmp"
chmod 1777 /var/tmp

# The kernel counts swap per cgroup (memory.swap.current) once there is
# swap; zram needs no disk. The runner loaded zram (one device).
[ -e /sys/block/zram0/disksize ] || fail "no /sys/block/zram0 (zram module not loaded)"
echo 256M > /sys/block/zram0/disksize || fail "zram0 disksize"
mkswap /dev/zram0 > /dev/null || fail "mkswap /dev/zram0"
swapon /dev/zram0 || fail "swapon /dev/zram0"

# The container engines (tests/engines): dockerd writes /etc/docker/key.json
# whatever its options say, and /etc is the host's, read-only here; podman
# keeps its locks in POSIX shared memory.
if [ -d /etc/docker ]; then
  mount -t tmpfs -o size=1m,mode=755 tmpfs /etc/docker || fail "tmpfs on /etc/docker"
fi
mkdir -p /dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || fail "tmpfs on /dev/shm"

# Terminals for tmux (htop is driven in one): the guest's devtmpfs has no
# devpts mounted.
mkdir -p /dev/pts
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "mount devpts"
ln -sf pts/ptmx /dev/ptmx 2>/dev/null || true

echo "guest: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)," \
  "root subtree_control [$(cat /sys/fs/cgroup/cgroup.subtree_control)]," \
  "/var/tmp on $(awk '$2 == "/var/tmp" {print $1 " (" $3 ")"}' /proc/mounts)," \
  "swap $(awk 'NR > 1 {print $1 " " $3 " kB"}' /proc/swaps)"

export PROCLENS_E2E_CGROUP=v2 PROCLENS_E2E_REQUIRE_SWAP=1 PROCLENS_E2E_REPORT=/vm/report.txt
# tests/engines: docker through proclens-runc and podman through the hook on
# pure v2 (under TCG each container start takes most of a minute; the host
# runs every case).
export PROCLENS_ENGINES=docker,podman-hook
export RUST_BACKTRACE=1
read -r DAEMON < /vm/daemon || DAEMON=
if [ -n "$DAEMON" ]; then
  [ -x "$DAEMON" ] || fail "daemon $DAEMON not shared"
  export PROCLENS_E2E_BIN=$DAEMON
  echo "guest: daemon $DAEMON"
fi
mapfile -t ARGS < /vm/args
cd "$REPO" || fail "repo $REPO not shared"
rc=0
while read -r bin; do
  [ -n "$bin" ] || continue
  [ -x "$bin" ] || fail "test binary $bin not shared"
  start=$(cut -d' ' -f1 /proc/uptime)
  echo "guest: running $bin ${ARGS[*]}"
  # The console is a tty: keep libtest's colour codes out of the log.
  "$bin" --color=never "${ARGS[@]}" 2>&1
  r=$?
  echo "guest: $(basename "$bin") exited $r after $(awk -v s="$start" '{printf "%.0f", $1 - s}' /proc/uptime) s"
  [ "$r" = 0 ] || rc=1
done < /vm/tests
swapoff /dev/zram0
umount /var/tmp
exit $rc
