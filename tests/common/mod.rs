//! Harness for the end-to-end tests: a real daemon on a FUSE mount, and
//! "containers" made of fresh cgroups plus new pid and mount namespaces with
//! the daemon's files bind-mounted over `/proc/...` and
//! `/sys/devices/system/cpu`.
//!
//! It drives cgroup v1 (and hybrid hosts, whose controllers are on v1) and
//! pure cgroup v2, whichever `/proc/self/mountinfo` shows
//! ([`cgroup_version`]). On v1 a container is one directory per controller
//! hierarchy, and one in the unified hierarchy when cgroup2 is mounted
//! beside them (a hybrid host: no controller there, but the kernel accounts
//! pressure stalls to it, as engines' containers have); on v2 it is one
//! directory below the unified mount, whose
//! root must already have `memory cpu cpuset io pids` in its
//! `cgroup.subtree_control` (the harness only ever writes to cgroups it
//! created). `PROCLENS_E2E_CGROUP=v1|v2` makes a run fail unless it is on
//! that version (the v2 VM sets it).
//!
//! Everything a test creates (cgroups, mounts, processes, scratch files) is
//! owned by a guard whose `Drop` removes it, so a failing assertion still
//! leaves the host clean. The only processes ever signalled are our own
//! children and tasks listed in cgroups this harness created.
//!
//! `PROCLENS_E2E_DAEMON=lxcfs` swaps the daemon for lxcfs. That exists only
//! to shake out harness bugs before proclens can mount; lxcfs is expected to
//! fail some assertions.

#![allow(dead_code)] // not every test binary uses every helper

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

pub const MIB: u64 = 1024 * 1024;

/// PATH for every command we run, on the host or in a container. Fixed so
/// that a developer's pyenv/cargo shims cannot change which tool is tested.
pub const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Tools the tests run. A missing one is a failure, not a skip.
const REQUIRED_TOOLS: &[&str] = &[
    "sh", "unshare", "nsenter", "mount", "cat", "ls", "sleep", "free", "top", "getconf", "nproc",
    "dd", "rm", "python3",
];

/// Every cgroup v1 controller a container is put under.
pub const CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "cpuset", "blkio", "pids"];

/// Every cgroup v2 controller a container's cgroup gets (enabled in its
/// parent's `cgroup.subtree_control`).
pub const V2_CONTROLLERS: &[&str] = &["memory", "cpu", "cpuset", "io", "pids"];

/// How long a daemon may take to serve its first read.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Default limit for one-shot commands; a hung FUSE read must fail the test,
/// not hang the suite.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Serialization and preconditions
// ---------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

/// Every e2e test starts with `let _serial = common::serial();`.
///
/// The VM has 2 CPUs and several tests measure CPU time or load, so tests
/// must not overlap. A test that panicked poisons the mutex; the next test
/// still runs (each test cleans up after itself through Drop guards).
/// Also checks the preconditions, so a test on an unsuitable host fails
/// with a message saying why instead of skipping.
pub fn serial() -> Serial {
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Test binaries (e2e, runc, fidelity...) may run at the same time from
    // different processes: a host-wide lock keeps CPU-sensitive tests apart.
    let lock = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(HOST_LOCK)
        .unwrap_or_else(|e| panic!("opening {HOST_LOCK}: {e}"));
    // SAFETY: flock on a descriptor we own; released when it is closed.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {HOST_LOCK}: {}", io::Error::last_os_error());
    preflight();
    Serial {
        _guard: guard,
        _lock: lock,
    }
}

/// The host-wide lock file of [`serial`].
const HOST_LOCK: &str = "/tmp/proclens-tests.lock";

/// Held for the duration of one test: the in-process mutex and the
/// host-wide file lock.
pub struct Serial {
    _guard: MutexGuard<'static, ()>,
    _lock: fs::File,
}

fn preflight() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the e2e tests must run as root: they create cgroups, FUSE mounts and namespaces"
    );
    let fuse = fs::metadata("/dev/fuse")
        .unwrap_or_else(|e| panic!("/dev/fuse is missing ({e}); the daemon cannot mount"));
    assert!(
        fuse.file_type().is_char_device(),
        "/dev/fuse is not a character device"
    );

    let mut tools: Vec<&str> = REQUIRED_TOOLS.to_vec();
    if daemon_kind() == DaemonKind::Lxcfs {
        tools.push("lxcfs");
    }
    let missing: Vec<&str> = tools.into_iter().filter(|t| which(t).is_none()).collect();
    assert!(
        missing.is_empty(),
        "required tools not found in {TOOL_PATH}: {missing:?}"
    );

    let version = cgroup_version();
    match std::env::var("PROCLENS_E2E_CGROUP").as_deref() {
        Err(_) | Ok("") => {}
        Ok(want @ ("v1" | "v2")) => assert_eq!(
            version.name(),
            want,
            "PROCLENS_E2E_CGROUP={want}, but this host's controllers are on cgroup {}",
            version.name()
        ),
        Ok(other) => panic!("PROCLENS_E2E_CGROUP={other:?}: expected v1 or v2"),
    }
    if version == CgroupVersion::V2 {
        let root = cgroup_v2_mount().expect("v2 detected from a cgroup2 mount");
        let enabled = read(root.join("cgroup.subtree_control"));
        let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
        let missing: Vec<&str> = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !enabled.contains(c))
            .collect();
        assert!(
            missing.is_empty(),
            "{}/cgroup.subtree_control lacks {missing:?}: the tests create their cgroups \
             below it and never change cgroups they did not create; enable them with \
             `echo '+memory +cpu +cpuset +io +pids' > {}/cgroup.subtree_control`",
            root.display(),
            root.display()
        );
    }
}

// ---------------------------------------------------------------------------
// cgroup version
// ---------------------------------------------------------------------------

/// Which cgroup version the containers are made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Every controller in [`CONTROLLERS`] on a v1 hierarchy (v1 or hybrid host).
    V1,
    /// Pure unified hierarchy with every controller in [`V2_CONTROLLERS`].
    V2,
}

impl CgroupVersion {
    pub fn name(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        }
    }
}

/// The host's cgroup version, from `/proc/self/mountinfo`. Panics (the test
/// fails) on a host the harness cannot make containers on, saying why.
pub fn cgroup_version() -> CgroupVersion {
    static VERSION: OnceLock<Result<CgroupVersion, String>> = OnceLock::new();
    VERSION
        .get_or_init(detect_cgroup_version)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn detect_cgroup_version() -> Result<CgroupVersion, String> {
    let v1_missing: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| cgroup_v1_mount(c).is_none())
        .collect();
    if v1_missing.is_empty() {
        return Ok(CgroupVersion::V1);
    }
    let Some(unified) = cgroup_v2_mount() else {
        return Err(format!(
            "no cgroup v1 hierarchy for {v1_missing:?} and no cgroup2 mount in \
             /proc/self/mountinfo: these tests need a v1, hybrid or pure v2 host"
        ));
    };
    if v1_missing.len() != CONTROLLERS.len() {
        return Err(format!(
            "controllers split between v1 and v2 (no v1 hierarchy for {v1_missing:?}): \
             the harness makes containers on all-v1 or all-v2 hosts only"
        ));
    }
    let available = fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
    let available: BTreeSet<&str> = available.split_whitespace().collect();
    let missing: Vec<&str> = V2_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !available.contains(c))
        .collect();
    if missing.is_empty() {
        Ok(CgroupVersion::V2)
    } else {
        Err(format!(
            "pure cgroup v2 host, but {}/cgroup.controllers lacks {missing:?}",
            unified.display()
        ))
    }
}

/// Absolute path of `tool` in [`TOOL_PATH`].
pub fn which(tool: &str) -> Option<PathBuf> {
    TOOL_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("{name} not found in {TOOL_PATH}"))
}

/// A command for a host tool with a predictable environment: C locale (so
/// numbers use '.' and labels are English) and no HOME, so a developer's
/// `toprc` cannot change top's layout.
pub fn host_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", TOOL_PATH)
        .env("LC_ALL", "C")
        .env("HOME", "/nonexistent");
    cmd
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// `proclens-e2e-<pid>-<n>`: unique per test process and call, and easy to
/// find if something leaks.
pub fn unique_name() -> String {
    format!(
        "proclens-e2e-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------
// Running commands with a deadline
// ---------------------------------------------------------------------------

/// Collects a pipe on a thread so a child that writes a lot cannot block,
/// and so we can give up on it.
fn drain<R: Read + Send + 'static>(mut r: R) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `cmd` to completion, panicking (after killing it) if it takes longer
/// than `timeout`. Reads through a FUSE mount can hang if the daemon does,
/// and a hung test is worse than a failed one.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    try_run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`run_with_timeout`], but a timeout (the command is then killed) is
/// returned as an error describing it, for tests that expect an exit.
pub fn try_run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let out = drain(child.stdout.take().expect("stdout is piped"));
    let err = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let so = out.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
                let se = err.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
                return Err(format!(
                    "{desc} did not finish within {timeout:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&so),
                    String::from_utf8_lossy(&se)
                ));
            }
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    // A grandchild that outlived the command could keep the pipe open; do not
    // wait for it forever.
    let grace = Duration::from_secs(10);
    let stdout = out
        .recv_timeout(grace)
        .unwrap_or_else(|_| b"<stdout still open>".to_vec());
    let stderr = err
        .recv_timeout(grace)
        .unwrap_or_else(|_| b"<stderr still open>".to_vec());
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `cmd`, asserts it succeeded, returns its stdout.
pub fn checked_stdout(cmd: &mut Command, timeout: Duration) -> String {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout);
    assert!(
        out.status.success(),
        "{desc} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a host tool (e.g. `free -b`) and returns its stdout.
pub fn host_tool(args: &[&str]) -> String {
    let (prog, rest) = args.split_first().expect("a command");
    checked_stdout(host_command(tool(prog)).args(rest), RUN_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One parsed `/proc/self/mountinfo` line (only the fields we use).
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

pub fn mountinfo() -> Vec<MountEntry> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <type> <source> <super opts>"
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                root: unescape_mountinfo(l.get(3)?),
                mount_point: PathBuf::from(unescape_mountinfo(l.get(4)?)),
                fs_type: r.first()?.to_string(),
                super_options: r.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// How many mounts are stacked at exactly `path` in our mount namespace.
pub fn mounts_at(path: &Path) -> usize {
    mountinfo().iter().filter(|m| m.mount_point == path).count()
}

/// Lazily detaches everything mounted at `path` (a dead FUSE mount cannot be
/// unmounted any other way without its daemon).
pub fn unmount_all(path: &Path) {
    for _ in 0..16 {
        if mounts_at(path) == 0 {
            return;
        }
        if let Err(e) = umount2(path, MntFlags::MNT_DETACH) {
            eprintln!("e2e cleanup: umount2({}, MNT_DETACH): {e}", path.display());
            return;
        }
    }
}

/// Mount point of the unified (v2) hierarchy, if one is mounted (on a
/// hybrid host it carries no controllers).
pub fn cgroup_v2_mount() -> Option<PathBuf> {
    mountinfo()
        .into_iter()
        .find(|m| m.fs_type == "cgroup2" && m.root == "/")
        .map(|m| m.mount_point)
}

/// Mount point of the v1 hierarchy carrying `controller` (cpu and cpuacct
/// may be co-mounted or separate; either way this finds the right one).
pub fn cgroup_v1_mount(controller: &str) -> Option<PathBuf> {
    mountinfo()
        .into_iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == controller))
        .map(|m| m.mount_point)
}

// ---------------------------------------------------------------------------
// Host facts
// ---------------------------------------------------------------------------

pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Parses a cpu list like `0-3,6` into its members.
pub fn parse_cpu_list(text: &str) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad cpu list {text:?}: {e}"));
        let b: u32 = b
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad cpu list {text:?}: {e}"));
        set.extend(a..=b);
    }
    set
}

/// The host's online CPUs, straight from sysfs (the test process is on the
/// host, so it reads the real file, not the daemon's).
pub fn host_online_cpus() -> BTreeSet<u32> {
    parse_cpu_list(&read("/sys/devices/system/cpu/online"))
}

/// `/proc/uptime`'s first field.
pub fn uptime_secs(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("unparsable uptime {text:?}"))
}

/// A value in kB from meminfo-formatted text.
pub fn meminfo_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// The whole block device holding `path`, as (major, minor, kernel name).
/// Throttle rules and diskstats are per whole disk, so a partition is mapped
/// to its parent through sysfs.
#[derive(Debug, Clone)]
pub struct BlockDev {
    pub major: u64,
    pub minor: u64,
    pub name: String,
}

pub fn disk_of(path: &Path) -> BlockDev {
    let dev = fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .dev();
    // glibc's gnu_dev_major/minor encoding.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let mut sys = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).unwrap_or_else(|e| {
        panic!(
            "{} is on {major}:{minor}, which is not a block device ({e})",
            path.display()
        )
    });
    if sys.join("partition").exists() {
        sys.pop();
    }
    let devno = read(sys.join("dev"));
    let (ma, mi) = devno.trim().split_once(':').expect("MAJ:MIN in sysfs dev");
    let name = read(sys.join("uevent"))
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_owned))
        .expect("DEVNAME in uevent");
    BlockDev {
        major: ma.parse().expect("major"),
        minor: mi.parse().expect("minor"),
        name,
    }
}

/// 1-based whitespace field `field` of the diskstats line for `dev`
/// (1 major, 2 minor, 3 name, 4 reads, 5 reads merged, 6 sectors read,
/// 7 ms reading, 8 writes, 9 writes merged, 10 sectors written, ...).
pub fn diskstats_field(text: &str, dev: &str, field: usize) -> Option<u64> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(2) == Some(&dev) {
            f.get(field - 1)?.parse().ok()
        } else {
            None
        }
    })
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonKind {
    Proclens,
    Lxcfs,
}

pub fn daemon_kind() -> DaemonKind {
    match std::env::var("PROCLENS_E2E_DAEMON").as_deref() {
        Err(_) | Ok("") | Ok("proclens") => DaemonKind::Proclens,
        Ok("lxcfs") => DaemonKind::Lxcfs,
        Ok(other) => panic!("PROCLENS_E2E_DAEMON={other:?}: expected proclens or lxcfs"),
    }
}

/// The proclens binary under test: the one Cargo built with this test
/// binary, or `PROCLENS_E2E_BIN` (an absolute path) when set. The v2 VM
/// sets it to the release build: under qemu's TCG a debug daemon makes the
/// suite several times slower.
pub fn proclens_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var("PROCLENS_E2E_BIN") {
        Ok(path) if !path.is_empty() => {
            let meta =
                fs::metadata(&path).unwrap_or_else(|e| panic!("PROCLENS_E2E_BIN={path}: {e}"));
            assert!(
                Path::new(&path).is_absolute() && meta.is_file() && meta.mode() & 0o111 != 0,
                "PROCLENS_E2E_BIN={path} is not an absolute path to an executable"
            );
            path
        }
        _ => env!("CARGO_BIN_EXE_proclens").to_owned(),
    })
}

/// The seccomp socket of the test daemon mounted at `mountpoint`.
pub fn seccomp_socket_of(mountpoint: &Path) -> PathBuf {
    mountpoint.with_file_name("seccomp.sock")
}

/// The command that mounts at `mountpoint` in the foreground. `verbose`
/// adds `-v` (proclens only); tests about stderr content leave it off.
pub fn mount_command(mountpoint: &Path, verbose: bool) -> Command {
    match daemon_kind() {
        DaemonKind::Proclens => {
            let mut cmd = host_command(proclens_bin());
            cmd.arg("mount");
            if verbose {
                cmd.arg("-v");
            }
            // Each test daemon takes runc's seccomp descriptors beside its
            // mount point, never at the host's /run/proclens.
            cmd.arg("--seccomp-socket")
                .arg(seccomp_socket_of(mountpoint))
                .arg(mountpoint);
            cmd
        }
        DaemonKind::Lxcfs => {
            // lxcfs does not create its mountpoint, and refuses to start if
            // another instance holds the same pid file.
            let _ = fs::create_dir_all(mountpoint);
            let pidfile = mountpoint
                .parent()
                .unwrap_or(Path::new("/tmp"))
                .join(format!("{}.lxcfs.pid", unique_name()));
            let mut cmd = host_command(tool("lxcfs"));
            cmd.arg("-f")
                .arg("-l")
                .arg("--enable-cfs")
                .arg("-p")
                .arg(pidfile)
                .arg(mountpoint);
            cmd
        }
    }
}

/// A running daemon mounted at `mountpoint()`.
///
/// Drop sends SIGTERM, waits, SIGKILLs if it must, and then lazily detaches
/// whatever is still mounted at the mountpoint (including anything a
/// misbehaving second daemon stacked there).
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
    /// Started by someone else ([`Daemon::external`]): Drop leaves it be.
    external: bool,
    // Declared last so the directory outlives the unmount in Drop.
    _dir: Option<TempDir>,
}

impl Daemon {
    /// Mounts at `<fresh tempdir>/mnt` (not created beforehand: `proclens
    /// mount` must create it) and waits until `proc/meminfo` can be read.
    pub fn start() -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("proclens-e2e-")
            .tempdir()
            .expect("create temp dir");
        let mut d = Daemon::start_in(dir.path());
        d._dir = Some(dir);
        d
    }

    /// Like [`Daemon::start`], in a directory the caller owns; used to start
    /// a second daemon on the same path.
    pub fn start_in(dir: &Path) -> Daemon {
        Daemon::launch(dir, mount_command(&dir.join("mnt"), true))
    }

    /// `program mount -v <dir>/mnt` with `env` added: a proclens binary
    /// installed elsewhere (the reload tests replace it under the daemon).
    pub fn start_program(dir: &Path, program: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = host_command(program);
        cmd.arg("mount")
            .arg("-v")
            .arg("--seccomp-socket")
            .arg(seccomp_socket_of(&dir.join("mnt")))
            .arg(dir.join("mnt"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::launch(dir, cmd)
    }

    /// Starts `cmd` (a `mount` of `<dir>/mnt`) and waits until it serves.
    pub fn launch(dir: &Path, mut cmd: Command) -> Daemon {
        let mountpoint = dir.join("mnt");
        let log = dir.join(format!("{}.log", unique_name()));
        let logfile = fs::File::create(&log).expect("create daemon log");
        cmd.stdin(Stdio::null())
            .stdout(logfile.try_clone().expect("dup log fd"))
            .stderr(logfile)
            .env("RUST_BACKTRACE", "1");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut d = Daemon {
            child: Some(child),
            mountpoint,
            log,
            external: false,
            _dir: None,
        };
        // On failure `d` drops here, which kills the child and unmounts.
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let meminfo = self.mountpoint.join("proc/meminfo");
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("never tried");
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "daemon exited with {status} before it was ready\nlog:\n{}",
                    self.log_text()
                );
            }
            // Probe from a child process: if the mount is up but the daemon
            // is stuck, our own read would block this test forever.
            let out = run_with_timeout(
                host_command(tool("cat")).arg(&meminfo),
                Duration::from_secs(5),
            );
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && text.contains("MemTotal:") {
                return;
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "daemon not ready after {READY_TIMEOUT:?}: last read of {}: {last}\nlog:\n{}",
            meminfo.display(),
            self.log_text()
        );
    }

    /// A daemon this harness did not start and must not stop (systemd's
    /// proclens.service, in tests/systemd.rs), serving at `mountpoint`:
    /// containers bind its files; Drop neither signals nor unmounts.
    pub fn external(mountpoint: &Path) -> Daemon {
        Daemon {
            child: None,
            mountpoint: mountpoint.to_owned(),
            log: PathBuf::new(),
            external: true,
            _dir: None,
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal_and_wait(&mut self, sig: Signal, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            return Some(status);
        }
        // Our own unreaped child: its pid cannot have been recycled.
        let _ = kill(Pid::from_raw(child.id() as i32), sig);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `sig` (SIGTERM or SIGINT) and returns the exit status, or None
    /// if the daemon did not exit within 10 s. The mount is left for the
    /// caller to inspect; Drop cleans it up.
    pub fn stop_with(&mut self, sig: Signal) -> Option<ExitStatus> {
        self.signal_and_wait(sig, Duration::from_secs(10))
    }

    /// SIGKILL, leaving a dead FUSE mount behind (until Drop).
    pub fn kill_hard(&mut self) {
        let status = self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
        assert!(status.is_some(), "daemon survived SIGKILL for 10 s");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.external {
            return;
        }
        if self.child.is_some()
            && self
                .signal_and_wait(Signal::SIGTERM, Duration::from_secs(10))
                .is_none()
        {
            eprintln!("e2e cleanup: daemon ignored SIGTERM for 10 s, sending SIGKILL");
            let _ = self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
        }
        unmount_all(&self.mountpoint);
        if thread::panicking() {
            let log = self.log_text();
            // fuser's own debug lines (capability negotiation, every
            // request) would push the daemon's messages out of the tail.
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains(" fuser::"))
                .rev()
                .take(60)
                .collect();
            eprintln!("---- daemon log (last {} lines) ----", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

/// Limits of a test container's cgroup. `None` leaves the controller's
/// default (unlimited / all CPUs / the parent's) in place. Written as
/// `memory.limit_in_bytes`, `cpuset.cpus`, `cpu.cfs_quota_us` /
/// `cpu.cfs_period_us`, `pids.max` on v1 and `memory.max`, `cpuset.cpus`,
/// `cpu.max`, `pids.max` on v2.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// cpuset.cpus, e.g. "1".
    pub cpus: Option<String>,
    /// (quota, period) in microseconds.
    pub cfs: Option<(u64, u64)>,
    /// The disk the I/O tests write to. On v1 the harness puts a (never
    /// reached) 1 TiB/s read and write throttle rule on it: v1 blkio on
    /// these kernels only accounts I/O for devices that have a throttle
    /// rule, like `docker --device-write-bps` sets. On v2 `io.stat`
    /// accounts every device and nothing is written.
    pub blkio_disk: Option<BlockDev>,
    pub pids_max: Option<u64>,
}

impl Limits {
    /// The container the tests talk about: 256 MiB, one CPU (the host's
    /// last, so the daemon must renumber it to cpu0), half a CPU of quota,
    /// I/O accounting on the disk holding /var/tmp, 512 pids.
    pub fn standard() -> Limits {
        let last_cpu = *host_online_cpus()
            .iter()
            .next_back()
            .expect("at least one online CPU");
        Limits {
            memory_bytes: Some(256 * MIB),
            cpus: Some(last_cpu.to_string()),
            cfs: Some((50_000, 100_000)),
            blkio_disk: Some(disk_of(Path::new("/var/tmp"))),
            pids_max: Some(512),
        }
    }

    /// No limit at all: everything inherited from the parent cgroup.
    pub fn none() -> Limits {
        Limits {
            memory_bytes: None,
            cpus: None,
            cfs: None,
            blkio_disk: None,
            pids_max: None,
        }
    }
}

/// Shell run as pid 1 of the container before the command: binds the
/// daemon's files over procfs (freshly mounted by `unshare --mount-proc`)
/// and sysfs, then becomes the command. `$1` is the daemon's mountpoint.
const BIND_SCRIPT: &str = r#"set -e
m=$1; shift
for f in meminfo cpuinfo stat loadavg uptime diskstats swaps; do
    mount --bind "$m/proc/$f" "/proc/$f"
done
# lxcfs, the stand-in, has no vmstat; a kernel without PSI no pressure files.
if [ -e "$m/proc/vmstat" ]; then mount --bind "$m/proc/vmstat" /proc/vmstat; fi
for r in cpu memory io; do
    if [ -e "$m/proc/pressure/$r" ]; then mount --bind "$m/proc/pressure/$r" "/proc/pressure/$r"; fi
done
mount --bind "$m/sys/devices/system/cpu" /sys/devices/system/cpu
# iostat reads /sys/block/<disk>/stat (lxcfs, the stand-in, has no sys/block).
if [ -d "$m/sys/block" ]; then mount --bind "$m/sys/block" /sys/block; fi
exec "$@"
"#;

/// The same container without the daemon's files: what it sees today.
const NO_BIND_SCRIPT: &str = r#"shift; exec "$@""#;

/// Name of the child cgroup of a [`Container::nested`] container.
pub const NESTED_CHILD: &str = "app";

/// A fresh cgroup (one directory per v1 controller hierarchy, all named
/// alike, or one directory below the v2 unified mount) whose processes run
/// in new pid and mount namespaces that see the daemon's files. Borrowing
/// the daemon makes every container drop before it.
///
/// Drop kills every task in the cgroups and removes them.
#[derive(Debug)]
pub struct Container<'d> {
    daemon: &'d Daemon,
    name: String,
    version: CgroupVersion,
    /// Cgroup paths as `/proc/<pid>/cgroup` shows them, from the container's
    /// root cgroup down to the one its processes join.
    paths: Vec<String>,
    /// The container's root cgroup in each hierarchy, in creation order;
    /// Drop removes them with everything below.
    tops: Vec<PathBuf>,
    /// Limits of the cgroup the processes join.
    pub limits: Limits,
    /// For [`Container::nested`]: the limits of the container's root cgroup.
    pub parent_limits: Option<Limits>,
}

impl<'d> Container<'d> {
    /// A container whose processes run in one fresh cgroup
    /// `/proclens-e2e-<pid>-<n>` with `limits`.
    pub fn new(daemon: &'d Daemon, limits: Limits) -> Container<'d> {
        Container::build(daemon, unique_name(), vec![limits])
    }

    /// Like [`Container::new`] with the cgroup name `name` (a name from
    /// [`unique_name`], to make a cgroup again at the path of one removed).
    pub fn named(daemon: &'d Daemon, name: &str, limits: Limits) -> Container<'d> {
        Container::build(daemon, name.to_owned(), vec![limits])
    }

    /// A container whose root cgroup `/<name>` has `parent` and whose
    /// processes run in its child `/<name>/app` with `child` (like a
    /// systemd or docker-in-docker container that keeps its own processes in
    /// a leaf below the cgroup its limits are on). On v2 the harness enables
    /// every controller in `/<name>/cgroup.subtree_control`.
    pub fn nested(daemon: &'d Daemon, parent: Limits, child: Limits) -> Container<'d> {
        Container::build(daemon, unique_name(), vec![parent, child])
    }

    fn build(daemon: &'d Daemon, name: String, levels: Vec<Limits>) -> Container<'d> {
        let mut paths = vec![format!("/{name}")];
        if levels.len() == 2 {
            paths.push(format!("/{name}/{NESTED_CHILD}"));
        }
        let mut c = Container {
            daemon,
            name,
            version: cgroup_version(),
            paths,
            tops: Vec::new(),
            limits: levels.last().expect("one level at least").clone(),
            parent_limits: (levels.len() == 2).then(|| levels[0].clone()),
        };
        // From here a failed mkdir or write panics and Drop removes what
        // exists.
        for (level, limits) in levels.iter().enumerate() {
            for root in c.hierarchies() {
                let dir = c.at(&root, level);
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                if level == 0 {
                    c.tops.push(dir);
                }
            }
            c.apply(level, limits);
            if level + 1 < levels.len() && c.version == CgroupVersion::V2 {
                // A child gets a controller only when its parent enables it
                // (Documentation/admin-guide/cgroup-v2.rst, "Enabling and
                // Disabling"); the parent is ours and holds no process.
                let ctl: Vec<String> = V2_CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
                c.write_at(level, "cgroup.subtree_control", &ctl.join(" "));
            }
        }
        c
    }

    /// The root directory of every hierarchy the container has a cgroup
    /// in (cpu and cpuacct may share one v1 hierarchy; it counts once), on
    /// v1 the unified one last when it is mounted.
    fn hierarchies(&self) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![cgroup_v2_mount().expect("cgroup2 mounted")],
            CgroupVersion::V1 => {
                let mut seen = Vec::new();
                for ctrl in CONTROLLERS {
                    let root =
                        cgroup_v1_mount(ctrl).unwrap_or_else(|| panic!("no v1 {ctrl} hierarchy"));
                    if !seen.contains(&root) {
                        seen.push(root);
                    }
                }
                seen.extend(cgroup_v2_mount());
                seen
            }
        }
    }

    /// `level`'s directory below a hierarchy root.
    fn at(&self, root: &Path, level: usize) -> PathBuf {
        root.join(self.paths[level].trim_start_matches('/'))
    }

    /// The directory of cgroup path `rel` in the hierarchy carrying
    /// `controller` (on v2 the one directory, whatever the controller).
    fn dir_of(&self, rel: &str, controller: &str) -> PathBuf {
        let root = match self.version {
            CgroupVersion::V2 => cgroup_v2_mount().expect("cgroup2 mounted"),
            CgroupVersion::V1 => cgroup_v1_mount(controller)
                .unwrap_or_else(|| panic!("no v1 hierarchy carries {controller:?}")),
        };
        root.join(rel.trim_start_matches('/'))
    }

    /// `level`'s directory in the hierarchy carrying `controller`.
    fn dir_at(&self, level: usize, controller: &str) -> PathBuf {
        self.dir_of(&self.paths[level], controller)
    }

    /// Writes a control file of cgroup `rel`; the controller is the file's
    /// prefix (`memory.max` -> memory; `cgroup.*` files exist everywhere).
    fn write_to(&self, rel: &str, file: &str, value: &str) {
        let controller = file.split('.').next().unwrap_or(file);
        let path = self.dir_of(rel, controller).join(file);
        fs::write(&path, value.trim())
            .unwrap_or_else(|e| panic!("write {:?} to {}: {e}", value.trim(), path.display()));
    }

    fn write_at(&self, level: usize, file: &str, value: &str) {
        self.write_to(&self.paths[level].clone(), file, value);
    }

    fn apply(&self, level: usize, l: &Limits) {
        let parent = level.checked_sub(1).map(|p| self.paths[p].clone());
        self.apply_to(&self.paths[level].clone(), parent.as_deref(), l);
    }

    /// Writes `l` to cgroup `rel`, whose parent is `parent` (None: the
    /// hierarchy root).
    fn apply_to(&self, rel: &str, parent: Option<&str>, l: &Limits) {
        match self.version {
            CgroupVersion::V1 => {
                // cpuset refuses tasks (ENOSPC) until both mems and cpus are
                // set, and cpus cannot be set before mems. Unset, they are
                // the parent's.
                let parent = match parent {
                    None => cgroup_v1_mount("cpuset").expect("cpuset hierarchy"),
                    Some(p) => self.dir_of(p, "cpuset"),
                };
                self.write_to(rel, "cpuset.mems", &read(parent.join("cpuset.mems")));
                let cpus = match &l.cpus {
                    Some(c) => c.clone(),
                    None => read(parent.join("cpuset.cpus")),
                };
                self.write_to(rel, "cpuset.cpus", &cpus);
                if let Some(bytes) = l.memory_bytes {
                    self.write_to(rel, "memory.limit_in_bytes", &bytes.to_string());
                }
                if let Some((quota, period)) = l.cfs {
                    self.write_to(rel, "cpu.cfs_period_us", &period.to_string());
                    self.write_to(rel, "cpu.cfs_quota_us", &quota.to_string());
                }
                if let Some(disk) = &l.blkio_disk {
                    let rule = format!("{}:{} 1099511627776", disk.major, disk.minor);
                    self.write_to(rel, "blkio.throttle.write_bps_device", &rule);
                    self.write_to(rel, "blkio.throttle.read_bps_device", &rule);
                }
            }
            CgroupVersion::V2 => {
                if let Some(cpus) = &l.cpus {
                    self.write_to(rel, "cpuset.cpus", cpus);
                }
                if let Some(bytes) = l.memory_bytes {
                    self.write_to(rel, "memory.max", &bytes.to_string());
                }
                if let Some((quota, period)) = l.cfs {
                    self.write_to(rel, "cpu.max", &format!("{quota} {period}"));
                }
                // blkio_disk: io.stat counts every device, no rule needed.
            }
        }
        if let Some(max) = l.pids_max {
            self.write_to(rel, "pids.max", &max.to_string());
        }
    }

    /// Makes the cgroup `/<name>/<child>` (a service, a session, a pod
    /// member) in every hierarchy with `limits`, its cpuset the container's.
    /// It goes with the container's root when the container drops.
    ///
    /// On v2 a child with limits needs its controllers enabled in the
    /// container's `cgroup.subtree_control`, after which the container's
    /// root may hold no process ("no internal processes"): start the
    /// processes in children then.
    pub fn add_child(&self, child: &str, limits: &Limits) -> String {
        let rel = format!("/{}/{child}", self.name);
        let limited = limits.memory_bytes.is_some()
            || limits.cpus.is_some()
            || limits.cfs.is_some()
            || limits.pids_max.is_some();
        if self.version == CgroupVersion::V2 && limited {
            let ctl: Vec<String> = V2_CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
            self.write_to(
                &format!("/{}", self.name),
                "cgroup.subtree_control",
                &ctl.join(" "),
            );
        }
        for root in self.hierarchies() {
            let dir = root.join(rel.trim_start_matches('/'));
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        self.apply_to(&rel, Some(&format!("/{}", self.name)), limits);
        rel
    }

    /// A fresh instance of the container whose launcher starts in cgroup
    /// `rel` (its pid 1 too), in new pid and mount namespaces (and a new
    /// cgroup namespace, rooted at `rel`, with `cgroupns`), the daemon's
    /// files bound over /proc and sysfs, running `argv`.
    pub fn command_at(&self, rel: &str, cgroupns: bool, argv: &[&str]) -> Command {
        let mut cmd = self.in_cgroup(rel, "unshare");
        cmd.args([
            "--pid",
            "--mount",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
        ]);
        if cgroupns {
            cmd.arg("--cgroup");
        }
        cmd.arg("--")
            .arg(tool("sh"))
            .args(["-c", BIND_SCRIPT, "sh"])
            .arg(self.daemon.mountpoint())
            .args(argv);
        cmd
    }

    /// The cgroup version this container was made on.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The container's root cgroup name, which is also its path below each
    /// hierarchy root (`/<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup its processes run in, as `/proc/<pid>/cgroup` shows it
    /// (`/<name>`, or `/<name>/app` for a nested container).
    pub fn cgroup_path(&self) -> &str {
        self.paths.last().expect("a path")
    }

    /// The directory of the cgroup its processes run in, in the hierarchy
    /// carrying `controller` (on v2: the one directory, for any name).
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        self.dir_at(self.paths.len() - 1, controller)
    }

    /// The container's root cgroup directory for `controller` (the parent
    /// of [`Container::cgroup_dir`] for a nested container, else the same).
    pub fn root_cgroup_dir(&self, controller: &str) -> PathBuf {
        self.dir_at(0, controller)
    }

    /// The directory whose `*.pressure` files are the container's: its
    /// root cgroup in the unified hierarchy (on v1, the one beside the
    /// controllers'). Fails the test, saying why, when there is none or the
    /// kernel has no PSI.
    pub fn pressure_dir(&self) -> PathBuf {
        let unified = cgroup_v2_mount().unwrap_or_else(|| {
            panic!("no cgroup2 mount: the kernel accounts pressure stalls only in the unified hierarchy")
        });
        let dir = unified.join(self.paths[0].trim_start_matches('/'));
        assert!(
            dir.join("cpu.pressure").exists(),
            "{} has no cpu.pressure: this kernel has no PSI (boot it with psi=1)",
            dir.display()
        );
        dir
    }

    /// Writes `value` to the control file `file` of the cgroup the
    /// processes run in (the controller is the file's prefix).
    pub fn set(&self, file: &str, value: &str) {
        self.write_at(self.paths.len() - 1, file, value);
    }

    /// Changes the CFS quota of the processes' cgroup, on v1 or v2.
    pub fn set_cpu_quota(&self, quota_us: u64, period_us: u64) {
        match self.version {
            CgroupVersion::V1 => {
                self.set("cpu.cfs_period_us", &period_us.to_string());
                self.set("cpu.cfs_quota_us", &quota_us.to_string());
            }
            CgroupVersion::V2 => self.set("cpu.max", &format!("{quota_us} {period_us}")),
        }
    }

    /// Changes the cpuset of the processes' cgroup (e.g. "1" or "0-1").
    pub fn set_cpus(&self, cpus: &str) {
        self.set("cpuset.cpus", cpus);
    }

    /// Limits swap to `bytes` beyond the memory limit: `memory.swap.max` on
    /// v2; on v1 `memory.memsw.limit_in_bytes` = memory limit + `bytes`
    /// (the container needs a memory limit there).
    pub fn set_swap_limit(&self, bytes: u64) {
        match self.version {
            CgroupVersion::V1 => {
                let mem = self
                    .limits
                    .memory_bytes
                    .expect("v1 swap limit needs a memory limit (memsw = memory + swap)");
                self.set("memory.memsw.limit_in_bytes", &(mem + bytes).to_string());
            }
            CgroupVersion::V2 => self.set("memory.swap.max", &bytes.to_string()),
        }
    }

    /// Swap the kernel charges to the processes' cgroup, in bytes:
    /// `memory.swap.current` on v2, memsw usage minus memory usage on v1.
    pub fn swap_usage(&self) -> u64 {
        let dir = self.cgroup_dir("memory");
        let num = |f: &str| -> u64 {
            read(dir.join(f))
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
        };
        match self.version {
            CgroupVersion::V1 => {
                num("memory.memsw.usage_in_bytes").saturating_sub(num("memory.usage_in_bytes"))
            }
            CgroupVersion::V2 => num("memory.swap.current"),
        }
    }

    /// A command that runs `program args...` inside the container: `launcher`
    /// (unshare or nsenter) is exec'd already inside its cgroup(s), so
    /// nothing it starts ever runs outside them.
    fn in_cgroups(&self, launcher: &str) -> Command {
        self.in_cgroup(self.cgroup_path(), launcher)
    }

    /// The `cgroup.procs` files of cgroup `rel` in every hierarchy: writing
    /// "0" to each moves the writing process there.
    pub fn procs_files(&self, rel: &str) -> Vec<PathBuf> {
        self.hierarchies()
            .iter()
            .map(|root| root.join(rel.trim_start_matches('/')).join("cgroup.procs"))
            .collect()
    }

    /// Like [`Container::in_cgroups`], with the launcher in cgroup `rel`.
    fn in_cgroup(&self, rel: &str, launcher: &str) -> Command {
        let dirs: Vec<PathBuf> = self
            .hierarchies()
            .iter()
            .map(|root| root.join(rel.trim_start_matches('/')))
            .collect();
        command_in_cgroups(tool(launcher), &dirs)
    }

    fn instance(&self, argv: &[&str], script: &str) -> Command {
        let mut cmd = self.in_cgroups("unshare");
        cmd.args([
            "--pid",
            "--mount",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
        ])
        .arg("--")
        .arg(tool("sh"))
        .args(["-c", script, "sh"])
        .arg(self.daemon.mountpoint())
        .args(argv);
        cmd
    }

    /// The command for a fresh container instance running `argv`. It is
    /// pid 1 of a new pid namespace, with its own /proc and the binds.
    /// `--kill-child` ties the namespace to the launcher: killing the
    /// launcher (our child) kills everything inside.
    pub fn command(&self, argv: &[&str]) -> Command {
        self.instance(argv, BIND_SCRIPT)
    }

    /// Like [`Container::command`] but without the daemon's files: the
    /// same cgroup and namespaces, the kernel's own /proc and sysfs (what
    /// the container sees without proclens).
    pub fn command_without_binds(&self, argv: &[&str]) -> Command {
        self.instance(argv, NO_BIND_SCRIPT)
    }

    /// Runs `argv` to completion in a fresh instance of the container.
    pub fn run(&self, argv: &[&str]) -> Output {
        run_with_timeout(&mut self.command(argv), RUN_TIMEOUT)
    }

    /// [`Container::run`] with a deadline of its own, for work whose length
    /// is the machine's (a TCG guest runs it many times slower), not ours.
    pub fn run_within(&self, argv: &[&str], timeout: Duration) -> Output {
        run_with_timeout(&mut self.command(argv), timeout)
    }

    /// Runs a shell script in the container, asserts success, returns stdout.
    pub fn sh(&self, script: &str) -> String {
        checked_stdout(&mut self.command(&["sh", "-c", script]), RUN_TIMEOUT)
    }

    /// [`Container::sh`] without the daemon's files bound in.
    pub fn sh_without_binds(&self, script: &str) -> String {
        checked_stdout(
            &mut self.command_without_binds(&["sh", "-c", script]),
            RUN_TIMEOUT,
        )
    }

    /// Starts a long-running `argv` in the container. Waits until the
    /// binds are in place and `argv` is running as the namespace's pid 1.
    pub fn spawn(&self, argv: &[&str]) -> Spawned {
        let mut cmd = self.command(argv);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let desc = format!("{argv:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start container {desc}: {e}"));
        let lines = line_channel(child.stdout.take().expect("stdout is piped"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let sink = Arc::clone(&stderr);
            let mut err = child.stderr.take().expect("stderr is piped");
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        let mut s = Spawned {
            child,
            lines,
            stderr,
            desc,
            init: 0,
        };
        s.init = s.wait_for_init(argv);
        s
    }

    /// Runs `argv` inside the pid and mount namespaces of `target` (like
    /// `docker exec`): the new process has no ancestor inside the container.
    pub fn exec(&self, target: &Spawned, argv: &[&str]) -> Output {
        let mut cmd = self.in_cgroups("nsenter");
        cmd.arg(format!("--target={}", target.init_pid()))
            .args(["--pid", "--mount", "--"])
            .args(argv);
        run_with_timeout(&mut cmd, RUN_TIMEOUT)
    }

    /// Host pids of all tasks in the container's cgroups (and below).
    pub fn tasks(&self) -> BTreeSet<i32> {
        self.tops
            .iter()
            .flat_map(|d| cgroup_tasks_below(d))
            .collect()
    }
}

/// A host command for `program` that is exec'd already inside the cgroups
/// `dirs` (one per hierarchy), so nothing it starts runs outside them.
pub fn command_in_cgroups(program: impl AsRef<std::ffi::OsStr>, dirs: &[PathBuf]) -> Command {
    let procs: Vec<CString> = dirs
        .iter()
        .map(|d| {
            let path = d.join("cgroup.procs");
            CString::new(path.as_os_str().as_bytes()).expect("no NUL in path")
        })
        .collect();
    let mut cmd = host_command(program);
    // SAFETY: the closure runs between fork and exec, so it only calls
    // async-signal-safe functions (open/write/close, errno) on data
    // allocated before the fork. Writing "0" to a v1 or v2 cgroup.procs
    // moves the writing process itself.
    unsafe {
        cmd.pre_exec(move || {
            for path in &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
    cmd
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        for dir in self.tops.iter().rev() {
            remove_cgroup(dir);
        }
    }
}

/// Tasks of `dir` and of every cgroup below it.
fn cgroup_tasks_below(dir: &Path) -> BTreeSet<i32> {
    let mut all = cgroup_tasks(dir);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                all.extend(cgroup_tasks_below(&e.path()));
            }
        }
    }
    all
}

fn cgroup_tasks(dir: &Path) -> BTreeSet<i32> {
    ["tasks", "cgroup.procs"]
        .iter()
        .filter_map(|f| fs::read_to_string(dir.join(f)).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// SIGKILLs `pid` only if it is (still) a task of `dir`: the pidfd pins the
/// process, so a pid recycled by someone else's process after we listed the
/// cgroup is never signalled.
fn kill_if_member(dir: &Path, pid: i32) {
    // SAFETY: plain syscalls with integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return; // already gone
    }
    if cgroup_tasks(dir).contains(&pid) {
        // SAFETY: as above; a null siginfo means "as if by kill(2)".
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                libc::SIGKILL,
                std::ptr::null::<u8>(),
                0,
            );
        }
    }
    // SAFETY: closing the fd we opened.
    unsafe {
        libc::close(pidfd as i32);
    }
}

/// Kills whatever runs in `dir` (children first) and removes it. Never
/// panics: this runs in Drop, possibly while a test is already failing.
pub fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for pid in cgroup_tasks(dir) {
            kill_if_member(dir, pid);
        }
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() > deadline => {
                eprintln!(
                    "e2e cleanup: LEAKED cgroup {}: {e} (tasks {:?})",
                    dir.display(),
                    cgroup_tasks(dir)
                );
                return;
            }
            // EBUSY while killed tasks finish exiting.
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn line_channel<R: Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

/// A long-running container instance. Drop kills it (and with it the whole
/// pid namespace).
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    desc: String,
    init: i32,
}

impl Spawned {
    /// Host pid of the container's pid 1 (the command itself once exec'd).
    pub fn init_pid(&self) -> i32 {
        self.init
    }

    fn wait_for_init(&mut self, argv: &[&str]) -> i32 {
        let launcher = self.child.id();
        let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "container {} exited early with {status}: {}",
                    self.desc,
                    self.stderr_text()
                );
            }
            // unshare --fork has exactly one child: the namespace's pid 1.
            let children = fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children"))
                .unwrap_or_default();
            if let Some(init) = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
            {
                // Ready once the bind script has exec'd the command: `exec "$@"`
                // passes argv through unchanged, so cmdline equals it exactly.
                if fs::read(format!("/proc/{init}/cmdline"))
                    .map(|c| c == want)
                    .unwrap_or(false)
                {
                    return init;
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "container {} not running after 15 s: {}",
            self.desc,
            self.stderr_text()
        );
    }

    /// Next stdout line, or None if none arrived within `timeout` or the
    /// command exited.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // The launcher is our unreaped child, so its pid is still ours;
        // --kill-child takes the namespace's pid 1 (and so everything in
        // the namespace) down with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host process (in the test's own cgroup, outside every test container)
/// rewriting the first `chunk_mib` MiB of a scratch file with O_DIRECT, over
/// and over, so the disk sees I/O that is not the container's while a test
/// runs. Drop stops it and removes its files.
#[derive(Debug)]
pub struct HostWriter {
    child: Option<Child>,
    chunk_mib: u64,
    file: PathBuf,
    progress: PathBuf,
    stop: PathBuf,
}

const HOST_WRITER: &str = r#"i=0
while [ ! -e "$1" ]; do
    dd if=/dev/zero of="$2" bs=1M count="$4" oflag=direct conv=notrunc status=none || exit 1
    i=$((i + 1)); echo "$i" > "$3"
done
"#;

impl HostWriter {
    /// Starts writing in `dir` and returns once the first chunk is on disk.
    pub fn start(dir: &Path, chunk_mib: u64) -> HostWriter {
        let base = dir.join(format!("{}.host", unique_name()));
        let with = |ext: &str| base.with_extension(format!("host.{ext}"));
        let mut w = HostWriter {
            child: None,
            chunk_mib,
            file: with("dd"),
            progress: with("count"),
            stop: with("stop"),
        };
        let child = host_command(tool("sh"))
            .args(["-c", HOST_WRITER, "sh"])
            .args([&w.stop, &w.file, &w.progress])
            .arg(chunk_mib.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the host writer: {e}"));
        w.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.chunks() == 0 {
            assert!(
                Instant::now() < deadline,
                "the host writer wrote nothing to {} in 30 s",
                w.file.display()
            );
            if let Some(Ok(Some(status))) = w.child.as_mut().map(Child::try_wait) {
                panic!("the host writer exited with {status} before writing");
            }
            thread::sleep(Duration::from_millis(10));
        }
        w
    }

    fn chunks(&self) -> u64 {
        fs::read_to_string(&self.progress)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stops after the chunk in progress; returns the bytes written.
    pub fn stop(mut self) -> u64 {
        let _ = fs::write(&self.stop, "");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the host writer did not stop within 30 s");
                }
                _ => thread::sleep(Duration::from_millis(10)),
            }
        };
        assert!(status.success(), "the host writer failed: {status}");
        self.chunks() * self.chunk_mib * MIB
    }
}

impl Drop for HostWriter {
    fn drop(&mut self) {
        let _ = fs::write(&self.stop, "");
        if let Some(mut child) = self.child.take() {
            // Our own unreaped child: its pid cannot have been recycled.
            let _ = child.kill();
            let _ = child.wait();
        }
        for f in [&self.file, &self.progress, &self.stop] {
            let _ = fs::remove_file(f);
        }
    }
}

/// Removes a scratch file on Drop (e.g. the dd target, if the test fails
/// before the container deletes it).
#[derive(Debug)]
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Parsing tool output
// ---------------------------------------------------------------------------

/// `free -b`: the "total" column of the `Mem:` row.
pub fn free_mem_total(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no Mem: total in free output:\n{out}"))
}

/// Idle percentages of every `%Cpu(s):` summary line top printed, in order.
/// procps-ng 4 prints e.g.
/// `%Cpu(s):  0.0 us,  0.0 sy,  0.0 ni,100.0 id,  0.0 wa,  0.0 hi,  0.0 si,  0.0 st`
/// (note no space before a 100.0, hence splitting on commas).
pub fn top_idle_percents(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("%Cpu(s):"))
        .filter_map(|rest| {
            rest.split(',')
                .find_map(|f| {
                    f.trim()
                        .strip_suffix(" id")
                        .or_else(|| f.trim().strip_suffix("id"))
                })
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// The percentages of field `field` (`us`, `sy`, `id`, `st`, ...) of every
/// `%Cpu(s):` summary line top printed, in order.
pub fn top_percents(out: &str, field: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("%Cpu(s):"))
        .filter_map(|rest| {
            rest.split(',')
                .find_map(|f| f.trim().strip_suffix(field).map(str::trim))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// A number as printed by a human-facing tool, with its unit, converted to
/// the candidate byte counts it may stand for (units like "MB" are
/// ambiguous between 10^6 and 2^20, so both are returned), and the
/// rounding error its printed precision allows.
#[derive(Debug, Clone)]
pub struct Quantity {
    pub text: String,
    pub candidates: Vec<f64>,
    pub tolerance: Vec<f64>,
}

impl Quantity {
    pub fn matches(&self, expected: f64) -> bool {
        self.candidates
            .iter()
            .zip(&self.tolerance)
            .any(|(v, tol)| (v - expected).abs() <= tol + expected * 0.001)
    }
}

fn unit_multipliers(unit: &str) -> Option<Vec<f64>> {
    const K: f64 = 1024.0;
    let u = unit.trim_end_matches(['/', ',', ';', ')', '|']);
    Some(match u {
        "" | "B" | "b" | "bytes" | "byte" => vec![1.0],
        // /proc/meminfo's "kB" is KiB.
        "kB" | "KiB" | "kiB" | "Ki" | "KB" | "K" | "k" | "kb" => vec![K, 1e3],
        "MiB" | "Mi" => vec![K * K],
        "MB" | "M" | "m" | "mb" => vec![K * K, 1e6],
        "GiB" | "Gi" => vec![K * K * K],
        "GB" | "G" | "g" | "gb" => vec![K * K * K, 1e9],
        "TiB" | "Ti" => vec![K * K * K * K],
        "TB" | "T" => vec![K * K * K * K, 1e12],
        _ => return None,
    })
}

/// All quantities on `line` after `label` (a case-insensitive prefix). A unit
/// may be glued to the number ("256MiB") or be the next token ("256 MiB").
pub fn quantities_after_label(line: &str, label: &str) -> Option<Vec<Quantity>> {
    let lower = line.trim_start().to_lowercase();
    if !lower.starts_with(&label.to_lowercase()) {
        return None;
    }
    let rest = &line.trim_start()[label.len()..];
    let tokens: Vec<&str> = rest
        .split(|c: char| c.is_whitespace() || c == '|' || c == ':' || c == '(' || c == ')')
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].trim_end_matches([',', ';']);
        let num_len = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        if num_len == 0 || !t.as_bytes()[0].is_ascii_digit() {
            i += 1;
            continue;
        }
        let num_text = &t[..num_len];
        let Ok(value) = num_text.parse::<f64>() else {
            i += 1;
            continue;
        };
        let decimals = num_text.split_once('.').map(|(_, d)| d.len()).unwrap_or(0) as i32;
        let half_step = 0.5 * 10f64.powi(-decimals);
        let mut unit = &t[num_len..];
        let mut consumed = 1;
        if unit.is_empty() {
            if let Some(next) = tokens.get(i + 1) {
                if unit_multipliers(next).is_some()
                    && !next.is_empty()
                    && !next.as_bytes()[0].is_ascii_digit()
                {
                    unit = next;
                    consumed = 2;
                }
            }
        }
        let mults = unit_multipliers(unit).unwrap_or_else(|| vec![1.0]);
        out.push(Quantity {
            text: format!("{num_text}{}{unit}", if consumed == 2 { " " } else { "" }),
            candidates: mults.iter().map(|m| value * m).collect(),
            tolerance: mults.iter().map(|m| half_step * m).collect(),
        });
        i += consumed;
    }
    Some(out)
}

/// A process's footprint, for the churn and soak tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub rss_kb: u64,
    pub fds: usize,
    pub threads: u64,
}

/// Resident memory, open descriptors and threads of `pid`.
pub fn footprint(pid: u32) -> Footprint {
    let status = read(format!("/proc/{pid}/status"));
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in /proc/{pid}/status"))
    };
    Footprint {
        rss_kb: field("VmRSS:"),
        fds: fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .count(),
        threads: field("Threads:"),
    }
}

/// `struct sysinfo` through ctypes (x86-64 layout): `Sysinfo`, `libc` and
/// `sysinfo()`, for Python scripts that call sysinfo(2) in a container.
pub const PY_SYSINFO: &str = r#"
import ctypes
class Sysinfo(ctypes.Structure):
    _fields_ = [("uptime", ctypes.c_long), ("loads", ctypes.c_ulong * 3),
                ("totalram", ctypes.c_ulong), ("freeram", ctypes.c_ulong),
                ("sharedram", ctypes.c_ulong), ("bufferram", ctypes.c_ulong),
                ("totalswap", ctypes.c_ulong), ("freeswap", ctypes.c_ulong),
                ("procs", ctypes.c_ushort), ("pad", ctypes.c_ushort),
                ("totalhigh", ctypes.c_ulong), ("freehigh", ctypes.c_ulong),
                ("mem_unit", ctypes.c_uint), ("_f", ctypes.c_char * 8)]
libc = ctypes.CDLL(None, use_errno=True)
def sysinfo():
    s = Sysinfo()
    if libc.sysinfo(ctypes.byref(s)) != 0:
        raise OSError(ctypes.get_errno(), "sysinfo")
    return s
"#;
