//! Who is reading: pid -> its container's cgroups (`unit.rs` has the
//! rules), pid namespace and container init (DESIGN.md section 2). Reads
//! only `/proc/<pid>/{stat,status,cgroup,ns/*}` of the caller, its
//! ancestors and its namespace's init: no fork, no scan of /proc; a cgroup
//! namespace is entered (on a thread of its own) once per namespace, to
//! learn its root. Knows nothing of files or renderings (that is `view`).

use super::unit::{self, Why};
use crate::source::cgroup::{self, Cgroups, Membership, Placement};
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
    /// Where its container's files are: every number is read there.
    pub placement: Placement,
    /// Its container's cgroups, as `/proc/<pid>/cgroup` writes them.
    pub container: Membership,
    /// Which rule made them the container.
    pub why: Why,
    /// In the daemon's own pid namespace: uptime is the host's.
    pub host: bool,
    /// Start time (ticks after boot) of the oldest ancestor in the caller's
    /// pid namespace: the container's init. 0 for the host.
    pub init_start: u64,
    /// The caller's pid in its own pid namespace (itself for the host).
    pub ns_pid: u32,
}

impl Caller {
    /// Its container for a person: the cgroup (one per v1 controller where
    /// they differ) and the rule that chose it.
    pub fn describe_container(&self) -> String {
        let mut paths: Vec<(String, &str)> = self
            .container
            .v1
            .iter()
            .map(|(c, p)| (c.v1_name().to_owned(), p.as_str()))
            .collect();
        // The unified hierarchy counts where it carries a controller read
        // (on a hybrid host it has none).
        let v2_read = self
            .placement
            .dirs
            .values()
            .any(|d| d.version == cgroup::Version::V2);
        if let (Some(p), true) = (&self.container.v2, v2_read) {
            paths.push(("unified".to_owned(), p));
        }
        let first = paths.first().map(|(_, p)| *p).unwrap_or("/");
        let cgroups = if paths.iter().all(|(_, p)| *p == first) {
            first.to_owned()
        } else {
            paths
                .iter()
                .map(|(c, p)| format!("{c}:{p}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!("{cgroups} ({})", self.why.describe())
    }
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

/// A namespace the resolver learned something about, held open so that its
/// inode, the cache key, cannot be given to another namespace meanwhile.
#[derive(Debug)]
struct Known<T> {
    _ns: Option<OwnedFd>,
    what: T,
}

/// The init of a pid namespace.
#[derive(Debug, Clone, Copy)]
struct Init {
    pid: u32,
    stat: ProcStat,
}

/// At most this many namespaces are remembered (each holds a descriptor).
const NS_CACHE_SIZE: usize = 1024;

fn lru<K: std::hash::Hash + Eq, V>(n: usize) -> Mutex<LruCache<K, V>> {
    Mutex::new(LruCache::new(
        NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
    ))
}

/// Resolves pids to callers, caching by pid, checked against the process's
/// identity, so that a recycled pid never gets another process's answer.
#[derive(Debug)]
pub struct Resolver {
    root: PathBuf,
    self_ns: u64,
    /// Our own cgroup namespace (0 when unknown: a fixture tree).
    self_cgns: u64,
    /// Cgroup namespace inode -> its roots, per hierarchy.
    cgns: Mutex<LruCache<u64, Arc<Known<Membership>>>>,
    /// Pid namespace inode -> its init.
    pidns: Mutex<LruCache<u64, Arc<Known<Init>>>>,
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
            self_cgns: proc::ns_inode(root, "self", "cgroup").unwrap_or(0),
            cgns: lru(NS_CACHE_SIZE),
            pidns: lru(NS_CACHE_SIZE),
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

    fn membership(&self, pid: u32) -> Result<Membership, Error> {
        let text = proc::read_cgroup(&self.root, pid)?;
        cgroup::mounts::parse_proc_cgroup(&text).map_err(|e| Error::Parse {
            path: self.root.join(format!("proc/{pid}/cgroup")),
            msg: e.0,
        })
    }

    fn resolve_uncached(
        &self,
        cgroups: &Cgroups,
        pid: u32,
        stat: ProcStat,
    ) -> Result<Caller, Error> {
        let own = self.membership(pid)?;
        let ns = pid_ns(&self.root, &pid.to_string())?;
        let host = ns == self.self_ns;
        let roots = self.cgns_roots(pid, &own);
        let (init, init_membership, ns_pid) = if host {
            (None, None, pid)
        } else {
            let init = self.ns_init(cgroups, &cgroups.locate(&own), pid, stat, ns);
            // An init that exited meanwhile tells nothing: rules 1 and 3.
            let m = self.membership(init.pid).ok();
            (Some(init), m, self.innermost_pid(pid).unwrap_or(pid))
        };
        let (container, why) = unit::container_of(&own, roots.as_ref(), init_membership.as_ref());
        // The process may have exited and its pid been reused while we read:
        // then the start time changed and the answer belongs to nobody.
        if read_stat(&self.root, pid)?.starttime != stat.starttime {
            return Err(Error::Parse {
                path: self.root.join(format!("proc/{pid}/stat")),
                msg: "process was replaced while resolving it".into(),
            });
        }
        log::trace!("pid {pid}: container {container:?} ({})", why.describe());
        Ok(Caller {
            pid,
            starttime: stat.starttime,
            placement: cgroups.locate(&container),
            container,
            why,
            host,
            init_start: init.map_or(0, |i| i.stat.starttime),
            ns_pid,
        })
    }

    /// The roots of `pid`'s cgroup namespace when it is not ours, learned
    /// once per namespace. `None` for our own namespace, or when they
    /// cannot be learned (then the other rules decide).
    fn cgns_roots(&self, pid: u32, own: &Membership) -> Option<Membership> {
        if !self.live || self.self_cgns == 0 {
            return None;
        }
        let ino = proc::ns_inode(&self.root, &pid.to_string(), "cgroup").ok()?;
        if ino == self.self_cgns {
            return None;
        }
        if let Some(k) = self.cgns.lock().ok()?.get(&ino) {
            return Some(k.what.clone());
        }
        let (text, fd) = match proc::cgroup_in_own_ns(pid) {
            Ok(r) => r,
            Err(e) => {
                log::debug!("pid {pid}: cannot read its cgroups inside its cgroup namespace: {e}");
                return None;
            }
        };
        let inside = cgroup::mounts::parse_proc_cgroup(&text).ok()?;
        let roots = unit::ns_roots(own, &inside);
        // A process that moved between the two reads gives views that do not
        // match: answer with what matched, remember only a whole answer.
        let whole = roots.v2.is_some() == own.v2.is_some() && roots.v1.len() == own.v1.len();
        if whole {
            if let Ok(mut c) = self.cgns.lock() {
                c.put(
                    ino,
                    Arc::new(Known {
                        _ns: Some(fd),
                        what: roots.clone(),
                    }),
                );
            }
        }
        Some(roots)
    }

    /// The init of pid namespace `ns`, the namespace of `pid`: remembered
    /// per namespace; else the oldest ancestor of `pid` in it. A process
    /// entered from outside (`docker exec`, `nsenter`) has its parent
    /// outside: then the namespace's pid 1 is looked for among the tasks of
    /// the caller's cgroup tree and its parent's (never a scan of all of
    /// /proc). Falls back to the oldest ancestor found.
    fn ns_init(
        &self,
        cgroups: &Cgroups,
        placement: &Placement,
        pid: u32,
        stat: ProcStat,
        ns: u64,
    ) -> Init {
        let known = self.pidns.lock().ok().and_then(|mut c| c.get(&ns).cloned());
        if let Some(k) = known {
            // Its init alive means the namespace is the same one.
            if read_stat(&self.root, k.what.pid).is_ok_and(|s| s.starttime == k.what.stat.starttime)
            {
                return k.what;
            }
        }
        let mut cur = Init { pid, stat };
        for _ in 0..MAX_DEPTH {
            if cur.stat.ppid == 0 {
                break;
            }
            match pid_ns(&self.root, &cur.stat.ppid.to_string()) {
                Ok(pns) if pns == ns => {}
                // A parent in another namespace, or one that just exited
                // (we were reparented): the current process is the init.
                _ => break,
            }
            match read_stat(&self.root, cur.stat.ppid) {
                Ok(s) => {
                    cur = Init {
                        pid: cur.stat.ppid,
                        stat: s,
                    }
                }
                Err(_) => break,
            }
        }
        if self.innermost_pid(cur.pid) != Some(1) {
            match self.ns_init_in_cgroup(cgroups, placement, ns) {
                Some(init) => cur = init,
                None => {
                    log::trace!(
                        "pid {pid}: no pid 1 found; its oldest ancestor {} stands in",
                        cur.pid
                    );
                    return cur;
                }
            }
        }
        log::trace!("pid {pid}: container init is pid {}", cur.pid);
        let fd = if self.live {
            std::fs::File::open(format!("/proc/{pid}/ns/pid"))
                .ok()
                .map(OwnedFd::from)
        } else {
            None
        };
        if let Ok(mut c) = self.pidns.lock() {
            c.put(ns, Arc::new(Known { _ns: fd, what: cur }));
        }
        cur
    }

    /// The pid a process has in its own pid namespace (last `NSpid` field).
    fn innermost_pid(&self, pid: u32) -> Option<u32> {
        proc::innermost_pid(&self.root, pid)
    }

    /// The process of namespace `ns` that is pid 1 there, among the tasks of
    /// the caller's cgroup tree, then of its parent's (a shell entered into a
    /// system container's session cgroup, its init in a sibling). At most
    /// [`MAX_DEPTH`] tasks are looked at; the hierarchy root is never
    /// searched (its tree is the whole host).
    fn ns_init_in_cgroup(&self, cgroups: &Cgroups, p: &Placement, ns: u64) -> Option<Init> {
        let dir = p.tasks_dir()?;
        let mut budget = MAX_DEPTH;
        for level in dir.path.ancestors().take(2) {
            if !level.starts_with(&dir.top) || level == dir.top {
                break;
            }
            let d = cgroup::Dir {
                version: dir.version,
                path: level.to_owned(),
                top: dir.top.clone(),
            };
            let tids = cgroups.tasks(&d).ok()?;
            let found = tids.into_iter().take(budget).find_map(|tid| {
                budget = budget.saturating_sub(1);
                if self.innermost_pid(tid) != Some(1)
                    || pid_ns(&self.root, &tid.to_string()).ok()? != ns
                {
                    return None;
                }
                Some(Init {
                    pid: tid,
                    stat: read_stat(&self.root, tid).ok()?,
                })
            });
            if found.is_some() || budget == 0 {
                return found;
            }
        }
        None
    }
}
