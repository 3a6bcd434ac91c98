//! Harness for the end-to-end tests: a real daemon on a FUSE mount, and
//! "containers" made of a fresh cgroup v1 set plus new pid and mount
//! namespaces with the daemon's files bind-mounted over `/proc/...` and
//! `/sys/devices/system/cpu`.
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
use std::sync::{Arc, Mutex, MutexGuard};
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

    for ctrl in CONTROLLERS {
        assert!(
            cgroup_v1_mount(ctrl).is_some(),
            "no cgroup v1 hierarchy with the {ctrl} controller in /proc/self/mountinfo; \
             these tests need a v1 or hybrid host"
        );
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

pub fn proclens_bin() -> &'static str {
    env!("CARGO_BIN_EXE_proclens")
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
            cmd.arg(mountpoint);
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
        let mountpoint = dir.join("mnt");
        let log = dir.join(format!("{}.log", unique_name()));
        let logfile = fs::File::create(&log).expect("create daemon log");
        let mut cmd = mount_command(&mountpoint, true);
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

/// cgroup v1 limits of a test container. `None` leaves the controller's
/// default (unlimited / all CPUs) in place.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// cpuset.cpus, e.g. "1".
    pub cpus: Option<String>,
    /// (quota, period) in microseconds.
    pub cfs: Option<(u64, u64)>,
    /// Put a (never reached) 1 TiB/s read and write throttle rule on this
    /// disk: v1 blkio on this kernel only accounts I/O for devices that have
    /// a throttle rule, like `docker --device-write-bps` sets.
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
}

/// Shell run as pid 1 of the container before the command: binds the
/// daemon's files over procfs (freshly mounted by `unshare --mount-proc`)
/// and sysfs, then becomes the command. `$1` is the daemon's mountpoint.
const BIND_SCRIPT: &str = r#"set -e
m=$1; shift
for f in meminfo cpuinfo stat loadavg uptime diskstats swaps; do
    mount --bind "$m/proc/$f" "/proc/$f"
done
mount --bind "$m/sys/devices/system/cpu" /sys/devices/system/cpu
exec "$@"
"#;

/// A set of fresh cgroups (one per v1 controller, all named alike) whose
/// processes run in new pid and mount namespaces that see the daemon's
/// files. Borrowing the daemon makes every container drop before it.
///
/// Drop kills every task in the cgroups and removes them.
#[derive(Debug)]
pub struct Container<'d> {
    daemon: &'d Daemon,
    name: String,
    /// One directory per hierarchy, in creation order.
    cgroups: Vec<PathBuf>,
    pub limits: Limits,
}

impl<'d> Container<'d> {
    pub fn new(daemon: &'d Daemon, limits: Limits) -> Container<'d> {
        let mut c = Container {
            daemon,
            name: unique_name(),
            cgroups: Vec::new(),
            limits,
        };
        let mut seen = BTreeSet::new();
        for ctrl in CONTROLLERS {
            let root = cgroup_v1_mount(ctrl).unwrap_or_else(|| panic!("no v1 {ctrl} hierarchy"));
            // cpu and cpuacct may share one hierarchy; create it once.
            if !seen.insert(root.clone()) {
                continue;
            }
            let dir = root.join(&c.name);
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            c.cgroups.push(dir);
        }
        // From here a failed write panics and Drop removes what exists.
        let l = c.limits.clone();
        if let Some(cpus) = &l.cpus {
            // cpuset refuses tasks (ENOSPC) until both mems and cpus are set,
            // and cpus cannot be set before mems.
            c.write(
                "cpuset",
                "cpuset.mems",
                &read(
                    cgroup_v1_mount("cpuset")
                        .expect("cpuset")
                        .join("cpuset.mems"),
                ),
            );
            c.write("cpuset", "cpuset.cpus", cpus);
        } else {
            let root = cgroup_v1_mount("cpuset").expect("cpuset");
            c.write("cpuset", "cpuset.mems", &read(root.join("cpuset.mems")));
            c.write("cpuset", "cpuset.cpus", &read(root.join("cpuset.cpus")));
        }
        if let Some(bytes) = l.memory_bytes {
            c.write("memory", "memory.limit_in_bytes", &bytes.to_string());
        }
        if let Some((quota, period)) = l.cfs {
            c.write("cpu", "cpu.cfs_period_us", &period.to_string());
            c.write("cpu", "cpu.cfs_quota_us", &quota.to_string());
        }
        if let Some(disk) = &l.blkio_disk {
            let rule = format!("{}:{} 1099511627776", disk.major, disk.minor);
            c.write("blkio", "blkio.throttle.write_bps_device", &rule);
            c.write("blkio", "blkio.throttle.read_bps_device", &rule);
        }
        if let Some(max) = l.pids_max {
            c.write("pids", "pids.max", &max.to_string());
        }
        c
    }

    /// The cgroup name, which is also its path below each hierarchy root
    /// (`/<name>`), as `/proc/<pid>/cgroup` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This container's directory in the hierarchy carrying `controller`.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        cgroup_v1_mount(controller)
            .expect("controller mounted")
            .join(&self.name)
    }

    fn write(&self, controller: &str, file: &str, value: &str) {
        let path = self.cgroup_dir(controller).join(file);
        fs::write(&path, value.trim())
            .unwrap_or_else(|e| panic!("write {:?} to {}: {e}", value.trim(), path.display()));
    }

    /// A command that runs `program args...` inside the container: `launcher`
    /// (unshare or nsenter) is exec'd already inside every cgroup, so nothing
    /// it starts ever runs outside them.
    fn in_cgroups(&self, launcher: &str) -> Command {
        let procs: Vec<CString> = self
            .cgroups
            .iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).expect("no NUL in path")
            })
            .collect();
        let mut cmd = host_command(tool(launcher));
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

    /// The command for a fresh container instance running `argv`. It is
    /// pid 1 of a new pid namespace, with its own /proc and the binds.
    /// `--kill-child` ties the namespace to the launcher: killing the
    /// launcher (our child) kills everything inside.
    pub fn command(&self, argv: &[&str]) -> Command {
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
        .args(["-c", BIND_SCRIPT, "sh"])
        .arg(self.daemon.mountpoint())
        .args(argv);
        cmd
    }

    /// Runs `argv` to completion in a fresh instance of the container.
    pub fn run(&self, argv: &[&str]) -> Output {
        run_with_timeout(&mut self.command(argv), RUN_TIMEOUT)
    }

    /// Runs a shell script in the container, asserts success, returns stdout.
    pub fn sh(&self, script: &str) -> String {
        checked_stdout(&mut self.command(&["sh", "-c", script]), RUN_TIMEOUT)
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

    /// Host pids of all tasks in the container's cgroups.
    pub fn tasks(&self) -> BTreeSet<i32> {
        self.cgroups.iter().flat_map(|d| cgroup_tasks(d)).collect()
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        for dir in self.cgroups.iter().rev() {
            remove_cgroup(dir);
        }
    }
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
fn remove_cgroup(dir: &Path) {
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
