//! A process's own `/proc/<pid>` files: `stat` (parent, state, start time),
//! `status` (`NSpid`) and the `ns/pid` link. Parsers take text; the readers
//! are thin wrappers that name the file in their errors.

use crate::source::kept::{Kept, Lru, IDLE};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("parsing {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
}

/// The fields of `/proc/<pid>/stat` proclens needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: u32,
    pub state: char,
    /// Start time in clock ticks after boot (field 22).
    pub starttime: u64,
}

/// Parses `/proc/<pid>/stat` text. `comm` (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last ')' (proc(5)).
/// (procfs-core's parser panics on some malformed lines, found by fuzzing.)
pub fn parse_stat(text: &str) -> Result<ProcStat, String> {
    let close = text.rfind(')').ok_or("no ')' after comm")?;
    if !text[..close].contains('(') {
        return Err("no '(' before comm".into());
    }
    // Fields 3.. : state, ppid, ..., starttime is field 22 (the 20th
    // after comm; what follows is not needed).
    let mut f = [""; 20];
    let mut n = 0;
    for (slot, v) in f.iter_mut().zip(text[close + 1..].split_ascii_whitespace()) {
        *slot = v;
        n += 1;
    }
    let get = |i: usize, name: &str| {
        f[..n]
            .get(i)
            .copied()
            .ok_or_else(|| format!("no {name} field"))
    };
    let mut state = get(0, "state")?.chars();
    let (Some(state), None) = (state.next(), state.next()) else {
        return Err("state is not one character".into());
    };
    let num = |i: usize, name: &str| -> Result<u64, String> {
        let v = get(i, name)?;
        v.parse().map_err(|_| format!("bad {name} {v:?}"))
    };
    Ok(ProcStat {
        ppid: u32::try_from(num(1, "ppid")?).map_err(|_| "ppid out of range".to_string())?,
        state,
        starttime: num(19, "starttime")?,
    })
}

/// Reads the stat of a process or thread below `root`.
pub fn read_stat(root: &Path, pid: u32) -> Result<ProcStat, Error> {
    let path = root.join(format!("proc/{pid}/stat"));
    let text = crate::source::kfile::read_text(&path).map_err(|error| Error::Read {
        path: path.clone(),
        error,
    })?;
    parse_stat(&text).map_err(|msg| Error::Parse { path, msg })
}

/// The kind and inode of a namespace from its link text, `pid:[4026531836]`.
pub fn parse_ns_link(text: &str) -> Option<(&str, u64)> {
    let (kind, rest) = text.split_once(":[")?;
    Some((kind, rest.strip_suffix(']')?.parse().ok()?))
}

/// The inode of `pid`'s (a number or `self`) namespace of kind `kind`
/// (`pid`, `cgroup`) below `root`.
pub fn ns_inode(root: &Path, pid: &str, kind: &str) -> Result<u64, Error> {
    let path = root.join(format!("proc/{pid}/ns/{kind}"));
    let link = std::fs::read_link(&path).map_err(|error| Error::Read {
        path: path.clone(),
        error,
    })?;
    let text = link.to_string_lossy();
    match parse_ns_link(&text) {
        Some((k, ino)) if k == kind => Ok(ino),
        _ => Err(Error::Parse {
            path,
            msg: format!("unexpected link {text:?}"),
        }),
    }
}

/// The pid namespace inode of `pid` (a number or `self`) below `root`.
pub fn pid_ns(root: &Path, pid: &str) -> Result<u64, Error> {
    ns_inode(root, pid, "pid")
}

/// `pid`'s `/proc/<pid>/cgroup` as a process of its own cgroup namespace
/// reads it (paths relative to that namespace's root), and a descriptor of
/// the namespace, which keeps its inode from being given to another while
/// it is held. Read on a thread of its own that enters the namespace
/// (setns(2) with CLONE_NEWCGROUP, which changes nothing but how that one
/// thread sees cgroup paths) and ends there.
pub fn cgroup_in_own_ns(pid: u32) -> std::io::Result<(String, std::os::fd::OwnedFd)> {
    let ns: std::os::fd::OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/cgroup"))?.into();
    let text = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("cgroupns".into())
            .spawn_scoped(s, || -> std::io::Result<String> {
                use std::os::fd::AsRawFd;
                // SAFETY: setns on a namespace descriptor we hold; it
                // affects this thread alone, which ends right after.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWCGROUP) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::source::kfile::read_text(Path::new(&format!("/proc/{pid}/cgroup")))
            })?
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the cgroupns thread panicked")))
    })?;
    Ok((text, ns))
}

/// The last field of the `NSpid:` line of `/proc/<pid>/status`.
pub fn parse_innermost_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The pid a process has in its own pid namespace (last `NSpid` field).
pub fn innermost_pid(root: &Path, pid: u32) -> Option<u32> {
    let status = crate::source::kfile::read_text(&root.join(format!("proc/{pid}/status"))).ok()?;
    parse_innermost_pid(&status)
}

/// The text of `/proc/<pid>/cgroup` below `root`.
pub fn read_cgroup(root: &Path, pid: u32) -> Result<String, Error> {
    let path = root.join(format!("proc/{pid}/cgroup"));
    crate::source::kfile::read_text(&path).map_err(|error| Error::Read { path, error })
}

/// The second field of `/proc/<tid>/schedstat` ("run wait timeslices",
/// Documentation/scheduler/sched-stats.rst): nanoseconds the task has
/// spent runnable on a run queue, waiting for a CPU.
pub fn parse_run_delay(text: &str) -> Option<u64> {
    let mut f = text.split_whitespace();
    let (_, delay, _) = (f.next()?, f.next()?, f.next()?);
    delay.parse().ok()
}

/// The `CapEff:` mask of `/proc/<pid>/status`: the capabilities the
/// process's effective set holds, a bit per capability
/// (include/uapi/linux/capability.h).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// `pid`'s effective capabilities, `None` if they cannot be read.
pub fn cap_eff(root: &Path, pid: u32) -> Option<u64> {
    let status = crate::source::kfile::read_text(&root.join(format!("proc/{pid}/status"))).ok()?;
    parse_cap_eff(&status)
}

/// One task as [`Tasks::sample`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskTime {
    pub tid: u32,
    /// Start time in clock ticks after boot: with the tid, who it is.
    pub starttime: u64,
    /// Nanoseconds it has waited for a CPU while runnable (schedstat).
    pub run_delay: u64,
}

/// What the tasks of a container are doing, from their own files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSample {
    pub running: usize,
    pub blocked: usize,
    /// Each task's wait for a CPU, when asked for and the kernel has
    /// schedstat (CONFIG_SCHED_INFO).
    pub waits: Option<Vec<TaskTime>>,
}

/// A task's kept files: `stat`, and `schedstat` once it is asked for.
#[derive(Debug)]
struct TaskFiles {
    stat: Kept,
    schedstat: std::sync::OnceLock<Option<Kept>>,
}

/// Kept `/proc/<tid>/task/<tid>/{stat,schedstat}` descriptors, for
/// counting a container's running and blocked tasks, and the time they
/// waited for a CPU, on every read at the cost of a pread or two per task.
/// A kept descriptor always refers to the task it was opened for: once
/// that task is gone it answers ESRCH, even when its tid is given to a new
/// task, so it can never show another task's state.
#[derive(Debug)]
pub struct Tasks {
    root: PathBuf,
    lru: Lru<u32, TaskFiles>,
}

impl Tasks {
    /// At most `cap` tasks are kept open (two descriptors each, at most).
    pub fn new(root: &Path, cap: usize) -> Tasks {
        Tasks {
            root: root.to_owned(),
            lru: Lru::new(cap),
        }
    }

    /// The thread's own file (its state, not its thread group's sums); a
    /// captured fixture tree only has proc/<pid>/<name>.
    fn open_file(&self, tid: u32, name: &str) -> std::io::Result<Kept> {
        Kept::open(&self.root.join(format!("proc/{tid}/task/{tid}/{name}")))
            .or_else(|_| Kept::open(&self.root.join(format!("proc/{tid}/{name}"))))
    }

    fn open(&self, tid: u32) -> std::io::Result<TaskFiles> {
        Ok(TaskFiles {
            stat: self.open_file(tid, "stat")?,
            schedstat: std::sync::OnceLock::new(),
        })
    }

    /// Task `tid`'s stat and, with `delay`, its run delay (`None` without
    /// schedstat); `None` if the task is gone.
    fn read(&self, tid: u32, delay: bool) -> Option<(ProcStat, Option<u64>)> {
        let read = |k: &TaskFiles| -> Option<(ProcStat, Option<u64>)> {
            let st = parse_stat(&k.stat.read_text().ok()?).ok()?;
            if !delay {
                return Some((st, None));
            }
            let rd = match k
                .schedstat
                .get_or_init(|| self.open_file(tid, "schedstat").ok())
            {
                None => None,
                // Read after stat: a task gone in between answers ESRCH.
                Some(f) => Some(parse_run_delay(&f.read_text().ok()?)?),
            };
            Some((st, rd))
        };
        let k = self.lru.get_or_open(&tid, || self.open(tid)).ok()?;
        if let Some(r) = read(&k) {
            return Some(r);
        }
        // Gone, or its tid reused by the task listed now: open that one.
        self.lru.forget(&tid, &k);
        let k = self.lru.get_or_open(&tid, || self.open(tid)).ok()?;
        read(&k)
    }

    /// The state letter of task `tid` (R, S, D, ...), `None` if it is gone.
    pub fn state(&self, tid: u32) -> Option<char> {
        self.read(tid, false).map(|(s, _)| s.state)
    }

    /// (running, blocked) among `tids`; `reader` counts as running (the
    /// kernel counts the reading task, which sleeps in FUSE meanwhile).
    pub fn count(&self, tids: &[u32], reader: u32) -> (usize, usize) {
        let s = self.sample(tids, reader, false);
        (s.running, s.blocked)
    }

    /// Running and blocked tasks among `tids` as [`Tasks::count`], and with
    /// `delays` each one's run delay. A task that exited since the list was
    /// read counts as nothing.
    pub fn sample(&self, tids: &[u32], reader: u32, delays: bool) -> TaskSample {
        let mut out = TaskSample {
            waits: delays.then(|| Vec::with_capacity(tids.len())),
            ..TaskSample::default()
        };
        let mut schedstat = true;
        for tid in tids {
            // The reader's own stat would say S: it sleeps in FUSE.
            if *tid == reader && !delays {
                out.running += 1;
                continue;
            }
            let Some((st, rd)) = self.read(*tid, delays) else {
                continue;
            };
            match st.state {
                _ if *tid == reader => out.running += 1,
                'R' => out.running += 1,
                'D' => out.blocked += 1,
                _ => {}
            }
            match (rd, out.waits.as_mut()) {
                (Some(run_delay), Some(w)) => w.push(TaskTime {
                    tid: *tid,
                    starttime: st.starttime,
                    run_delay,
                }),
                (None, Some(_)) => schedstat = false,
                _ => {}
            }
        }
        if !schedstat {
            out.waits = None;
        }
        out
    }

    /// Closes what nobody read for a while; returns how many stay open.
    pub fn prune(&self) -> usize {
        self.lru.expire(IDLE)
    }

    /// Task files kept open.
    pub fn kept_descriptors(&self) -> usize {
        self.lru
            .values()
            .iter()
            .map(|(_, k)| 1 + usize::from(matches!(k.schedstat.get(), Some(Some(_)))))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let t = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5678 1000000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let s = parse_stat(t).expect("parses");
        assert_eq!(
            s,
            ProcStat {
                ppid: 1,
                state: 'S',
                starttime: 5678
            }
        );
        assert!(parse_stat("garbage").is_err());
        // Found by fuzzing (fuzz/artifacts/proc_pid): procfs-core panicked.
        assert!(parse_stat("139 (sh\0)").is_err());
        assert!(parse_stat(") 1 (").is_err());
        assert!(parse_stat("1 (x) RR 1").is_err());
    }

    #[test]
    fn innermost_pid_is_the_last_nspid() {
        assert_eq!(parse_innermost_pid("Name:\tsh\nNSpid:\t4242\t1\n"), Some(1));
        assert_eq!(parse_innermost_pid("NSpid:\t4242\n"), Some(4242));
        assert_eq!(parse_innermost_pid("Name:\tsh\n"), None);
    }

    #[test]
    fn ns_links() {
        assert_eq!(parse_ns_link("pid:[4026531836]"), Some(("pid", 4026531836)));
        assert_eq!(
            parse_ns_link("cgroup:[4026531835]"),
            Some(("cgroup", 4026531835))
        );
        assert_eq!(parse_ns_link("pid:4026531836"), None);
        assert_eq!(parse_ns_link("pid:[x]"), None);
    }

    #[test]
    fn our_own_cgroup_namespace_shows_our_cgroups_as_the_host_does() {
        // Entering our own namespace changes nothing.
        let me = std::process::id();
        let (inside, _ns) = cgroup_in_own_ns(me).expect("read in our own namespace");
        assert_eq!(
            inside,
            std::fs::read_to_string("/proc/self/cgroup").expect("read")
        );
    }
    #[test]
    fn schedstat_and_capabilities() {
        // This host's /proc/self/task/<tid>/schedstat and a root shell's
        // status line.
        assert_eq!(
            parse_run_delay("1380092393 27470071 6302\n"),
            Some(27470071)
        );
        assert_eq!(parse_run_delay("1 2\n"), None);
        assert_eq!(parse_run_delay("1 x 3\n"), None);
        let status = "Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff("Name:\tsh\n"), None);
    }

    #[test]
    fn a_thread_of_ours_waits_and_the_sample_says_so() {
        // This thread's own schedstat through the kept descriptors, read
        // twice: the run delay never goes backwards, and the state of a
        // task that is gone is not counted.
        let tid = nix::unistd::gettid().as_raw() as u32;
        let tasks = Tasks::new(Path::new("/"), 8);
        let a = tasks.sample(&[tid, u32::MAX], 0, true);
        let w = a.waits.expect("schedstat on this kernel");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].tid, tid);
        assert_eq!(a.running, 1, "this thread runs");
        let b = tasks.sample(&[tid], 0, true).waits.expect("schedstat");
        assert!(b[0].run_delay >= w[0].run_delay);
        assert_eq!(b[0].starttime, w[0].starttime);
        assert_eq!(tasks.kept_descriptors(), 2);
        // Without delays only stat is read, and the reader is running.
        let c = tasks.sample(&[tid], tid, false);
        assert_eq!((c.running, c.waits), (1, None));
    }
}
