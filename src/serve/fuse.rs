//! The FUSE filesystem: the only module that knows fuser. It maps requests
//! to files and hands the reader's pid to the view; it renders nothing
//! itself and knows nothing of the process tree that runs it.
//!
//! Layout: `proc/{meminfo,...}`, `proc/pressure/{cpu,memory,io}` and
//! `sys/devices/system/cpu/`. The cpu
//! directory shows `online`, `possible`, `present` and `cpu0..cpu{n-1}` per
//! reader; every other entry passes through from the host.
//!
//! Nothing is writable but the pressure files, and only as the kernel's
//! are: a write-open of one holds the reader's container's cgroup pressure
//! file for a PSI trigger, writes go there and polls report its events
//! (`super::psi`). The mount itself is read-write for that alone; every
//! other write, create, rename, truncate and xattr is refused here with
//! EROFS, as the read-only mount refused them before. Files are opened
//! with direct I/O (read(2) bypasses the page cache, so one reader's content
//! never reaches another) and no FLUSH, rendered at open and again on a later
//! read at offset 0 (top and htop keep /proc/stat open and pread it from 0),
//! served from that snapshot otherwise. sendfile(2) and splice still go
//! through the page cache, which the kernel drops at every open; see
//! `raise_size` for what that asks of the file size.

use super::isize::KnownSizes;
use super::metrics::{self, Kind, Metrics};
use super::psi::{self, Ready, Triggers};
use super::sysinfo::Sysinfo;
use crate::container::view::{self, Views};
use crate::container::VFile;
use crate::source::caps;
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags, LockOwner, Notifier, OpenAccMode,
    OpenFlags, PollEvents, PollFlags, PollNotifier, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROOT: u64 = 1;
const PROC: u64 = 2;
const SYS: u64 = 3;
const SYS_DEVICES: u64 = 4;
const SYS_SYSTEM: u64 = 5;
const CPU_DIR: u64 = 6;
const BLOCK_DIR: u64 = 7;
/// `.proclens/metrics`: the daemon's counters, for root only.
const META_DIR: u64 = 8;
const METRICS: u64 = 9;
const PRESSURE_DIR: u64 = 10;
/// Virtual files: FIRST_FILE + index in `VFile::ALL`.
const FIRST_FILE: u64 = 16;
/// Passthrough entries below the cpu directory get inodes from here on.
const FIRST_DYNAMIC: u64 = 1000;

/// Entries whose existence is the same for every reader may be cached.
const STABLE_TTL: Duration = Duration::from_secs(1);
/// What is below the cpu directory depends on the reader: never cached.
const NO_TTL: Duration = Duration::ZERO;

fn vfile_ino(f: VFile) -> u64 {
    FIRST_FILE + VFile::ALL.iter().position(|x| *x == f).unwrap_or(0) as u64
}

/// The index of a virtual file's inode in `VFile::ALL`.
fn vfile_index(ino: u64) -> Option<usize> {
    let i = usize::try_from(ino.checked_sub(FIRST_FILE)?).ok()?;
    (i < VFile::ALL.len()).then_some(i)
}

fn ino_vfile(ino: u64) -> Option<VFile> {
    vfile_index(ino).map(|i| VFile::ALL[i])
}

/// Fixed directories: (inode, parent, name).
const DIRS: [(u64, u64, &str); 9] = [
    (ROOT, ROOT, ""),
    (PROC, ROOT, "proc"),
    (SYS, ROOT, "sys"),
    (SYS_DEVICES, SYS, "devices"),
    (SYS_SYSTEM, SYS_DEVICES, "system"),
    (CPU_DIR, SYS_SYSTEM, "cpu"),
    (BLOCK_DIR, SYS, "block"),
    (META_DIR, ROOT, ".proclens"),
    (PRESSURE_DIR, PROC, "pressure"),
];

/// What the kernel's poll answers for a file with nothing special to say
/// (DEFAULT_POLLMASK, include/linux/poll.h).
fn default_pollmask() -> PollEvents {
    PollEvents::POLLIN | PollEvents::POLLOUT | PollEvents::POLLRDNORM | PollEvents::POLLWRNORM
}

/// Whether a file of mode `mode` owned by root:root may be opened for
/// writing by `uid`/`gid` with effective capabilities `cap_eff` (the
/// checks the kernel makes before the file's own open, fs/namei.c
/// generic_permission: a FUSE filesystem without default_permissions
/// makes them itself).
fn may_write(mode: u32, uid: u32, gid: u32, cap_eff: u64) -> bool {
    let class = if uid == 0 {
        mode >> 6
    } else if gid == 0 {
        mode >> 3
    } else {
        mode
    };
    class & 0o2 != 0 || caps::has(cap_eff, caps::CAP_DAC_OVERRIDE)
}

/// Passthrough trees, as paths below `sys/` (the node table's keys).
const CPU_REL: &str = "devices/system/cpu";
const BLOCK_REL: &str = "block";

/// The passthrough root a fixed directory stands for.
fn tree_root(ino: u64) -> Option<&'static str> {
    match ino {
        CPU_DIR => Some(CPU_REL),
        BLOCK_DIR => Some(BLOCK_REL),
        _ => None,
    }
}

/// `block/<disk>/stat` -> `<disk>`: the per-reader I/O counters of a disk.
fn block_stat_disk(rel: &str) -> Option<&str> {
    let disk = rel.strip_prefix("block/")?.strip_suffix("/stat")?;
    (!disk.contains('/')).then_some(disk)
}

/// "cpu12" -> 12; "cpufreq" and "cpu" -> None.
fn cpu_index(name: &str) -> Option<usize> {
    let d = name.strip_prefix("cpu")?;
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    d.parse().ok()
}

/// Paths below `sys/` of the passthrough trees, by inode.
#[derive(Debug, Default)]
struct Nodes {
    by_path: HashMap<String, u64>,
    paths: Vec<String>,
}

#[derive(Debug, Clone)]
enum Source {
    Virtual(VFile),
    /// `.proclens/metrics`.
    Metrics,
    /// `block/<disk>/stat`, rendered for the reader.
    BlockStat(String),
    /// Any other file of a passthrough tree, read from the host.
    Host(String),
}

#[derive(Debug)]
struct Handle {
    ino: u64,
    source: Source,
    opener: u32,
    data: Arc<Vec<u8>>,
    /// Rendered at open and not read yet: the first read at 0 uses it.
    fresh: bool,
}

/// The open files, by handle, and which one each reader opened last on
/// each inode: an fstat(2) of a file just opened asks for the size of
/// what that open rendered (the kernel sends no handle with it).
#[derive(Debug, Default)]
struct Handles {
    by_fh: HashMap<u64, Handle>,
    newest: HashMap<(u32, u64), u64>,
}

impl Handles {
    fn insert(&mut self, fh: u64, h: Handle) {
        self.newest.insert((h.opener, h.ino), fh);
        self.by_fh.insert(fh, h);
    }

    fn remove(&mut self, fh: u64) {
        if let Some(h) = self.by_fh.remove(&fh) {
            let key = (h.opener, h.ino);
            if self.newest.get(&key) == Some(&fh) {
                self.newest.remove(&key);
            }
        }
    }

    /// The length of the content `pid`'s newest open of `ino` holds.
    fn len_for(&self, pid: u32, ino: u64) -> Option<usize> {
        let fh = self.newest.get(&(pid, ino))?;
        self.by_fh.get(fh).map(|h| h.data.len())
    }
}

#[derive(Debug)]
struct ProcLens {
    views: Arc<Views>,
    /// The seccomp front end of this worker, for its counters.
    sysinfo: Option<Arc<Sysinfo>>,
    /// Pressure files open for writing, by file handle.
    triggers: Arc<Triggers>,
    /// Set once the session exists; used to raise the kernel's i_size.
    notifier: Arc<OnceLock<Notifier>>,
    /// What each virtual file's i_size is known to be at least.
    sizes: KnownSizes,
    nodes: RwLock<Nodes>,
    handles: Mutex<Handles>,
    next_fh: AtomicU64,
    metrics: Metrics,
    started: SystemTime,
    serving_since: Instant,
}

fn errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
}

impl ProcLens {
    /// `notifier` is filled in by the caller once the session is created.
    fn new(
        views: Arc<Views>,
        sysinfo: Option<Arc<Sysinfo>>,
        triggers: Arc<Triggers>,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> ProcLens {
        ProcLens {
            views,
            sysinfo,
            triggers,
            notifier,
            sizes: KnownSizes::new(VFile::ALL.len()),
            nodes: RwLock::new(Nodes::default()),
            handles: Mutex::new(Handles::default()),
            next_fh: AtomicU64::new(1),
            metrics: Metrics::default(),
            started: SystemTime::now(),
            serving_since: Instant::now(),
        }
    }

    fn attr(&self, ino: u64, kind: FileType, perm: u16) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn node_ino(&self, rel: &str) -> u64 {
        if let Ok(n) = self.nodes.read() {
            if let Some(i) = n.by_path.get(rel) {
                return *i;
            }
        }
        let Ok(mut n) = self.nodes.write() else {
            return 0;
        };
        if let Some(i) = n.by_path.get(rel) {
            return *i;
        }
        let ino = FIRST_DYNAMIC + n.paths.len() as u64;
        n.paths.push(rel.to_owned());
        n.by_path.insert(rel.to_owned(), ino);
        ino
    }

    fn node_path(&self, ino: u64) -> Option<String> {
        let i = ino.checked_sub(FIRST_DYNAMIC)?;
        self.nodes.read().ok()?.paths.get(i as usize).cloned()
    }

    /// The visible host CPUs for the reader.
    fn visible(&self, pid: u32) -> Result<Vec<u32>, Errno> {
        let caller = self.views.caller(pid).map_err(|_| Errno::ESRCH)?;
        self.views
            .cpu_view(&caller.placement)
            .map(|v| v.visible)
            .map_err(|_| Errno::EIO)
    }

    /// Maps a path below `sys/` to the host path the reader sees there:
    /// in the cpu directory `cpuK` is the reader's K-th visible host CPU.
    fn host_path(&self, rel: &str, pid: u32) -> Result<PathBuf, Errno> {
        let sys = self.views.host().root().join("sys");
        let Some(below) = rel.strip_prefix(CPU_REL) else {
            return Ok(sys.join(rel));
        };
        let below = below.trim_start_matches('/');
        let (first, rest) = below.split_once('/').unwrap_or((below, ""));
        let first = match cpu_index(first) {
            Some(k) => {
                let cpu = *self.visible(pid)?.get(k).ok_or(Errno::ENOENT)?;
                format!("cpu{cpu}")
            }
            None => first.to_owned(),
        };
        let mut p = sys.join(CPU_REL);
        if !first.is_empty() {
            p.push(first);
        }
        if !rest.is_empty() {
            p.push(rest);
        }
        Ok(p)
    }

    fn host_attr(&self, ino: u64, rel: &str, pid: u32) -> Result<FileAttr, Errno> {
        let path = self.host_path(rel, pid)?;
        // /sys/block/<disk> is a symlink into /sys/devices; a link would lead
        // a container back to its own sysfs, so the disk shows as a directory.
        let is_disk = rel.strip_prefix("block/").is_some_and(|d| !d.contains('/'));
        let md = if is_disk {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        }
        .map_err(|e| errno(&e))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            FileType::Directory
        } else if ft.is_symlink() {
            FileType::Symlink
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            return Err(Errno::ENOENT);
        } else {
            FileType::RegularFile
        };
        let t = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
        let mut a = self.attr(ino, kind, (md.mode() & 0o7555) as u16);
        a.size = md.size();
        a.nlink = md.nlink() as u32;
        a.mtime = t(md.mtime());
        a.ctime = t(md.ctime());
        a.atime = t(md.atime());
        Ok(a)
    }

    fn getattr_ino(&self, ino: u64, pid: u32) -> Result<(FileAttr, Duration), Errno> {
        if DIRS.iter().any(|d| d.0 == ino) {
            return Ok((self.attr(ino, FileType::Directory, 0o555), STABLE_TTL));
        }
        if let Some(f) = ino_vfile(ino) {
            // The size is what the asking reader reads: its open's length
            // when it has the file open (an fstat(2), which cat, Python and
            // Rust's read_to_end all make; no rendering then), otherwise
            // what it would get if it opened now. Never cached: the kernel
            // shares the attributes of an inode among all readers, and one
            // container's size must not answer another's fstat(2). (On this
            // writable mount the kernel asks again after every read anyway,
            // for the access time.) Readers whose i_size is another's still
            // read all of theirs: read(2) with direct I/O ignores i_size,
            // and for sendfile(2) and splice, which go through the page
            // cache and stop at i_size, every open raises i_size to the
            // opener's length (`raise_size`).
            let open = self.handles.lock().ok().and_then(|h| h.len_for(pid, ino));
            let len = match open {
                Some(len) => len,
                None => self.content(&Source::Virtual(f), pid)?.len(),
            };
            let mut a = self.attr(ino, FileType::RegularFile, self.vfile_mode(f));
            a.size = len as u64;
            return Ok((a, NO_TTL));
        }
        if ino == METRICS {
            let mut a = self.attr(ino, FileType::RegularFile, 0o400);
            a.size = self.metrics_text().len() as u64;
            return Ok((a, NO_TTL));
        }
        let rel = self.node_path(ino).ok_or(Errno::ENOENT)?;
        Ok((self.host_attr(ino, &rel, pid)?, NO_TTL))
    }

    /// Path below `sys/` of a child of `parent` in a passthrough tree.
    fn child_rel(&self, parent: u64, name: &str) -> Option<String> {
        let dir = match tree_root(parent) {
            Some(root) => root.to_owned(),
            None => self.node_path(parent)?,
        };
        Some(format!("{dir}/{name}"))
    }

    /// Whether the host's kernel has pressure files (PSI, Linux 4.20):
    /// without them, neither does the mount.
    fn has_pressure(&self) -> bool {
        self.views.host().root().join("proc/pressure/cpu").exists()
    }

    /// The mode of a virtual file: read-only, but the pressure files' are
    /// the host's (0666 since Linux 6.0: anyone may try a trigger).
    fn vfile_mode(&self, f: VFile) -> u16 {
        if f.pressure().is_none() {
            return 0o444;
        }
        let host = self
            .views
            .host()
            .root()
            .join(f.host_path().trim_start_matches('/'));
        std::fs::metadata(host).map_or(0o444, |m| (m.mode() & 0o666) as u16)
    }

    /// The entry, how long its name and how long its attributes may be
    /// cached.
    fn lookup_ino(
        &self,
        parent: u64,
        name: &str,
        pid: u32,
    ) -> Result<(FileAttr, Duration, Duration), Errno> {
        let both = |(a, ttl): (FileAttr, Duration)| (a, ttl, ttl);
        if let Some(d) = DIRS
            .iter()
            .find(|d| d.1 == parent && d.2 == name && d.0 != ROOT)
        {
            if d.0 == PRESSURE_DIR && !self.has_pressure() {
                return Err(Errno::ENOENT);
            }
            return self.getattr_ino(d.0, pid).map(both);
        }
        let files: &[VFile] = match parent {
            PROC => &VFile::PROC,
            CPU_DIR => &VFile::CPU,
            PRESSURE_DIR => &VFile::PRESSURE,
            _ => &[],
        };
        if let Some(f) = files.iter().find(|f| f.name() == name) {
            // The name is the same for everyone; the size is not.
            return self
                .getattr_ino(vfile_ino(*f), pid)
                .map(|(a, _)| (a, STABLE_TTL, NO_TTL));
        }
        if parent == META_DIR && name == "metrics" {
            return self.getattr_ino(METRICS, pid).map(both);
        }
        if tree_root(parent).is_none() && parent < FIRST_DYNAMIC {
            return Err(Errno::ENOENT);
        }
        if name.contains('/') || name == ".." || name == "." {
            return Err(Errno::ENOENT);
        }
        let rel = self.child_rel(parent, name).ok_or(Errno::ENOENT)?;
        // Number only what exists (for this reader: cpuK depends on it), so
        // lookups of made-up names cannot grow the table.
        let mut attr = self.host_attr(0, &rel, pid)?;
        attr.ino = INodeNo(self.node_ino(&rel));
        Ok((attr, NO_TTL, NO_TTL))
    }

    fn dir_entries(&self, ino: u64, pid: u32) -> Result<Vec<(u64, FileType, String)>, Errno> {
        let mut out = vec![
            (ino, FileType::Directory, ".".to_owned()),
            (ROOT, FileType::Directory, "..".to_owned()),
        ];
        for d in DIRS.iter().filter(|d| d.1 == ino && d.0 != ROOT) {
            if d.0 == PRESSURE_DIR && !self.has_pressure() {
                continue;
            }
            out.push((d.0, FileType::Directory, d.2.to_owned()));
        }
        let files: &[VFile] = match ino {
            PROC => &VFile::PROC,
            CPU_DIR => &VFile::CPU,
            PRESSURE_DIR => &VFile::PRESSURE,
            _ => &[],
        };
        for f in files {
            out.push((vfile_ino(*f), FileType::RegularFile, f.name().to_owned()));
        }
        if ino == META_DIR {
            out.push((METRICS, FileType::RegularFile, "metrics".to_owned()));
        }
        let rel = match tree_root(ino) {
            Some(root) => root.to_owned(),
            None if ino >= FIRST_DYNAMIC => self.node_path(ino).ok_or(Errno::ENOENT)?,
            None => return Ok(out),
        };
        if ino == CPU_DIR {
            for k in 0..self.visible(pid)?.len() {
                let name = format!("cpu{k}");
                out.push((
                    self.node_ino(&format!("{CPU_REL}/{name}")),
                    FileType::Directory,
                    name,
                ));
            }
        }
        let mut names: Vec<(String, FileType)> = std::fs::read_dir(self.host_path(&rel, pid)?)
            .map_err(|e| errno(&e))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let ft = e.file_type().ok()?;
                let kind = if ft.is_dir() || ino == BLOCK_DIR {
                    FileType::Directory
                } else if ft.is_symlink() {
                    FileType::Symlink
                } else {
                    FileType::RegularFile
                };
                Some((name, kind))
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in names {
            if ino == CPU_DIR
                && (cpu_index(&name).is_some() || VFile::CPU.iter().any(|f| f.name() == name))
            {
                continue;
            }
            out.push((self.node_ino(&format!("{rel}/{name}")), kind, name));
        }
        Ok(out)
    }

    fn metrics_text(&self) -> String {
        let (cpu_accounts, load_averages) = self.views.state_counts();
        self.metrics.render(metrics::State {
            fallbacks: self.views.fallbacks(),
            cpu_accounts,
            load_averages,
            kept_descriptors: self.views.kept_descriptors(),
            sysinfo: self.sysinfo.as_ref().map(|s| s.counts()),
            psi_triggers: self.triggers.len(),
            uptime: self.serving_since.elapsed(),
        })
    }

    /// Sends `reply`, which may set the kernel's i_size of `ino` to `len`
    /// (an attribute reply, or a short read through the page cache), having
    /// first lowered what is known of it.
    fn reply_sized(&self, ino: u64, len: u64, reply: impl FnOnce()) {
        match vfile_index(ino) {
            Some(i) => self.sizes.lowering(i, len, reply),
            None => reply(),
        }
    }

    /// A bind-mounted file is opened without a LOOKUP, so the kernel's i_size
    /// is whatever the last LOOKUP, GETATTR or short page-cache read left, and
    /// sendfile(2)/splice, which go through the page cache even for direct
    /// I/O files, stop there. Storing the last byte or two of this reader's
    /// content raises i_size to its length (fs/fuse/dev.c fuse_notify_store
    /// only grows the size, and only for a non-empty store); the page stays
    /// not-uptodate, so a later read still asks us. The kernel lowers i_size
    /// again after the short read at the end (fs/fuse/file.c fuse_short_read).
    /// No store is made when i_size is known to cover the length already
    /// (`KnownSizes`): the replies that may lower it go through
    /// [`ProcLens::reply_sized`].
    fn raise_size(&self, n: &Notifier, ino: INodeNo, data: &[u8]) {
        let Some(i) = vfile_index(ino.0) else {
            return;
        };
        let len = data.len();
        self.sizes.raise(i, len as u64, || {
            if len == 0 {
                return false;
            }
            // A store that starts a page and reaches the end of file would
            // mark that page up to date with only our bytes in it: never
            // start at a page boundary.
            let mut start = len - 1;
            if start % 4096 == 0 && len >= 2 {
                start = len - 2;
            }
            if start % 4096 == 0 {
                return false;
            }
            match n.store(ino, start as u64, &data[start..]) {
                Ok(()) => true,
                Err(e) => {
                    log::debug!("raising i_size of inode {}: {e}", ino.0);
                    false
                }
            }
        });
    }

    /// For a write-open of a pressure file by `req`'s process: the
    /// permission checks the kernel would make, then its container's
    /// pressure file opened read-write with the reader's privilege for
    /// triggers (`Views::open_pressure`). Errors are the reader's answer.
    fn open_trigger(
        &self,
        req: &Request,
        ino: INodeNo,
        r: crate::source::cgroup::Resource,
    ) -> Result<(std::fs::File, String), Errno> {
        let f = ino_vfile(ino.0).ok_or(Errno::ENOENT)?;
        let pid = req.pid();
        // The opener's credentials now, as the kernel would take them.
        let cap_eff =
            crate::source::proc::cap_eff(self.views.host().root(), pid).ok_or(Errno::ESRCH)?;
        if !may_write(self.vfile_mode(f).into(), req.uid(), req.gid(), cap_eff) {
            return Err(Errno::EACCES);
        }
        let privileged = caps::has(cap_eff, caps::CAP_SYS_RESOURCE);
        self.views
            .open_pressure(r, pid, privileged)
            .map_err(|e| match &e {
                view::Error::Open { error, .. } => errno(error),
                _ => {
                    log::warn!("a trigger for pid {pid}: {e}");
                    Errno::EIO
                }
            })
    }

    /// Produces a file's content for `pid`.
    fn content(&self, source: &Source, pid: u32) -> Result<Arc<Vec<u8>>, Errno> {
        match source {
            Source::Metrics => Ok(Arc::new(self.metrics_text().into_bytes())),
            Source::Virtual(f) => self.views.read(*f, pid).map(Arc::new).map_err(|e| {
                log::error!("{}: {e}", f.host_path());
                Errno::EIO
            }),
            Source::BlockStat(disk) => {
                self.views
                    .read_block_stat(disk, pid)
                    .map(Arc::new)
                    .map_err(|e| {
                        log::error!("/sys/block/{disk}/stat: {e}");
                        Errno::EIO
                    })
            }
            Source::Host(rel) => std::fs::read(self.host_path(rel, pid)?)
                .map(Arc::new)
                .map_err(|e| errno(&e)),
        }
    }
}

/// The session settings proclens serves with (the FUSE latency bench
/// serves its floor with them too): every user of every container may read;
/// one worker thread per CPU, at least two, each on its own cloned
/// /dev/fuse descriptor.
pub fn session_config(mount_options: Vec<fuser::MountOption>) -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2),
    );
    config.clone_fd = true;
    config
}

/// A running FUSE session: its worker threads serve until the kernel ends
/// the connection (unmounted everywhere and no file left open).
#[derive(Debug)]
pub struct Serving {
    guard: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    /// Blocks until the session ends; says how it ended.
    pub fn wait(self) -> String {
        match self.guard.join() {
            Ok(Ok(())) => "ended".to_owned(),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(_) => "panicked".to_owned(),
        }
    }
}

/// Mounts the filesystem at `at` under the mount source `fsname`
/// (nosuid, nodev, noexec; read-write only so that pressure files can be
/// opened for triggers: every other write is refused by the filesystem)
/// and starts serving it from `views`.
/// The mount outlives the returned handle: it is the caller's to unmount
/// (after a reload the path may be a successor's).
/// `sysinfo` is the seccomp front end whose counters `.proclens/metrics`
/// shows, when there is one.
pub fn serve(
    at: &Path,
    fsname: &OsStr,
    views: Arc<Views>,
    sysinfo: Option<Arc<Sysinfo>>,
) -> std::io::Result<Serving> {
    let config = session_config(vec![
        fuser::MountOption::FSName(fsname.to_string_lossy().into_owned()),
        fuser::MountOption::Subtype("proclens".into()),
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
    ]);
    let notifier = Arc::new(OnceLock::new());
    let budget = crate::source::kept::Budget::for_process();
    let triggers = Triggers::start(psi::PER_CONTAINER, budget.triggers).map_err(|e| {
        std::io::Error::new(e.kind(), format!("starting the PSI trigger thread: {e}"))
    })?;
    let session = fuser::Session::new(
        ProcLens::new(views, sysinfo, triggers, notifier.clone()),
        at,
        &config,
    )
    .map_err(|e| {
        std::io::Error::new(e.kind(), format!("mounting FUSE at {}: {e}", at.display()))
    })?;
    let _ = notifier.set(session.notifier());
    let mut bg = session
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("starting FUSE workers: {e}")))?;
    let guard = std::mem::replace(&mut bg.guard, std::thread::spawn(|| Ok(())));
    // fuser would unmount the path it mounted when `bg` drops.
    std::mem::forget(bg);
    Ok(Serving { guard })
}

impl Filesystem for ProcLens {
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.lookup_ino(parent.0, name, req.pid()) {
            Ok((attr, entry_ttl, attr_ttl)) => self.reply_sized(attr.ino.0, attr.size, || {
                reply.entry_with_ttls(&attr_ttl, &entry_ttl, &attr, Generation(0))
            }),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr_ino(ino.0, req.pid()) {
            Ok((attr, ttl)) => self.reply_sized(ino.0, attr.size, || reply.attr(&ttl, &attr)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self
            .node_path(ino.0)
            .ok_or(Errno::EINVAL)
            .and_then(|rel| self.host_path(&rel, req.pid()))
            .and_then(|p| std::fs::read_link(p).map_err(|e| errno(&e)));
        match r {
            Ok(t) => reply.data(t.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let pressure = ino_vfile(ino.0).and_then(VFile::pressure);
        let writes = flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
        let trigger = match (writes, pressure) {
            (false, _) => None,
            (true, None) => return reply.error(Errno::EROFS),
            (true, Some(r)) => match self.open_trigger(req, ino, r) {
                Ok(t) => Some(t),
                Err(e) => return reply.error(e),
            },
        };
        let source = match ino_vfile(ino.0) {
            Some(f) => Source::Virtual(f),
            // Mode 0400 root: FUSE leaves permission checks to us.
            None if ino.0 == METRICS && req.uid() != 0 => return reply.error(Errno::EACCES),
            None if ino.0 == METRICS => Source::Metrics,
            None => match self.node_path(ino.0) {
                Some(rel) => match block_stat_disk(&rel) {
                    Some(disk) => Source::BlockStat(disk.to_owned()),
                    None => Source::Host(rel),
                },
                None => return reply.error(Errno::EISDIR),
            },
        };
        let pid = req.pid();
        let t = Instant::now();
        let data = self.content(&source, pid);
        let kind = match &source {
            Source::Virtual(f) => Some(Kind::Virtual(*f)),
            Source::BlockStat(_) => Some(Kind::BlockStat),
            Source::Host(_) => Some(Kind::Sysfs),
            Source::Metrics => None,
        };
        if let Some(k) = kind {
            self.metrics.opened(k, t.elapsed(), data.is_ok());
        }
        let data = match data {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        if let (Source::Virtual(_), Some(n)) = (&source, self.notifier.get()) {
            self.raise_size(n, ino, &data);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        if let Some((file, container)) = trigger {
            if let Err(e) = self.triggers.add(fh, file, container) {
                return reply.error(errno(&e));
            }
        }
        if let Ok(mut h) = self.handles.lock() {
            h.insert(
                fh,
                Handle {
                    ino: ino.0,
                    source,
                    opener: pid,
                    data,
                    fresh: true,
                },
            );
        }
        reply.opened(
            FileHandle(fh),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH,
        );
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Take what is needed under the lock; render outside it.
        let (data, rerender) = {
            let Ok(mut h) = self.handles.lock() else {
                return reply.error(Errno::EIO);
            };
            let Some(handle) = h.by_fh.get_mut(&fh.0) else {
                return reply.error(Errno::EBADF);
            };
            let rerender = if offset == 0 && !handle.fresh {
                let pid = if req.pid() != 0 {
                    req.pid()
                } else {
                    handle.opener
                };
                Some((handle.source.clone(), pid))
            } else {
                None
            };
            handle.fresh = false;
            (handle.data.clone(), rerender)
        };
        let data = match rerender {
            Some((source, pid)) => match self.content(&source, pid) {
                Ok(d) => {
                    if let Ok(mut h) = self.handles.lock() {
                        if let Some(handle) = h.by_fh.get_mut(&fh.0) {
                            handle.data = d.clone();
                        }
                    }
                    d
                }
                Err(e) => return reply.error(e),
            },
            None => data,
        };
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        if end - start < size as usize {
            // Through the page cache, a short read ends the file there.
            self.reply_sized(ino.0, end as u64, || reply.data(&data[start..end]));
        } else {
            reply.data(&data[start..end]);
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut h) = self.handles.lock() {
            h.remove(fh.0);
        }
        self.triggers.remove(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.dir_entries(ino.0, req.pid()) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    /// Only a pressure file opened for writing takes a write: a trigger.
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if !self.triggers.holds(fh.0) {
            return reply.error(Errno::EROFS);
        }
        match self.triggers.write(fh.0, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Pressure files answer as the kernel's (psi_trigger_poll): POLLPRI
    /// once per event, POLLERR | POLLPRI without a trigger; every other
    /// file what a file without a poll method answers.
    fn poll(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        ph: PollNotifier,
        _events: PollEvents,
        flags: PollFlags,
        reply: ReplyPoll,
    ) {
        if ino_vfile(ino.0).and_then(VFile::pressure).is_none() {
            return reply.poll(default_pollmask());
        }
        // The kernel asks to be told of a change only when someone waits.
        let waker: Option<psi::Waker> =
            flags
                .contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY)
                .then(|| -> psi::Waker {
                    Arc::new(move || {
                        if let Err(e) = ph.clone().notify() {
                            log::debug!("poll notification: {e}");
                        }
                    })
                });
        let ready = self.triggers.poll(fh.0, waker).unwrap_or(Ready::NoTrigger);
        reply.poll(match ready {
            Ready::Nothing => default_pollmask(),
            Ready::Event => default_pollmask() | PollEvents::POLLPRI,
            Ready::NoTrigger => default_pollmask() | PollEvents::POLLERR | PollEvents::POLLPRI,
        });
    }

    /// A truncate of a pressure file opened for writing (a shell's `>`)
    /// changes nothing, as on procfs; every other change is refused.
    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let truncate_of_a_trigger = size.is_some()
            && (mode, uid, gid) == (None, None, None)
            && fh.is_some_and(|fh| self.triggers.holds(fh.0));
        if !truncate_of_a_trigger {
            return reply.error(Errno::EROFS);
        }
        match self.getattr_ino(ino.0, req.pid()) {
            Ok((attr, ttl)) => self.reply_sized(ino.0, attr.size, || reply.attr(&ttl, &attr)),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    // No extended attributes. ENOSYS makes the kernel stop asking (fuser's
    // default answers the same but logs a warning per call).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    /// isatty(3) on our files asks TCGETS: they are not terminals.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// lseek(2) with SEEK_DATA or SEEK_HOLE (whence 3, 4; coreutils `cp`
    /// asks): ENOSYS makes the kernel stop asking (fs/fuse/file.c,
    /// fuse_lseek sets `no_lseek`) and answer from the file size itself,
    /// which is right for files without holes (data up to the size, the
    /// one hole at it). fuser's default answers the same, with a warning
    /// in the log. Plain SEEK_SET/CUR/END never reach the daemon.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// access(2): nothing here is writable but the pressure files, as
    /// their modes say; everything else is as the mode bits say, which the
    /// kernel checks itself for other users.
    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if !mask.contains(AccessFlags::W_OK) {
            return reply.ok();
        }
        match ino_vfile(ino.0).filter(|f| f.pressure().is_some()) {
            None => reply.error(Errno::EROFS),
            Some(f) => {
                let cap_eff = crate::source::proc::cap_eff(self.views.host().root(), req.pid());
                if may_write(
                    self.vfile_mode(f).into(),
                    req.uid(),
                    req.gid(),
                    cap_eff.unwrap_or(0),
                ) {
                    reply.ok();
                } else {
                    reply.error(Errno::EACCES);
                }
            }
        }
    }
}
