//! Re-pointing proclens bind mounts, in every mount namespace of the host,
//! at a new FUSE connection.
//!
//! Containers bind-mount files of the proclens filesystem over their own
//! `/proc/meminfo` and so on. Those bind mounts hold the FUSE connection of
//! the daemon that served them when the container started; when that
//! daemon dies they fail with ENOTCONN for as long as the container lives
//! (the lxcfs failure this module exists to avoid). fuser cannot hand an
//! initialized connection to a new process image (its `Session::new` and
//! `Session::from_fd` both perform the INIT handshake), so a new daemon
//! always has a new connection, and every bind of the old one is replaced:
//!
//! 1. find them: `/proc/<pid>/mountinfo` of one process per mount namespace
//!    (namespaces told apart by the inode of `/proc/<pid>/ns/mnt`), FUSE
//!    entries (fuser's own mount gives plain `fuse`, no subtype) whose
//!    source is this mount point's fsname;
//!    field 4 is the path inside our filesystem, field 5 the mount point as
//!    that process sees it, major:minor tells one connection from another;
//! 2. for each namespace, in the host namespace, clone the same path of the
//!    new mount with `open_tree(OPEN_TREE_CLONE)` (a detached bind mount);
//! 3. on a thread that did `unshare(CLONE_FS)` (so it alone may `setns` while
//!    the process has other threads), `setns` into the namespace, `chroot`
//!    to the process's root (field 5 is relative to it), and attach the clone
//!    *beneath* the old mount (`move_mount(MOVE_MOUNT_BENEATH)`, Linux 6.5),
//!    then lazily unmount the old one: at no instant is the path uncovered,
//!    so a reader sees the old daemon or the new one, never the kernel's own
//!    file or an error. Without MOVE_MOUNT_BENEATH: unmount, then attach (a
//!    window of microseconds). Where the old mount cannot be unmounted (a
//!    mount locked by a less privileged user namespace, mount_namespaces(7))
//!    the clone is stacked on top of it instead;
//! 4. `setns` back to our own namespace.
//!
//! `open_tree` and `move_mount` appeared in Linux 5.2; before that this
//! reports [`Error::Unsupported`] and the caller logs it: containers keep
//! the old mount until they restart, as with lxcfs.
//!
//! Only mounts of our own fsname are ever touched, and of those only the
//! ones whose connection is dead (a stat through `/proc/<pid>/root` fails
//! with ENOTCONN; probes run on a thread and are abandoned after a timeout,
//! so a hung daemon cannot hang us) or, on a planned reload, the ones of the
//! connection being replaced.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A device number as mountinfo shows it (major, minor).
pub type Dev = (u32, u32);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the kernel lacks open_tree/move_mount (Linux 5.2 or later is needed to re-attach containers' mounts)")]
    Unsupported,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One line of a mountinfo file (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    pub parent: u32,
    pub dev: Dev,
    /// The path inside the mounted filesystem that is the mount's root.
    pub root: PathBuf,
    /// Where it is mounted, relative to the reading process's root.
    pub mount_point: PathBuf,
    pub fstype: String,
    /// Escaped as mountinfo shows it.
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], oct) {
            let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// `s` escaped as mountinfo escapes a mount source (space, tab, newline,
/// backslash).
pub fn escape(s: &OsStr) -> String {
    let mut out = String::new();
    for &c in s.as_bytes() {
        match c {
            b' ' | b'\t' | b'\n' | b'\\' => out += &format!("\\{c:03o}"),
            c if c.is_ascii() => out.push(c as char),
            c => out += &format!("\\{c:03o}"),
        }
    }
    out
}

/// A mount's root as mountinfo shows it once the kernel dropped the dentry
/// (fs/d_path.c dentry_path appends "//deleted" to an unlinked one): a
/// dead FUSE connection's entries are invalidated at the first lookup that
/// finds it gone, so a container's bind of `/proc/meminfo` soon reads
/// `/proc/meminfo//deleted`. The path inside the filesystem is the same.
fn strip_deleted(root: &str) -> &str {
    root.strip_suffix("//deleted").unwrap_or(root)
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let (maj, min) = f.get(2)?.split_once(':')?;
            Some(MountEntry {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                dev: (maj.parse().ok()?, min.parse().ok()?),
                root: unescape(strip_deleted(f.get(3)?)),
                mount_point: unescape(f.get(4)?),
                fstype: (*f.get(sep + 1)?).to_owned(),
                source: (*f.get(sep + 2)?).to_owned(),
            })
        })
        .collect()
}

/// The proclens mounts of one mount namespace, as one of its processes
/// sees them.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Inode of `/proc/<pid>/ns/mnt`.
    pub ino: u64,
    pub pid: i32,
    /// Our own mount namespace.
    pub own: bool,
    /// Mounts of our fsname that nothing is mounted on top of.
    pub mounts: Vec<MountEntry>,
}

fn ns_ino(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// FUSE as mountinfo names it: `fuse`, or `fuse.<subtype>` when mounted
/// through fusermount.
pub fn is_fuse(fstype: &str) -> bool {
    fstype == "fuse" || fstype.starts_with("fuse.")
}

/// Every mount namespace that holds a FUSE mount with mount source
/// `source` (escaped as mountinfo shows it). Mounts covered by another
/// mount on the same point, and mounts inside another of ours (they go
/// with it), are left out: there is nothing to re-point there.
pub fn scan(source: &str) -> Vec<Namespace> {
    let own_ino = ns_ino("self");
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut pids: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    // Our own first, so that our view of our namespace is the one used.
    pids.insert(0, std::process::id().to_string());
    for pid in pids {
        let Some(ino) = ns_ino(&pid) else { continue };
        if !seen.insert(ino) {
            continue;
        }
        // A kernel thread or a process that just exited has none.
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            seen.remove(&ino);
            continue;
        };
        let all = parse_mountinfo(&text);
        let ours: Vec<&MountEntry> = all
            .iter()
            .filter(|m| is_fuse(&m.fstype) && m.source == source)
            .collect();
        if ours.is_empty() {
            continue;
        }
        let ids: HashSet<u32> = ours.iter().map(|m| m.id).collect();
        let covered: HashSet<u32> = all
            .iter()
            .filter(|c| {
                all.iter()
                    .any(|p| p.id == c.parent && p.mount_point == c.mount_point)
            })
            .map(|c| c.parent)
            .collect();
        let mounts = ours
            .into_iter()
            .filter(|m| !covered.contains(&m.id) && !ids.contains(&m.parent))
            .cloned()
            .collect();
        let Ok(pid) = pid.parse() else { continue };
        out.push(Namespace {
            ino,
            pid,
            own: Some(ino) == own_ino,
            mounts,
        });
    }
    out
}

/// What a stat through a mount says about its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// ENOTCONN or ECONNABORTED: the daemon is gone.
    Dead,
    Live,
    /// No answer within the timeout: a daemon that is there but stuck.
    Hung,
    /// Could not tell (every process we looked through is gone).
    Unknown,
}

/// Whether an error says the connection is over: ENOTCONN for a request
/// made after its end, ECONNABORTED for one in flight when it ended. A FUSE
/// connection never comes back.
pub fn ended(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED))
}

/// Stats `path` on a thread, giving up after `timeout`; a read of a hung
/// FUSE mount must never hang the caller.
pub fn probe(path: &Path, timeout: Duration) -> Option<std::io::Result<std::fs::Metadata>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_owned();
    let spawned = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            let _ = tx.send(std::fs::metadata(&p));
        });
    if spawned.is_err() {
        return None;
    }
    rx.recv_timeout(timeout).ok()
}

/// The liveness of every connection (device) in `nss` except `skip`,
/// probed once each through one of its mounts.
pub fn liveness(nss: &[Namespace], skip: &HashSet<Dev>) -> HashMap<Dev, Liveness> {
    let mut out = HashMap::new();
    let mut by_dev: HashMap<Dev, Vec<(i32, &Path)>> = HashMap::new();
    for ns in nss {
        for m in &ns.mounts {
            if !skip.contains(&m.dev) {
                by_dev
                    .entry(m.dev)
                    .or_default()
                    .push((ns.pid, &m.mount_point));
            }
        }
    }
    for (dev, places) in by_dev {
        let mut verdict = Liveness::Unknown;
        for (pid, mp) in places.into_iter().take(4) {
            let path =
                Path::new(&format!("/proc/{pid}/root")).join(mp.strip_prefix("/").unwrap_or(mp));
            verdict = match probe(&path, Duration::from_secs(1)) {
                None => Liveness::Hung,
                Some(Ok(_)) => Liveness::Live,
                Some(Err(e)) if ended(&e) => Liveness::Dead,
                // ENOENT, ESRCH: that process went away; look through another.
                Some(Err(_)) => continue,
            };
            break;
        }
        out.insert(dev, verdict);
    }
    out
}

/// What re-pointing did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub namespaces: usize,
    /// Old mount replaced by the new one.
    pub replaced: usize,
    /// New mount stacked on an old one that could not be unmounted.
    pub stacked: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} mounts in {} namespaces re-pointed ({} stacked on a mount that could not be removed), {} failed, in {:?}",
            self.replaced + self.stacked,
            self.namespaces,
            self.stacked,
            self.failed,
            self.elapsed
        )
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_BENEATH: libc::c_uint = 0x200;

fn cstr(p: &Path) -> CString {
    // Paths from mountinfo and our own never hold NUL.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// A detached copy of the mount at `path` (`open_tree(2)`, OPEN_TREE_CLONE).
fn open_tree_clone(path: &Path) -> Result<OwnedFd, Error> {
    let c = cstr(path);
    // SAFETY: a NUL-terminated path we own; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Err(Error::Unsupported);
        }
        return Err(io_err(format!("open_tree {}", path.display()))(e));
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn move_mount(fd: &OwnedFd, target: &CString, flags: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: fd is a detached mount we own; both strings are NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | flags,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn umount_detach(target: &CString) -> std::io::Result<()> {
    // SAFETY: NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How one mount was re-pointed.
enum Outcome {
    Replaced,
    /// Covered, not removed (it could not be unmounted).
    Stacked,
    /// The old mount stays; a new clone is needed to stack on it.
    NeedsStack(std::io::Error),
    Failed(std::io::Error),
}

/// Puts the detached mount `fd` where `target` (in our current namespace
/// and root) is, replacing what is mounted there.
fn replace(fd: &OwnedFd, target: &CString) -> Outcome {
    match move_mount(fd, target, MOVE_MOUNT_BENEATH) {
        Ok(()) => match umount_detach(target) {
            Ok(()) => Outcome::Replaced,
            // The new one is in place beneath; the old one still covers it.
            Err(e) => Outcome::NeedsStack(e),
        },
        Err(_) => match umount_detach(target) {
            // Linux < 6.5 (no MOVE_MOUNT_BENEATH): unmount, then attach.
            Ok(()) => match move_mount(fd, target, 0) {
                Ok(()) => Outcome::Replaced,
                Err(e) => Outcome::Failed(e),
            },
            // Cannot be unmounted (locked): cover it.
            Err(e) => match move_mount(fd, target, 0) {
                Ok(()) => {
                    log::debug!("stacked over a mount that cannot be removed: {e}");
                    Outcome::Stacked
                }
                Err(e) => Outcome::Failed(e),
            },
        },
    }
}

/// Files of our own that must stay open across namespace switches.
struct Ns {
    fd: OwnedFd,
    root: OwnedFd,
}

fn open_ns(pid: i32, ino: u64) -> Result<Ns, Error> {
    let path = format!("/proc/{pid}/ns/mnt");
    let f = std::fs::File::open(&path).map_err(io_err(format!("opening {path}")))?;
    // The pid may have been reused by a process of another namespace.
    let got = f.metadata().map_err(io_err(format!("stat {path}")))?.ino();
    if got != ino {
        return Err(io_err(path)(std::io::Error::from_raw_os_error(libc::ESRCH)));
    }
    let root = format!("/proc/{pid}/root");
    let rc = cstr(Path::new(&root));
    // SAFETY: NUL-terminated path; returns a new fd or -1.
    let rfd = unsafe {
        libc::open(
            rc.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if rfd < 0 {
        return Err(io_err(format!("opening {root}"))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(Ns {
        fd: f.into(),
        // SAFETY: a fresh fd that nothing else owns.
        root: unsafe { OwnedFd::from_raw_fd(rfd) },
    })
}

fn setns(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: a namespace fd we own.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Back to our own namespace (and its root); a thread stuck elsewhere
/// would resolve every later path in the wrong place, so it must not go on.
fn go_home(own: &OwnedFd) {
    if let Err(e) = setns(own) {
        log::error!("cannot return to our own mount namespace: {e}");
        std::process::abort();
    }
}

/// Enters `ns` and takes its process's root as ours (this thread only).
fn enter(ns: &Ns) -> std::io::Result<()> {
    setns(&ns.fd)?;
    // SAFETY: plain syscalls on an fd we own and static strings.
    unsafe {
        if libc::fchdir(ns.root.as_raw_fd()) != 0
            || libc::chroot(c".".as_ptr()) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Re-points, in every namespace of `nss`, the mounts `pick` selects at
/// the same paths of the filesystem mounted at `source` (in our own
/// namespace). Our own namespace comes last: on a reload, the new daemon
/// takes the host's mount point only when every container has been moved.
pub fn repoint(
    source: &Path,
    nss: &[Namespace],
    pick: &(dyn Fn(&MountEntry) -> bool + Sync),
) -> Result<Report, Error> {
    let start = Instant::now();
    let mut todo: Vec<(&Namespace, Vec<&MountEntry>)> = nss
        .iter()
        .map(|ns| (ns, ns.mounts.iter().filter(|m| pick(m)).collect::<Vec<_>>()))
        .filter(|(_, m)| !m.is_empty())
        .collect();
    todo.sort_by_key(|(ns, _)| ns.own);
    if todo.is_empty() {
        return Ok(Report::default());
    }
    // One thread with its own fs_struct: setns(CLONE_NEWNS) refuses a
    // thread that shares it, and chroot must not touch the other threads.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("repoint".into())
            .spawn_scoped(s, || {
                // SAFETY: affects only this thread's filesystem context.
                if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                    return Err(io_err("unshare(CLONE_FS)")(std::io::Error::last_os_error()));
                }
                let own = std::fs::File::open("/proc/thread-self/ns/mnt")
                    .map_err(io_err("opening our own mount namespace"))?;
                let own: OwnedFd = own.into();
                let mut report = Report::default();
                for (ns, mounts) in &todo {
                    match repoint_ns(source, ns, mounts, &own, &mut report) {
                        Ok(()) => report.namespaces += 1,
                        Err(Error::Unsupported) => return Err(Error::Unsupported),
                        Err(e) => {
                            log::warn!("mount namespace of pid {}: {e}", ns.pid);
                            report.failed += mounts.len();
                        }
                    }
                }
                report.elapsed = start.elapsed();
                Ok(report)
            })
            .map_err(io_err("starting the repoint thread"))?
            .join()
            .unwrap_or_else(|_| Err(io_err("repoint thread")(std::io::Error::other("panicked"))))
    })
}

fn repoint_ns(
    source: &Path,
    ns: &Namespace,
    mounts: &[&MountEntry],
    own: &OwnedFd,
    report: &mut Report,
) -> Result<(), Error> {
    let handle = if ns.own {
        None
    } else {
        Some(open_ns(ns.pid, ns.ino)?)
    };
    let clones = |ms: &[&MountEntry]| -> Result<Vec<OwnedFd>, Error> {
        ms.iter()
            .map(|m| open_tree_clone(&source.join(m.root.strip_prefix("/").unwrap_or(&m.root))))
            .collect()
    };
    let mut pending: Vec<&MountEntry> = mounts.to_vec();
    // Round 1 replaces; round 2 stacks where the old mount could not go.
    for round in 0..2 {
        if pending.is_empty() {
            break;
        }
        // Cloned here, in our own namespace: open_tree only copies mounts
        // of the caller's namespace.
        let fds = clones(&pending)?;
        if let Some(h) = &handle {
            if let Err(e) = enter(h) {
                // setns may have succeeded and chroot failed: go home first.
                go_home(own);
                return Err(io_err("entering the namespace")(e));
            }
        }
        let mut again = Vec::new();
        for (m, fd) in pending.iter().zip(&fds) {
            let target = cstr(&m.mount_point);
            let outcome = if round == 0 {
                replace(fd, &target)
            } else {
                match move_mount(fd, &target, 0) {
                    Ok(()) => {
                        report.stacked += 1;
                        continue;
                    }
                    Err(e) => Outcome::Failed(e),
                }
            };
            match outcome {
                Outcome::Replaced => report.replaced += 1,
                Outcome::Stacked => report.stacked += 1,
                Outcome::NeedsStack(e) => {
                    log::debug!(
                        "pid {}: {} cannot be unmounted ({e}); stacking on it",
                        ns.pid,
                        m.mount_point.display()
                    );
                    again.push(*m);
                }
                Outcome::Failed(e) => {
                    report.failed += 1;
                    log::warn!(
                        "mount namespace of pid {}: re-pointing {}: {e}",
                        ns.pid,
                        m.mount_point.display()
                    );
                }
            }
        }
        if handle.is_some() {
            go_home(own);
        }
        pending = again;
    }
    Ok(())
}

/// A detached copy of the whole mount at `path`.
pub fn clone_of(path: &Path) -> Result<OwnedFd, Error> {
    open_tree_clone(path)
}

/// Puts the detached mount `fd` at `target` in our own namespace,
/// replacing (or covering) what is there.
pub fn put_back(fd: &OwnedFd, target: &Path) -> std::io::Result<()> {
    match replace(fd, &cstr(target)) {
        Outcome::Replaced | Outcome::Stacked => Ok(()),
        Outcome::NeedsStack(e) | Outcome::Failed(e) => Err(e),
    }
}

/// Devices of the FUSE mounts at `mp` in our own namespace, bottom first.
pub fn devs_at(mp: &Path) -> Vec<Dev> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            parse_mountinfo(&t)
                .into_iter()
                .filter(|m| m.mount_point == mp && is_fuse(&m.fstype))
                .map(|m| m.dev)
                .collect()
        })
        .unwrap_or_default()
}

/// The device number of the filesystem mounted at `path`, as mountinfo
/// writes it.
pub fn dev_of(meta: &std::fs::Metadata) -> Dev {
    let d = meta.dev();
    (libc::major(d), libc::minor(d))
}

/// Re-attaches every mount of ours, in any namespace, whose connection is
/// dead (and, when `replacing` is given, those of that live connection) to
/// the filesystem at `source` (whose own device is `new`).
pub fn recover(
    source: &Path,
    fsname: &str,
    new: Dev,
    replacing: Option<Dev>,
) -> Result<Report, Error> {
    let start = Instant::now();
    let nss = scan(fsname);
    let mut skip: HashSet<Dev> = [new].into();
    skip.extend(replacing);
    let live = liveness(&nss, &skip);
    let dead: BTreeSet<Dev> = live
        .iter()
        .filter(|(_, l)| **l == Liveness::Dead)
        .map(|(d, _)| *d)
        .collect();
    for (d, l) in &live {
        if *l == Liveness::Hung {
            log::warn!(
                "proclens connection {}:{} does not answer; leaving its mounts alone",
                d.0,
                d.1
            );
        }
    }
    let pick = |m: &MountEntry| dead.contains(&m.dev) || Some(m.dev) == replacing;
    let mut r = repoint(source, &nss, &pick)?;
    // The whole of it: the scan of every process and the probes too.
    r.elapsed = start.elapsed();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw\n\
                    40 36 0:52 /proc/meminfo /proc/meminfo ro,nosuid - fuse.proclens proclens:/var/lib/a\\040b ro\n\
                    garbage line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].dev, (0, 52));
        assert_eq!(m[1].root, Path::new("/proc/meminfo"));
        assert_eq!(m[1].fstype, "fuse.proclens");
        assert_eq!(m[1].source, escape(OsStr::new("proclens:/var/lib/a b")));
        assert_eq!(unescape("/a\\040b\\134c"), Path::new("/a b\\c"));
        assert_eq!(unescape("/x\\04"), Path::new("/x\\04"));
        // A bind of a dead connection whose dentry the kernel dropped.
        let dead = "41 36 0:52 /proc/meminfo//deleted /proc/meminfo ro - fuse proclens:/m ro\n";
        assert_eq!(parse_mountinfo(dead)[0].root, Path::new("/proc/meminfo"));
    }
}
