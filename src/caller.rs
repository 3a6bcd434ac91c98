//! Who is reading: pid -> cgroup placement, pid namespace and container init
//! (DESIGN.md section 2). Reads only `/proc/<pid>/{stat,cgroup,ns/pid}` of
//! the caller and its ancestors: no fork, no setns, no scan of /proc.

use crate::cgroup::{self, Cgroups, Placement};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    let text = crate::kfile::read_text(&path).map_err(|error| Error::Read {
        path: path.clone(),
        error,
    })?;
    parse_stat(&text).map_err(|msg| Error::Parse { path, msg })
}

/// The pid namespace inode from the `pid:[4026531836]` link text.
pub fn parse_ns_link(text: &str) -> Option<u64> {
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

fn pid_ns(root: &Path, pid: &str) -> Result<u64, Error> {
    let path = root.join(format!("proc/{pid}/ns/pid"));
    let link = std::fs::read_link(&path).map_err(|error| Error::Read {
        path: path.clone(),
        error,
    })?;
    let text = link.to_string_lossy();
    parse_ns_link(&text).ok_or_else(|| Error::Parse {
        path,
        msg: format!("unexpected link {text:?}"),
    })
}

/// A resolved reader.
#[derive(Debug, Clone)]
pub struct Caller {
    pub pid: u32,
    pub starttime: u64,
    pub placement: Placement,
    /// In the daemon's own pid namespace: uptime is the host's.
    pub host: bool,
    /// Start time (ticks after boot) of the oldest ancestor in the caller's
    /// pid namespace: the container's init. 0 for the host.
    pub init_start: u64,
    /// The caller's pid in its own pid namespace (itself for the host).
    pub ns_pid: u32,
}

/// How long a resolved caller is trusted: a cgroup move shows within this.
const TTL: Duration = Duration::from_secs(1);
/// At most this many resolved readers are kept (about 1.5 KiB each).
const CACHE_SIZE: usize = 1024;
/// Guards the ancestor walk against a corrupted or cyclic tree.
const MAX_DEPTH: usize = 4096;

/// A resolved caller and how we know a later request with its pid still
/// comes from it.
#[derive(Debug)]
struct Entry {
    at: Instant,
    caller: Arc<Caller>,
    /// While the process this pidfd refers to has not exited, its pid cannot
    /// have been given to another process: one poll(2) instead of reading
    /// `/proc/<pid>/stat` again. Without one (no pidfd_open before Linux
    /// 5.3, out of descriptors, a fixture tree) the start time is compared.
    pidfd: Option<OwnedFd>,
}

/// Resolves pids to callers, caching by pid, checked against the process's
/// identity, so that a recycled pid never gets another process's answer.
#[derive(Debug)]
pub struct Resolver {
    root: PathBuf,
    self_ns: u64,
    /// `root` is the live `/`, so pids are real and pidfds mean something.
    live: bool,
    cache: Mutex<LruCache<u32, Entry>>,
}

/// Pidfds are kept only when the descriptor limit leaves this many: a
/// full cache must never starve the reads of cgroup files.
const PIDFD_MIN_FDS: u64 = 4 * CACHE_SIZE as u64;

/// The soft RLIMIT_NOFILE, raised to the hard limit first (systemd's
/// default soft limit is 1024; its hard limit is far higher).
fn fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max.min(1 << 20),
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r = raised;
            }
        }
    }
    r.rlim_cur
}

/// A pidfd for `pid`, if the kernel gives one.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a descriptor the kernel just gave us and nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind a pidfd has exited (the pidfd turns readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n != 0
}

impl Resolver {
    pub fn new(root: &Path) -> Result<Resolver, Error> {
        Ok(Resolver {
            root: root.to_owned(),
            self_ns: pid_ns(root, "self")?,
            live: root == Path::new("/") && fd_limit() >= PIDFD_MIN_FDS,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_SIZE).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// Drops answers older than their lifetime, so gone containers leave
    /// nothing behind once the daemon is idle.
    pub fn purge(&self) {
        if let Ok(mut c) = self.cache.lock() {
            let stale: Vec<u32> = c
                .iter()
                .filter(|(_, e)| e.at.elapsed() >= TTL)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                c.pop(&k);
            }
        }
    }

    pub fn resolve(&self, cgroups: &Cgroups, pid: u32) -> Result<Arc<Caller>, Error> {
        if let Some(c) = self.cached(pid) {
            return Ok(c);
        }
        // Opened before the reads, so that "not exited" afterwards means
        // everything read was about this very process.
        let pidfd = if self.live { pidfd_open(pid) } else { None };
        let stat = read_stat(&self.root, pid)?;
        let caller = Arc::new(self.resolve_uncached(cgroups, pid, stat)?);
        if pidfd.as_ref().is_some_and(exited) {
            // Gone already: answer this request, remember nothing.
            return Ok(caller);
        }
        if let Ok(mut c) = self.cache.lock() {
            c.put(
                pid,
                Entry {
                    at: Instant::now(),
                    caller: caller.clone(),
                    pidfd,
                },
            );
        }
        Ok(caller)
    }

    /// The cached answer for `pid`, if it is recent and still that process's.
    fn cached(&self, pid: u32) -> Option<Arc<Caller>> {
        let caller = {
            let mut c = self.cache.lock().ok()?;
            let e = c.get(&pid)?;
            if e.at.elapsed() >= TTL {
                return None;
            }
            match &e.pidfd {
                Some(fd) => return (!exited(fd)).then(|| e.caller.clone()),
                None => e.caller.clone(),
            }
        };
        let now = read_stat(&self.root, pid).ok()?;
        (now.starttime == caller.starttime).then_some(caller)
    }

    fn resolve_uncached(
        &self,
        cgroups: &Cgroups,
        pid: u32,
        stat: ProcStat,
    ) -> Result<Caller, Error> {
        let path = self.root.join(format!("proc/{pid}/cgroup"));
        let text = crate::kfile::read_text(&path).map_err(|error| Error::Read {
            path: path.clone(),
            error,
        })?;
        let membership = cgroup::mounts::parse_proc_cgroup(&text)
            .map_err(|e| Error::Parse { path, msg: e.0 })?;
        let placement = cgroups.locate(&membership);
        let ns = pid_ns(&self.root, &pid.to_string())?;
        let host = ns == self.self_ns;
        let (init_start, ns_pid) = if host {
            (0, pid)
        } else {
            (
                self.init_start(cgroups, &placement, pid, stat, ns)?,
                self.innermost_pid(pid).unwrap_or(pid),
            )
        };
        // The process may have exited and its pid been reused while we read:
        // then the start time changed and the answer belongs to nobody.
        if read_stat(&self.root, pid)?.starttime != stat.starttime {
            return Err(Error::Parse {
                path: self.root.join(format!("proc/{pid}/stat")),
                msg: "process was replaced while resolving it".into(),
            });
        }
        Ok(Caller {
            pid,
            starttime: stat.starttime,
            placement,
            host,
            init_start,
            ns_pid,
        })
    }

    /// Walks up `PPid` while the parent is in the same pid namespace. A
    /// process entered from outside (`docker exec`, `nsenter`) has its parent
    /// outside: then the namespace's pid 1 is looked for among the tasks of
    /// the caller's cgroup (never a scan of all of /proc).
    fn init_start(
        &self,
        cgroups: &Cgroups,
        placement: &Placement,
        pid: u32,
        stat: ProcStat,
        ns: u64,
    ) -> Result<u64, Error> {
        let mut cur = stat;
        let mut cur_pid = pid;
        for _ in 0..MAX_DEPTH {
            if cur.ppid == 0 {
                break;
            }
            match pid_ns(&self.root, &cur.ppid.to_string()) {
                Ok(pns) if pns == ns => {}
                // A parent in another namespace, or one that just exited
                // (we were reparented): the current process is the init.
                _ => break,
            }
            match read_stat(&self.root, cur.ppid) {
                Ok(s) => {
                    cur_pid = cur.ppid;
                    cur = s;
                }
                Err(_) => break,
            }
        }
        if self.innermost_pid(cur_pid) != Some(1) {
            if let Some(init) = self.ns_init_in_cgroup(cgroups, placement, ns) {
                cur_pid = init.0;
                cur = init.1;
            }
        }
        log::trace!("pid {pid}: container init is pid {cur_pid}");
        Ok(cur.starttime)
    }

    /// The pid a process has in its own pid namespace (last `NSpid` field).
    fn innermost_pid(&self, pid: u32) -> Option<u32> {
        let status = crate::kfile::read_text(&self.root.join(format!("proc/{pid}/status"))).ok()?;
        parse_innermost_pid(&status)
    }

    /// The process of namespace `ns` that is pid 1 there, among the tasks of
    /// the caller's cgroup tree.
    fn ns_init_in_cgroup(
        &self,
        cgroups: &Cgroups,
        p: &Placement,
        ns: u64,
    ) -> Option<(u32, ProcStat)> {
        let tids = cgroups.tasks(p.tasks_dir()?).ok()?;
        tids.into_iter().take(MAX_DEPTH).find_map(|tid| {
            if self.innermost_pid(tid) != Some(1)
                || pid_ns(&self.root, &tid.to_string()).ok()? != ns
            {
                return None;
            }
            Some((tid, read_stat(&self.root, tid).ok()?))
        })
    }
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
        assert_eq!(parse_ns_link("pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_ns_link("net:[4026531836]"), None);
    }
}
