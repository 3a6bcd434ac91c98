#!/bin/bash
# Runs already-built test binaries inside a pure cgroup v2 guest: Debian's
# kernel (from Debian's package, fetched with `apt-get download` and cached)
# under qemu TCG, booted with cgroup_no_v1=all; the guest's root is a tmpfs
# with the host's /usr and /etc (9p, read-only), the repository (and the
# target dir, if outside it) shared read-only at the same absolute paths, so
# the test binaries find the proclens binary Cargo compiled into them; a
# scratch virtio disk (ext4) at /var/tmp; zram swap. The guest runs
# tests/vm/guest.sh; this script exits with the tests' status.
#
# With --systemd the guest boots systemd as PID 1 instead (tests/vm/init):
# /usr, /etc and the host's dpkg database under tmpfs overlays, the host's
# enabled units hidden, booting tests/vm/units/proclens-vm.target, whose
# one service runs guest.sh: it installs the package (--deb) with dpkg -i,
# runs `systemctl enable --now proclens`, runs the SUITE binary (tests that
# drive proclens.service through systemd), purges the package and checks
# it left nothing, and then runs the other binaries as usual.
#
# usage: tests/vm/run.sh [--systemd SUITE --deb PROCLENS_DEB] [--daemon PROCLENS]
#                        [TEST_BINARY...] [-- TEST_ARGS...]
#   scripts/test.sh passes the e2e binary and --daemon target/release/proclens
#   (PROCLENS_E2E_BIN in the guest: under TCG a debug daemon makes the suite
#   several times slower); TEST_ARGS go to every binary (e.g. `-- swap
#   --nocapture`). Builds nothing: run `cargo test --no-run` (and `cargo
#   build --release`, scripts/deb.sh) first. Needs qemu-system-x86,
#   e2fsprogs, busybox-static and apt (.ci/run installs them); no KVM.
#
# Environment:
#   PROCLENS_VM_CACHE    kernel and initrd cache (default <repo>/target/vm/cache)
#   PROCLENS_VM_TIMEOUT  seconds before the VM is killed (default 600)
#   PROCLENS_VM_CPUS     vCPUs (default 2), PROCLENS_VM_MEM_MB (default 2048)
#   PROCLENS_VM_DISK_MB  scratch disk size (default 512)
# Output: the guest's console on stdout; `tools_before_and_after_mounting`'s
# report in <repo>/target/vm/report.txt.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/vm
CACHE=${PROCLENS_VM_CACHE:-$OUT/cache}
TIMEOUT=${PROCLENS_VM_TIMEOUT:-600}
CPUS=${PROCLENS_VM_CPUS:-2}
MEM_MB=${PROCLENS_VM_MEM_MB:-2048}
DISK_MB=${PROCLENS_VM_DISK_MB:-512}
# Kernel modules the guest loads in stage 1, in dependency order: FUSE, virtio
# and 9p for the root, virtio_blk + ext4 (crc32c for its metadata checksums)
# for the scratch disk, zram for swap, overlayfs for the systemd guest and
# the container engines' image layers (tests/engines).
MODULES=(
  fs/fuse/fuse
  drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
  drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci
  net/9p/9pnet net/9p/9pnet_virtio fs/netfs/netfs fs/fscache/fscache fs/9p/9p
  drivers/block/virtio_blk
  crypto/crc32c_generic lib/crc16 fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4
  mm/zsmalloc drivers/block/zram/zram
  fs/overlayfs/overlay
)

die() {
  echo "tests/vm/run.sh: $*" >&2
  exit 1
}

BINS=()
ARGS=()
DAEMON=
SYSTEMD=
DEB=
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; ARGS=("$@"); break ;;
    --daemon) [ $# -ge 2 ] || die "--daemon needs a path"; DAEMON=$(realpath "$2"); shift 2 ;;
    --systemd) [ $# -ge 2 ] || die "--systemd needs a test binary"; SYSTEMD=$(realpath "$2"); shift 2 ;;
    --deb) [ $# -ge 2 ] || die "--deb needs a path"; DEB=$(realpath "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) BINS+=("$(realpath "$1")"); shift ;;
  esac
done
[ ${#BINS[@]} -gt 0 ] || [ -n "$SYSTEMD" ] || die "usage: $0 [--systemd SUITE --deb PROCLENS_DEB] TEST_BINARY... [-- TEST_ARGS...]"
for b in ${SYSTEMD:+"$SYSTEMD"} "${BINS[@]}"; do
  [ -x "$b" ] || die "$b is not an executable test binary (build first: cargo test --no-run)"
done
[ -z "$DAEMON" ] || [ -x "$DAEMON" ] || die "--daemon $DAEMON is not executable (cargo build --release)"
if [ -n "$SYSTEMD" ]; then
  [ -n "$DEB" ] || die "--systemd needs --deb PROCLENS_DEB (scripts/deb.sh builds it)"
  [ -f "$DEB" ] || die "--deb $DEB is not a file (scripts/deb.sh)"
  [ -x /usr/lib/systemd/systemd ] || die "--systemd: no /usr/lib/systemd/systemd on this host to boot (apt-get install systemd)"
  [ -d /var/lib/dpkg ] || die "--systemd: no /var/lib/dpkg on this host (the guest's dpkg database)"
elif [ -n "$DEB" ]; then
  die "--deb is for --systemd"
fi

missing=()
for t in qemu-system-x86_64 mkfs.ext4 apt-get apt-cache dpkg-deb busybox gzip timeout; do
  command -v "$t" > /dev/null || missing+=("$t")
done
[ ${#missing[@]} = 0 ] || die "missing ${missing[*]} (apt-get install qemu-system-x86 e2fsprogs busybox-static; see .ci/run)"
BUSYBOX=$(command -v busybox)
# The initramfs has no libc.
if LC_ALL=C grep -qa '/lib64/ld-linux-x86-64.so.2' "$BUSYBOX"; then
  die "$BUSYBOX is dynamically linked; install busybox-static"
fi

mkdir -p "$CACHE" "$OUT"

# --- the kernel: Debian's current linux-image-amd64, unpacked once -----------
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$PKG" ]; then
  # No apt lists (offline): any kernel already in the cache will do.
  PKG=$(cd "$CACHE" && ls -d linux-image-* 2>/dev/null | tail -1 || true)
  [ -n "$PKG" ] || die "apt-cache cannot resolve linux-image-amd64 (run apt-get update) and no kernel is cached in $CACHE"
fi
KDIR=$CACHE/$PKG
if [ ! -d "$KDIR" ]; then
  echo "tests/vm/run.sh: fetching $PKG (apt-get download) into $CACHE"
  dl=$(mktemp -d "$CACHE/download.XXXXXX")
  # The _apt sandbox user may not reach a dir below the repo.
  (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$PKG") || { rm -rf "$dl"; die "apt-get download $PKG failed"; }
  dpkg-deb -x "$dl"/"$PKG"_*.deb "$dl/x" || { rm -rf "$dl"; die "dpkg-deb -x failed"; }
  mv "$dl/x" "$KDIR"
  rm -rf "$dl"
fi
KVER=$(ls "$KDIR/lib/modules" | head -1)
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
[ -f "$VMLINUZ" ] || die "no $VMLINUZ in the cached $PKG"

# --- the initramfs: busybox, stage 1, modules; rebuilt when any changes ------
KEY=$( { cat "$HERE/init"; echo "${MODULES[*]}" "$KVER"; cat "$BUSYBOX"; } | sha256sum | cut -c1-16)
INITRD=$CACHE/initrd-$KVER-$KEY.cpio.gz
if [ ! -f "$INITRD" ]; then
  r=$(mktemp -d "$CACHE/initrd.XXXXXX")
  mkdir -p "$r/bin" "$r/proc" "$r/sys" "$r/dev" "$r/lib/modules"
  cp "$BUSYBOX" "$r/bin/busybox"
  cp "$HERE/init" "$r/init"
  chmod 755 "$r/init"
  for m in "${MODULES[@]}"; do
    cp "$KDIR/lib/modules/$KVER/kernel/$m.ko" "$r/lib/modules/" || { rm -rf "$r"; die "no $m.ko in $PKG"; }
    basename "$m" >> "$r/lib/modules/order"
  done
  (cd "$r" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2> /dev/null) | gzip -1 > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  rm -rf "$r"
fi

# --- this run: shared work dir, scratch disk ----------------------------------
RUN=$(mktemp -d "${TMPDIR:-/tmp}/proclens-vm.XXXXXX")
trap 'rm -rf "$RUN"' EXIT
SHARE=$RUN/share
mkdir "$SHARE"
cp "$HERE/guest.sh" "$SHARE/guest.sh"
echo "$REPO" > "$SHARE/repo"
echo "$DAEMON" > "$SHARE/daemon"
if [ ${#BINS[@]} -gt 0 ]; then printf '%s\n' "${BINS[@]}"; fi > "$SHARE/tests"
echo "$SYSTEMD" > "$SHARE/systemd"
echo "$DEB" > "$SHARE/deb"
if [ ${#ARGS[@]} -gt 0 ]; then printf '%s\n' "${ARGS[@]}"; fi > "$SHARE/args"

# Read-only shares at their host paths: the repo and, for binaries built
# outside it (CARGO_TARGET_DIR), their profile dir (a test binary's deps/..
# holds the proclens binary Cargo compiled into it).
VIRTFS=(-virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on,id=repo")
echo "repo $REPO" > "$SHARE/shares"
n=0
share_outside_repo() {
  case $1 in
    "$REPO"/*) ;;
    *)
      n=$((n + 1))
      VIRTFS+=(-virtfs "local,path=$1,mount_tag=extra$n,security_model=none,readonly=on,id=extra$n")
      echo "extra$n $1" >> "$SHARE/shares"
      ;;
  esac
}
for b in ${SYSTEMD:+"$SYSTEMD"} "${BINS[@]}"; do
  share_outside_repo "$(dirname "$(dirname "$b")")"
done
[ -z "$DAEMON" ] || share_outside_repo "$(dirname "$DAEMON")"
[ -z "$DEB" ] || share_outside_repo "$(dirname "$DEB")"

# apparmor=0: Debian's kernel enables AppArmor, and once securityfs is
# mounted (systemd mounts it) dockerd insists on loading its profile with
# apparmor_parser, which the host need not have; the host's own kernel
# (the development VM's) has no AppArmor either.
APPEND="console=ttyS0 panic=-1 cgroup_no_v1=all apparmor=0 quiet"
if [ -n "$SYSTEMD" ]; then
  mkdir "$SHARE/units"
  cp "$HERE"/units/* "$SHARE/units/"
  # The host's dpkg database, for dpkg -i in the guest (under an overlay).
  VIRTFS+=(-virtfs "local,path=/var/lib/dpkg,mount_tag=hostdpkg,security_model=none,readonly=on,id=hostdpkg")
  # systemd.unit: the VM's own target, not default.target. No gpt-auto
  # generator (the root is a tmpfs), no first-boot setup.
  APPEND="$APPEND proclens.vm=systemd systemd.unit=proclens-vm.target systemd.gpt_auto=0 systemd.firstboot=0"
fi

truncate -s "${DISK_MB}M" "$RUN/scratch.img"
mkfs.ext4 -q -F -L proclens-vm "$RUN/scratch.img"

echo "tests/vm/run.sh: $PKG${SYSTEMD:+ with systemd as PID 1}, $CPUS vCPUs (TCG), ${MEM_MB} MiB, ${DISK_MB} MiB scratch disk, timeout ${TIMEOUT} s"
start=$(date +%s)
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp "$CPUS" -m "$MEM_MB" \
  -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "$VMLINUZ" -initrd "$INITRD" \
  -append "$APPEND" \
  -virtfs local,path=/usr,mount_tag=hostusr,security_model=none,readonly=on,id=hostusr \
  -virtfs local,path=/etc,mount_tag=hostetc,security_model=none,readonly=on,id=hostetc \
  -virtfs "local,path=$SHARE,mount_tag=vm,security_model=none,id=vm" \
  "${VIRTFS[@]}" \
  -drive "file=$RUN/scratch.img,if=virtio,format=raw,cache=unsafe" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 < /dev/null
q=$?
set -e
echo "tests/vm/run.sh: VM ran $(($(date +%s) - start)) s"
rm -f "$OUT/report.txt"
[ -f "$SHARE/report.txt" ] && cp "$SHARE/report.txt" "$OUT/report.txt" && echo "tests/vm/run.sh: report in $OUT/report.txt"
# isa-debug-exit makes qemu exit with (status << 1) | 1; anything else (0 =
# powered off without reporting, 124 = timeout) is a VM failure.
if [ $((q & 1)) = 1 ] && [ "$q" -lt 256 ]; then
  exit $((q >> 1))
fi
echo "tests/vm/run.sh: the VM failed (qemu/timeout status $q)" >&2
exit 3
