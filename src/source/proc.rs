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
    // Fields 3.. : state, ppid, ..., starttime is field 22.
    let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let get = |i: usize, name: &str| f.get(i).copied().ok_or_else(|| format!("no {name} field"));
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

/// Kept `/proc/<tid>/task/<tid>/stat` descriptors, for counting a
/// container's running and blocked tasks on every read at the cost of one
/// pread per task. A kept descriptor always refers to the task it was
/// opened for: once that task is gone it answers ESRCH, even when its tid
/// is given to a new task, so it can never show another task's state.
#[derive(Debug)]
pub struct Tasks {
    root: PathBuf,
    lru: Lru<u32, Kept>,
}

impl Tasks {
    /// At most `cap` tasks are kept open.
    pub fn new(root: &Path, cap: usize) -> Tasks {
        Tasks {
            root: root.to_owned(),
            lru: Lru::new(cap),
        }
    }

    fn open(&self, tid: u32) -> std::io::Result<Kept> {
        // The thread's own stat (its state, not its thread group's sums);
        // a captured fixture tree only has proc/<pid>/stat.
        Kept::open(&self.root.join(format!("proc/{tid}/task/{tid}/stat")))
            .or_else(|_| Kept::open(&self.root.join(format!("proc/{tid}/stat"))))
    }

    /// The state letter of task `tid` (R, S, D, ...), `None` if it is gone.
    pub fn state(&self, tid: u32) -> Option<char> {
        let read = |k: &Kept| k.read_text().ok().and_then(|t| parse_stat(&t).ok());
        let k = self.lru.get_or_open(&tid, || self.open(tid)).ok()?;
        if let Some(s) = read(&k) {
            return Some(s.state);
        }
        // Gone, or its tid reused by the task listed now: open that one.
        self.lru.forget(&tid, &k);
        let k = self.lru.get_or_open(&tid, || self.open(tid)).ok()?;
        read(&k).map(|s| s.state)
    }

    /// (running, blocked) among `tids`; `reader` counts as running (the
    /// kernel counts the reading task, which sleeps in FUSE meanwhile).
    pub fn count(&self, tids: &[u32], reader: u32) -> (usize, usize) {
        let (mut r, mut d) = (0, 0);
        for tid in tids {
            if *tid == reader {
                r += 1;
                continue;
            }
            // A task that exited since the list was read counts as neither.
            match self.state(*tid) {
                Some('R') => r += 1,
                Some('D') => d += 1,
                _ => {}
            }
        }
        (r, d)
    }

    /// Closes what nobody read for a while; returns how many stay open.
    pub fn prune(&self) -> usize {
        self.lru.expire(IDLE)
    }

    /// Task stat files kept open.
    pub fn kept_descriptors(&self) -> usize {
        self.lru.len()
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
}
