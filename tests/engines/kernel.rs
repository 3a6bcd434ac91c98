//! What the kernel says about a container, read on the host: the numbers
//! the tools inside are checked against (its cgroup's limits and I/O
//! counters, its init's start time, its runnable tasks), and the cgroups
//! the engines leave behind.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{
    cgroup_v1_mount, cgroup_v2_mount, cgroup_version, command_in_cgroups, mountinfo,
    parse_cpu_list, read, remove_cgroup, run_with_timeout, which, BlockDev, CgroupVersion,
    RUN_TIMEOUT,
};

/// The host's `/proc/uptime`, in seconds.
pub fn host_uptime() -> f64 {
    crate::common::uptime_secs(&read("/proc/uptime"))
}

/// When `pid` started, in seconds since boot (`/proc/<pid>/stat` field 22,
/// in clock ticks of `sysconf(_SC_CLK_TCK)`).
pub fn start_time(pid: i32) -> f64 {
    let stat = read(format!("/proc/{pid}/stat"));
    let after_comm = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    // Field 3 (state) is the first after the comm; 22 is 19 later.
    let ticks: u64 = after_comm
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no starttime in /proc/{pid}/stat: {stat}"));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Runs `sh -c script` as a process of the container whose init is
/// `pid`: in the init's cgroups (every hierarchy) and its pid, mount and
/// cgroup namespaces, at its root, but started by nsenter instead of the
/// engine. For the load-average checks: an engine's exec adds runnable
/// tasks of its own to the container for a while (runc init and its Go
/// threads, slow to get the CPU the busy loops saturate), which the
/// daemon counts as the kernel would; nsenter adds one short-lived task.
pub fn nsexec(pid: i32, script: &str) -> Output {
    let dirs = cgroup_dirs(pid);
    nsexec_in(pid, &dirs, script)
}

/// [`nsexec`] in a cgroup `child` made below each of the init's (as a
/// service manager inside a system container makes one per service, with
/// no limits of its own; cpuset's copied from its parent, which v1 needs
/// before a task may join), removed again afterwards.
pub fn nsexec_in_child(pid: i32, child: &str, script: &str) -> Output {
    let dirs: Vec<PathBuf> = cgroup_dirs(pid).iter().map(|d| d.join(child)).collect();
    for d in &dirs {
        fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let parent = d.parent().expect("a parent").join(f);
            if let Ok(v) = fs::read_to_string(&parent) {
                fs::write(d.join(f), v.trim()).unwrap_or_else(|e| panic!("{f}: {e}"));
            }
        }
    }
    let out = nsexec_in(pid, &dirs, script);
    for d in &dirs {
        remove_cgroup(d);
    }
    out
}

fn nsexec_in(pid: i32, dirs: &[PathBuf], script: &str) -> Output {
    let mut cmd = command_in_cgroups(which("nsenter").expect("nsenter"), dirs);
    cmd.arg(format!("--target={pid}")).args([
        "--pid", "--mount", "--cgroup", "--root", "--wd", "--", "sh", "-c", script,
    ]);
    run_with_timeout(&mut cmd, RUN_TIMEOUT)
}

/// The directories of `pid`'s cgroups, one per hierarchy, on the host.
fn cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let text = read(format!("/proc/{pid}/cgroup"));
    text.lines()
        .filter_map(|line| {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let mount = if controllers.is_empty() {
                cgroup_v2_mount()?
            } else {
                controllers.split(',').find_map(cgroup_v1_mount)?
            };
            Some(mount.join(path.trim_start_matches('/')))
        })
        .collect()
}

/// A container's cgroup: the one below the cgroup parent its engine was
/// told to use (`--cgroup-parent`, ctr's `--cgroup`; LXC's are at the
/// root) that holds its init.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Per hierarchy mount point, the container's directory.
    dirs: Vec<(PathBuf, PathBuf)>,
    version: CgroupVersion,
}

impl Cgroup {
    /// The cgroup of `pid` one level below `/<parent>` (`""`: the root).
    pub fn of(pid: i32, parent: &str) -> Cgroup {
        let text = read(format!("/proc/{pid}/cgroup"));
        let version = cgroup_version();
        let mut dirs = Vec::new();
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let mount = match (version, controllers) {
                (CgroupVersion::V2, "") => cgroup_v2_mount(),
                (CgroupVersion::V1, "") => continue,
                (CgroupVersion::V1, c) => c.split(',').find_map(cgroup_v1_mount),
                (CgroupVersion::V2, _) => continue,
            };
            let Some(mount) = mount else { continue };
            // A hierarchy the engine leaves alone (none here do) is
            // skipped; the controllers the checks read must be there.
            let prefix = match parent {
                "" => "/".to_owned(),
                p => format!("/{p}/"),
            };
            let Some(below) = path.strip_prefix(&prefix) else {
                continue;
            };
            let top = below.split('/').next().expect("a component");
            dirs.push((mount.clone(), mount.join(&prefix[1..]).join(top)));
        }
        assert!(
            !dirs.is_empty(),
            "pid {pid} has no cgroup below /{parent}: {text}"
        );
        Cgroup { dirs, version }
    }

    fn dir(&self, controller: &str) -> &Path {
        let mount = match self.version {
            CgroupVersion::V2 => cgroup_v2_mount(),
            CgroupVersion::V1 => cgroup_v1_mount(controller),
        }
        .unwrap_or_else(|| panic!("no hierarchy for {controller}"));
        self.dirs
            .iter()
            .find(|(m, _)| *m == mount)
            .map(|(_, d)| d.as_path())
            .unwrap_or_else(|| panic!("the container has no {controller} cgroup: {:?}", self.dirs))
    }

    /// `file` of the container's cgroup and of each ancestor up to the
    /// hierarchy's root, parsed by `parse` (None: unlimited).
    fn up<T>(&self, controller: &str, file: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
        let dir = self.dir(controller);
        let root = self
            .dirs
            .iter()
            .find(|(_, d)| d == dir)
            .map(|(m, _)| m.clone())
            .expect("mount of the dir");
        dir.ancestors()
            .take_while(|d| d.starts_with(&root))
            .filter_map(|d| fs::read_to_string(d.join(file)).ok())
            .filter_map(|t| parse(t.trim()))
            .collect()
    }

    /// The effective memory limit: the lowest over the cgroup and its
    /// ancestors.
    pub fn memory_limit(&self) -> Option<u64> {
        let (file, unlimited) = match self.version {
            CgroupVersion::V1 => ("memory.limit_in_bytes", u64::MAX / 2),
            CgroupVersion::V2 => ("memory.max", u64::MAX),
        };
        self.up("memory", file, |t| {
            t.parse::<u64>().ok().filter(|&v| v < unlimited)
        })
        .into_iter()
        .min()
    }

    /// CPUs the container may use: its cpuset, capped at ceil(quota /
    /// period) of the lowest quota over it and its ancestors.
    pub fn visible_cpus(&self) -> usize {
        let (cpus, quota) = match self.version {
            CgroupVersion::V1 => {
                let cpus = read(self.dir("cpuset").join("cpuset.effective_cpus"));
                let q = self.up("cpu", "cpu.cfs_quota_us", |t| t.parse::<i64>().ok());
                let p = self.up("cpu", "cpu.cfs_period_us", |t| t.parse::<u64>().ok());
                let ratio = q
                    .iter()
                    .zip(&p)
                    .filter(|(q, _)| **q > 0)
                    .map(|(q, p)| *q as f64 / *p as f64)
                    .fold(f64::INFINITY, f64::min);
                (cpus, ratio)
            }
            CgroupVersion::V2 => {
                let cpus = read(self.dir("cpuset").join("cpuset.cpus.effective"));
                let ratio = self
                    .up("cpu", "cpu.max", |t| {
                        let (q, p) = t.split_once(' ')?;
                        Some(q.parse::<f64>().ok()? / p.parse::<f64>().ok()?)
                    })
                    .into_iter()
                    .fold(f64::INFINITY, f64::min);
                (cpus, ratio)
            }
        };
        let set = parse_cpu_list(&cpus).len();
        if quota.is_finite() {
            set.min(quota.ceil() as usize)
        } else {
            set
        }
    }

    /// Bytes the container's cgroup has written to `disk`: v1
    /// `blkio.throttle.io_service_bytes_recursive` `Write`, v2 `io.stat`
    /// `wbytes`.
    pub fn written_bytes(&self, disk: &BlockDev) -> u64 {
        let dev = format!("{}:{}", disk.major, disk.minor);
        match self.version {
            CgroupVersion::V1 => {
                let f = self
                    .dir("blkio")
                    .join("blkio.throttle.io_service_bytes_recursive");
                read(&f)
                    .lines()
                    .find_map(|l| {
                        let w: Vec<&str> = l.split_whitespace().collect();
                        (w.len() == 3 && w[0] == dev && w[1] == "Write")
                            .then(|| w[2].parse().ok())?
                    })
                    .unwrap_or(0)
            }
            CgroupVersion::V2 => read(self.dir("io").join("io.stat"))
                .lines()
                .filter(|l| l.split_whitespace().next() == Some(dev.as_str()))
                .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .find_map(|kv| kv.strip_prefix("wbytes=").and_then(|v| v.parse().ok()))
                .unwrap_or(0),
        }
    }

    /// Every task (thread) of the container's cgroup tree: (tid, state,
    /// comm) from `/proc/<tid>/stat`.
    pub fn tasks(&self) -> Vec<(i32, char, String)> {
        let mut tids = BTreeSet::new();
        let mut stack = vec![self.dir("pids").to_owned()];
        let list = match self.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.threads",
        };
        while let Some(d) = stack.pop() {
            if let Ok(t) = fs::read_to_string(d.join(list)) {
                tids.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        tids.into_iter()
            .filter_map(|t| {
                let s = fs::read_to_string(format!("/proc/{t}/stat")).ok()?;
                let (open, close) = (s.find('(')?, s.rfind(')')?);
                let state = s[close + 2..].chars().next()?;
                Some((t, state, s[open + 1..close].to_owned()))
            })
            .collect()
    }
}

/// Every cgroup hierarchy mounted here (v1 controllers, named v1
/// hierarchies such as `name=systemd`, the unified one): engines create
/// their cgroups in all of them.
pub fn hierarchies() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo()
        .into_iter()
        .filter(|m| (m.fs_type == "cgroup" || m.fs_type == "cgroup2") && m.root == "/")
        .map(|m| m.mount_point)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every top-level cgroup, in every hierarchy.
pub fn top_level_cgroups() -> BTreeSet<PathBuf> {
    hierarchies()
        .iter()
        .filter_map(|h| fs::read_dir(h).ok())
        .flat_map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()))
        .collect()
}

/// `/<name>` in every hierarchy, with everything below it: the cgroup
/// parent one engine was given. Drop kills what still runs there (only
/// tasks listed in these cgroups, which are ours) and removes them.
#[derive(Debug)]
pub struct CgroupTree(pub String);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for h in hierarchies() {
            let dir = h.join(&self.0);
            if dir.is_dir() {
                remove_cgroup(&dir);
            }
        }
    }
}
