//! Who is reading: pid -> cgroup placement, pid namespace and container init
//! (DESIGN.md section 2). Reads only `/proc/<pid>/{stat,cgroup,ns/pid}` of
//! the caller and its ancestors: no fork, no setns, no scan of /proc. Knows
//! nothing of files or renderings (that is `view`).

use crate::source::cgroup::{self, Cgroups, Placement};
use crate::source::proc::{self, pid_ns, read_stat, ProcStat};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Proc(#[from] proc::Error),
    #[error("parsing {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
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
            live: root == Path::new("/") && crate::source::kept::fd_limit() >= PIDFD_MIN_FDS,
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
        let text = proc::read_cgroup(&self.root, pid)?;
        let membership = cgroup::mounts::parse_proc_cgroup(&text).map_err(|e| Error::Parse {
            path: self.root.join(format!("proc/{pid}/cgroup")),
            msg: e.0,
        })?;
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
        proc::innermost_pid(&self.root, pid)
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
