//! What the FUSE benches share: cgroups made for the bench, the daemons
//! (proclens, lxcfs), the host-wide lock the end-to-end tests also take, and
//! small statistics.
#![allow(dead_code)] // each bench uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Taken for the whole bench: the e2e tests hold the same lock, and timing
/// next to them would measure them.
pub fn host_lock() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/proclens-tests.lock")
        .expect("open /tmp/proclens-tests.lock");
    // SAFETY: flock on a descriptor we own; released when it is closed.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    f
}

pub fn require_root(what: &str) {
    assert!(nix::unistd::geteuid().is_root(), "{what} needs root");
}

/// Whether lxcfs runs beside proclens. It must be installed unless the run
/// says otherwise (`PROCLENS_BENCH_NO_LXCFS=1`): a comparison must not
/// silently become a solo run.
pub fn want_lxcfs() -> bool {
    if std::env::var_os("PROCLENS_BENCH_NO_LXCFS").is_some() {
        return false;
    }
    assert!(
        Path::new("/usr/bin/lxcfs").exists(),
        "lxcfs is not installed (apt-get install lxcfs), or set PROCLENS_BENCH_NO_LXCFS=1"
    );
    true
}

/// The controllers a container has: memory, CPU and cpuset on v1, or the
/// unified hierarchy on v2.
fn hierarchies() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut out = Vec::new();
    let v1 = Path::new("/sys/fs/cgroup/memory").exists();
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (fstype, opts) = (f[sep + 1], f[sep + 3]);
        let wanted = (fstype == "cgroup2" && !v1)
            || (fstype == "cgroup"
                && ["memory", "cpuset", "cpu", "cpuacct", "blkio", "pids"]
                    .iter()
                    .any(|c| opts.split(',').any(|o| o == *c)));
        if wanted {
            out.push(PathBuf::from(f[4]));
        }
    }
    out
}

/// A cgroup the bench made in every container hierarchy; removed on drop
/// (after the processes in it are gone).
pub struct Cgroup(pub Vec<PathBuf>);

impl Cgroup {
    pub fn new(name: &str) -> Cgroup {
        let mut dirs = Vec::new();
        for h in hierarchies() {
            let d = h.join(name);
            std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            if d.join("cpuset.mems").exists() && !d.join("cgroup.type").exists() {
                let parent = |f: &str| std::fs::read_to_string(h.join(f)).expect("cpuset");
                std::fs::write(d.join("cpuset.mems"), parent("cpuset.mems").trim())
                    .expect("cpuset.mems");
                std::fs::write(d.join("cpuset.cpus"), parent("cpuset.cpus").trim())
                    .expect("cpuset.cpus");
            }
            dirs.push(d);
        }
        Cgroup(dirs)
    }

    /// Sets `file` (one name per cgroup version) where the controller is.
    fn set(&self, v1: &str, v2: &str, value: &str) {
        let mut done = false;
        for d in &self.0 {
            for f in [v1, v2] {
                if d.join(f).exists() {
                    std::fs::write(d.join(f), value)
                        .unwrap_or_else(|e| panic!("{}/{f}: {e}", d.display()));
                    done = true;
                }
            }
        }
        assert!(done, "no {v1} or {v2} in {:?}", self.0);
    }

    pub fn limit_memory(&self, bytes: u64) -> &Self {
        self.set("memory.limit_in_bytes", "memory.max", &bytes.to_string());
        self
    }

    pub fn pin(&self, cpus: &str) -> &Self {
        self.set("cpuset.cpus", "cpuset.cpus", cpus);
        self
    }

    /// The cgroup.procs files, for a child to join before it execs.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.0.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    pub fn env(&self) -> String {
        self.procs_files()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Moves the calling process into the cgroups of `env` (as made by
/// [`Cgroup::env`]); "0" is the writer itself.
pub fn join(env: &str) {
    for f in env.split(':').filter(|s| !s.is_empty()) {
        std::fs::write(f, "0").unwrap_or_else(|e| panic!("joining {f}: {e}"));
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.0 {
            // Tasks that were just killed leave their cgroup a moment later.
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A daemon serving a FUSE mount at `mp`: SIGTERM and a lazy unmount on drop.
pub struct Daemon {
    pub child: Child,
    pub mp: PathBuf,
    pub name: &'static str,
}

/// Where a daemon's threads may run: anywhere, or all of them (and their
/// children's) on one CPU, beside a reader pinned there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpus {
    Any,
    Only(usize),
}

/// Makes `cmd` start on `cpus`; threads and children inherit it.
pub fn pinned(cmd: &mut Command, cpus: Cpus) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Cpus::Only(cpu) = cpus {
        // SAFETY: between fork and exec, only sched_setaffinity on a set
        // built on the stack.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

impl Daemon {
    pub fn proclens(mp: &Path) -> Daemon {
        Daemon::proclens_on(mp, Cpus::Any)
    }

    pub fn proclens_on(mp: &Path, cpus: Cpus) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_proclens"));
        cmd.arg("mount")
            .arg("--seccomp-socket")
            .arg(mp.with_extension("seccomp.sock"))
            .arg(mp)
            .stdin(Stdio::null());
        let child = pinned(&mut cmd, cpus).spawn().expect("start proclens");
        Daemon::ready(child, mp, "proclens", "proc/meminfo")
    }

    pub fn lxcfs(mp: &Path) -> Daemon {
        Daemon::lxcfs_on(mp, Cpus::Any)
    }

    /// `lxcfs -l` (load averages) with `--enable-cfs` (CPU views from the
    /// quota), as LXC and most Kubernetes setups run it.
    pub fn lxcfs_on(mp: &Path, cpus: Cpus) -> Daemon {
        std::fs::create_dir_all(mp).expect("lxcfs mountpoint");
        let pidfile = mp.with_extension("lxcfs.pid");
        let mut cmd = Command::new("/usr/bin/lxcfs");
        cmd.args(["-f", "-l", "--enable-cfs", "-p"])
            .arg(pidfile)
            .arg(mp)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = pinned(&mut cmd, cpus).spawn().expect("start lxcfs");
        Daemon::ready(child, mp, "lxcfs", "proc/meminfo")
    }

    pub fn ready(child: Child, mp: &Path, name: &'static str, probe: &str) -> Daemon {
        let d = Daemon {
            child,
            mp: mp.to_owned(),
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::fs::read(mp.join(probe)).is_err() {
            assert!(Instant::now() < deadline, "{name} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = nix::mount::umount2(&self.mp, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Clock ticks of CPU (user + system) a process or thread has used.
pub fn cpu_ticks(stat_path: &Path) -> u64 {
    let s = std::fs::read_to_string(stat_path).unwrap_or_default();
    let Some(after) = s.rfind(')').map(|i| &s[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the comm: state is field 3, utime 14 and stime 15.
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(14) + n(15)
}

pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The q-quantile of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
