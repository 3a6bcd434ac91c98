#!/bin/bash
# Guest half of tests/vm/run.sh, run as root on pure cgroup v2 by the VM's
# PID 1 (tests/vm/init's stage 2), or with --systemd by systemd, as the
# service proclens-vm.service (tests/vm/units). Gives the scratch disk
# (ext4, made by the runner) to /var/tmp so the tests' dd lands on a real
# virtio disk that io.stat sees, sets up zram swap so memory.swap.* has
# something to account, then runs each test binary listed in /vm/tests with
# the arguments in /vm/args.
#
# Under systemd it first installs the package /vm/deb names with dpkg -i,
# runs `systemctl enable --now proclens` and the suite /vm/systemd names
# (with the package's path as PROCLENS_DEB), then purges the package with
# dpkg -P, checks that the service stopped, unmounted and left nothing,
# and only then runs the other binaries.
# Exit status: 0 when every binary passed, 1 otherwise, 2 on a setup failure.
set -uo pipefail

fail() {
  echo "guest: SETUP FAILED: $*" >&2
  exit 2
}

read -r REPO < /vm/repo || fail "no /vm/repo"
# With --systemd: the suite that drives proclens.service, and the package.
SYSTEMD= DEB=
read -r SYSTEMD < /vm/systemd || true
read -r DEB < /vm/deb || true
if [ -n "$SYSTEMD" ]; then
  [ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
  echo "guest: systemd $(systemctl --version | awk 'NR == 1 {print $2}') is PID 1;" \
    "this runner started $(cut -d' ' -f1 /proc/uptime) s after the kernel"
fi

grep -q "^cgroup2 /sys/fs/cgroup cgroup2" /proc/mounts || fail "no cgroup2 at /sys/fs/cgroup"
grep -q "^cgroup " /proc/mounts && fail "a cgroup v1 hierarchy is mounted"
if [ -n "$SYSTEMD" ]; then
  # systemd owns the root's subtree_control; the runner's Delegate=yes has
  # it enable every controller the tests' cgroups (made below the root) use.
  for c in memory cpu cpuset io pids; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.subtree_control ||
      fail "controller $c not enabled at the cgroup root under systemd: [$(cat /sys/fs/cgroup/cgroup.subtree_control)]"
  done
fi

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
# devpts mounted (systemd mounts its own).
if [ -z "$SYSTEMD" ]; then
  mkdir -p /dev/pts
  mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "mount devpts"
  ln -sf pts/ptmx /dev/ptmx 2>/dev/null || true
fi

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

run() {
  local bin=$1 start r
  [ -x "$bin" ] || fail "test binary $bin not shared"
  start=$(cut -d' ' -f1 /proc/uptime)
  echo "guest: running $bin ${ARGS[*]}"
  # The console is a tty: keep libtest's colour codes out of the log.
  "$bin" --color=never "${ARGS[@]}" 2>&1
  r=$?
  echo "guest: $(basename "$bin") exited $r after $(awk -v s="$start" '{printf "%.0f", $1 - s}' /proc/uptime) s"
  [ "$r" = 0 ] || rc=1
}

if [ -n "$SYSTEMD" ]; then
  [ -f "$DEB" ] || fail "package $DEB not shared"
  # The guest's dpkg database is the host's (its /usr is the host's): a
  # proclens installed there would make dpkg -i an upgrade.
  if dpkg-query -W -f='${Status}' proclens 2> /dev/null | grep -q 'ok installed'; then
    fail "the host has a proclens package installed (tests/deb.rs running?); dpkg -P it first"
  fi
  since() { awk -v s="$1" '{printf "%.1f", $1 - s}' /proc/uptime; }
  start=$(cut -d' ' -f1 /proc/uptime)
  dpkg -i "$DEB" 2>&1 || fail "dpkg -i $DEB"
  echo "guest: dpkg -i took $(since "$start") s"
  start=$(cut -d' ' -f1 /proc/uptime)
  systemctl enable --now proclens 2>&1 || {
    systemctl status --no-pager proclens 2>&1
    journalctl -b --no-pager -u proclens 2>&1 | tail -40
    fail "systemctl enable --now proclens"
  }
  echo "guest: systemctl enable --now proclens took $(since "$start") s"
  PROCLENS_DEB=$DEB run "$SYSTEMD"

  # Removing the package stops the service (prerm), which unmounts; purge
  # takes the unit and the mount point with it.
  start=$(cut -d' ' -f1 /proc/uptime)
  dpkg -P proclens 2>&1 || { echo "guest: FAILED: dpkg -P proclens"; rc=1; }
  echo "guest: dpkg -P took $(since "$start") s"
  state=$(systemctl show -p ActiveState --value proclens.service)
  left=$(grep -c ' /var/lib/proclens' /proc/self/mountinfo)
  procs=$(pgrep -c -x proclens)
  if [ "$state" != inactive ] || [ "$left" != 0 ] || [ "$procs" != 0 ] || [ -e /var/lib/proclens ] ||
    [ -e /run/proclens ] || [ -e /lib/systemd/system/proclens.service ]; then
    echo "guest: FAILED: after dpkg -P: proclens.service $state, $left mounts at /var/lib/proclens," \
      "$procs proclens processes, /var/lib/proclens $([ -e /var/lib/proclens ] && echo exists || echo gone)," \
      "/run/proclens $([ -e /run/proclens ] && echo exists || echo gone)," \
      "unit file $([ -e /lib/systemd/system/proclens.service ] && echo left || echo gone)"
    journalctl -b --no-pager -u proclens 2>&1 | tail -40
    rc=1
  else
    echo "guest: dpkg -P proclens: service stopped, nothing mounted, no process, unit, mount point and /run/proclens gone"
  fi
fi

while read -r bin; do
  [ -n "$bin" ] || continue
  run "$bin"
done < /vm/tests
swapoff /dev/zram0
umount /var/tmp
exit $rc
