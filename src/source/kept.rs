//! Descriptors kept open, so that a fresh read of a kernel file costs one
//! pread(2) at offset 0 instead of open, read and close. procfs, sysfs and
//! cgroupfs (seq_file and kernfs) generate a file's content anew on every
//! read that starts at offset 0, so a kept descriptor is exactly as fresh
//! as a new one; only the path walk and the open are saved.
//!
//! - A whole file is read with ONE pread into a buffer large enough for it
//!   (grown and read again from 0 when it was not): a second pread at a
//!   later offset could be answered from another generation of a seq_file
//!   by way of another thread's read of the same descriptor.
//! - A removed cgroup's files answer ENODEV, and its directory opens
//!   nothing more: a kept directory that says so is dropped and its path
//!   opened again, so a cgroup removed and created again at the same path
//!   is never read through a stale descriptor ([`Dirs::read`]).
//! - Bounded: directories are an LRU, and the descriptors they hold (their
//!   own and their files') are counted against a budget sized from
//!   RLIMIT_NOFILE ([`Budget`]). A directory holds at most [`MAX_FILES`]
//!   files; a file that would go over the budget is read once and closed,
//!   so a host with more containers than the budget serves them all (only
//!   slower), and no directory is opened again each cycle for want of
//!   room.

use lru::LruCache;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, ErrorKind};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most kernel files fit; larger ones (cpuinfo of a big host, memory.stat)
/// grow the buffer once and the size is remembered.
const FIRST_READ: usize = 4096;

/// At most this many control files are kept per directory (proclens reads
/// fewer than a dozen names from any one cgroup).
pub const MAX_FILES: usize = 24;

/// How long the absence of a control file is believed (a controller
/// enabled later makes its files appear; they are seen within this).
const ABSENT_FOR: Duration = Duration::from_secs(1);

/// One kept file and the size its content last had.
#[derive(Debug)]
pub struct Kept {
    file: File,
    size: AtomicUsize,
}

impl Kept {
    pub fn new(file: File) -> Kept {
        Kept {
            file,
            size: AtomicUsize::new(FIRST_READ),
        }
    }

    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<Kept> {
        File::open(path).map(Kept::new)
    }

    /// The whole content, from one pread at offset 0.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        let mut cap = self.size.load(Ordering::Relaxed).max(64);
        loop {
            let mut buf = vec![0u8; cap];
            let n = loop {
                match nix::sys::uio::pread(&self.file, &mut buf, 0) {
                    Ok(n) => break n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            if n < cap {
                buf.truncate(n);
                // Room for growth next time without a second read.
                self.size.store(n + n / 4 + 64, Ordering::Relaxed);
                return Ok(buf);
            }
            cap *= 2;
        }
    }

    /// The whole content as UTF-8 text.
    pub fn read_text(&self) -> io::Result<String> {
        String::from_utf8(self.read()?).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
    }
}

/// Whether an error says the file or directory behind a kept descriptor is
/// gone (a removed cgroup, a removed disk) rather than unreadable.
pub fn is_stale(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENODEV)
}

#[derive(Debug)]
struct Slot {
    name: &'static str,
    /// `None`: the file did not exist at `checked`.
    file: Option<Arc<Kept>>,
    checked: Instant,
}

/// The descriptors a table of kept directories holds, against its budget.
#[derive(Debug)]
pub struct Held {
    n: AtomicUsize,
    max: usize,
}

impl Held {
    pub fn new(max: usize) -> Arc<Held> {
        Arc::new(Held {
            n: AtomicUsize::new(0),
            max,
        })
    }

    /// Counts one more descriptor if the budget has room for it.
    fn take(&self) -> bool {
        self.n
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn add(&self, k: usize) {
        self.n.fetch_add(k, Ordering::Relaxed);
    }

    fn release(&self, k: usize) {
        self.n.fetch_sub(k, Ordering::Relaxed);
    }

    pub fn count(&self) -> usize {
        self.n.load(Ordering::Relaxed)
    }
}

/// A directory kept open, with the files read from it.
#[derive(Debug)]
pub struct KeptDir {
    path: PathBuf,
    ino: u64,
    /// A cgroup file system (kernfs) keeps a directory's link count at 2
    /// plus its subdirectories, refreshed on each stat
    /// (kernfs_refresh_inode), so a leaf needs no listing.
    counts_subdirs: bool,
    /// For openat(2) of its files and listing its subdirectories (the lock
    /// keeps one thread's rewind and getdents from interleaving another's).
    dir: Mutex<nix::dir::Dir>,
    fd: i32,
    /// A file every live directory of this kind has: its answer tells a
    /// vanished directory from a missing file. On cgroupfs the cheapest
    /// such file of the hierarchy's version, not the table's (v1's
    /// `cgroup.procs` would build a pid list for every probe).
    probe: &'static str,
    files: Mutex<Vec<Slot>>,
    /// Its table's count: the directory's descriptor and each kept file's.
    held: Arc<Held>,
}

impl Drop for KeptDir {
    fn drop(&mut self) {
        let files = self.files.get_mut().unwrap_or_else(|e| e.into_inner());
        self.held
            .release(1 + files.iter().filter(|s| s.file.is_some()).count());
    }
}

impl KeptDir {
    /// Opens the directory at `path`, counting its descriptor in `held`
    /// (a directory is always kept; its files only while `held` has room).
    pub fn open(path: &Path, probe: &'static str, held: Arc<Held>) -> io::Result<KeptDir> {
        let dir = nix::dir::Dir::open(
            path,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let fd = dir.as_raw_fd();
        // SAFETY: fstat into a stat buffer we own, on a descriptor we own.
        let ino = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                return Err(io::Error::last_os_error());
            }
            st.st_ino
        };
        // SAFETY: fstatfs into a buffer we own, on a descriptor we own.
        let magic = unsafe {
            let mut fs: libc::statfs = std::mem::zeroed();
            (libc::fstatfs(fd, &mut fs) == 0).then_some(fs.f_type)
        };
        // Files every cgroup directory has, the root's included
        // (kernel/cgroup: cgroup1_base_files, cgroup_base_files).
        let (counts_subdirs, probe) = match magic {
            Some(libc::CGROUP_SUPER_MAGIC) => (true, "notify_on_release"),
            Some(libc::CGROUP2_SUPER_MAGIC) => (true, "cgroup.controllers"),
            _ => (false, probe),
        };
        held.add(1);
        Ok(KeptDir {
            path: path.to_owned(),
            ino,
            counts_subdirs,
            dir: Mutex::new(dir),
            fd,
            probe,
            files: Mutex::new(Vec::new()),
            held,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's inode: a directory created again at the same path
    /// has another.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    fn openat(&self, name: &'static str) -> io::Result<Option<Kept>> {
        let c = CString::new(name).map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
        // SAFETY: a NUL-terminated name relative to a directory we hold
        // open; returns a new descriptor or -1.
        let fd = unsafe { libc::openat(self.fd, c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                ErrorKind::NotFound => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(Some(Kept::new(unsafe { File::from_raw_fd(fd) })))
    }

    /// The kept file `name`, opened on first use; `None` when it does not
    /// exist. Fails with ENODEV when the directory itself is gone.
    fn file(&self, name: &'static str) -> io::Result<Option<Arc<Kept>>> {
        {
            let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = files.iter().find(|s| s.name == name) {
                if s.file.is_some() || s.checked.elapsed() < ABSENT_FOR {
                    return Ok(s.file.clone());
                }
            }
        }
        let file = self.openat(name)?.map(Arc::new);
        if file.is_none() && name != self.probe {
            // A removed directory opens nothing: ask the file it must have.
            match self.read(self.probe)? {
                Some(_) => {}
                None => return Err(io::Error::from_raw_os_error(libc::ENODEV)),
            }
        }
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have kept one meanwhile: this one replaces it.
        let replaced = files
            .iter()
            .filter(|s| s.name == name && s.file.is_some())
            .count();
        files.retain(|s| s.name != name);
        self.held.release(replaced);
        // That a file is absent costs no descriptor to remember.
        if files.len() < MAX_FILES && (file.is_none() || self.held.take()) {
            files.push(Slot {
                name,
                file: file.clone(),
                checked: Instant::now(),
            });
        }
        Ok(file)
    }

    /// The content of `name` in this directory, `None` if there is none.
    pub fn read(&self, name: &'static str) -> io::Result<Option<String>> {
        match self.file(name)? {
            Some(f) => f.read_text().map(Some),
            None => Ok(None),
        }
    }

    /// The content of `name`, from a descriptor opened for this read alone
    /// (relative to the kept directory: no path walk). For files whose
    /// content a kept descriptor would not renew: cgroup v1's `tasks` and
    /// `cgroup.procs` build their pid list at the first read after open
    /// and serve it again to later reads of that descriptor
    /// (kernel/cgroup/cgroup-v1.c cgroup_pidlist_start).
    pub fn read_once(&self, name: &'static str) -> io::Result<Option<String>> {
        match self.openat(name)? {
            Some(k) => k.read_text().map(Some),
            None if self.alive() => Ok(None),
            None => Err(io::Error::from_raw_os_error(libc::ENODEV)),
        }
    }

    /// The names of its subdirectories.
    pub fn subdirs(&self) -> io::Result<Vec<OsString>> {
        if self.counts_subdirs && self.links()? == 2 {
            return Ok(Vec::new());
        }
        let mut dir = self.dir.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        // nix rewinds the directory when the iterator is dropped.
        for e in dir.iter() {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if e.file_type() == Some(nix::dir::Type::Directory) {
                out.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(out)
    }

    /// The directory's link count now.
    fn links(&self) -> io::Result<u64> {
        // SAFETY: fstat into a stat buffer we own, on a descriptor we own.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(self.fd, &mut st) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(st.st_nlink)
        }
    }

    /// Whether the directory still exists: it has a link (a removed
    /// directory of a disk filesystem has none) and its probe file answers
    /// (a removed cgroup's answers ENODEV).
    pub fn alive(&self) -> bool {
        self.links().is_ok_and(|n| n > 0) && matches!(self.read(self.probe), Ok(Some(_)))
    }
}

/// How many descriptors the kept tables may hold, from the process's
/// descriptor limit, leaving room for everything else (FUSE, sockets, the
/// caller cache's pidfds, files of passthrough entries being read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Descriptors of kept directories and their files.
    pub dir_fds: usize,
    /// Kept tasks (each with its stat and schedstat files).
    pub tasks: usize,
    /// Kept host files.
    pub host: usize,
    /// Pressure files open for PSI triggers, daemon-wide.
    pub triggers: usize,
}

/// Descriptors left for everything the kept tables are not.
pub const RESERVED_FDS: u64 = 2048;
/// The most the tables ever keep, whatever the limit: 102400 descriptors
/// of directories and their files (4096 directories with [`MAX_FILES`]
/// files each, or more with fewer), 32768 tasks and 4096 triggers (about
/// 172k descriptors; the unit's LimitNOFILE leaves room for them).
const MAX_DIR_FDS: usize = 4096 * (MAX_FILES + 1);
const MAX_TASKS: usize = 32768;
const MAX_HOST: usize = 1024;
const MAX_TRIGGERS: usize = 4096;

impl Budget {
    /// Of what the limit leaves: 45% for directories and their files, 45%
    /// for tasks, 5% for host files, 2.5% for PSI triggers; never less
    /// than a few of each.
    pub fn for_limit(nofile: u64) -> Budget {
        let spare = nofile.saturating_sub(RESERVED_FDS) as usize;
        Budget {
            dir_fds: (spare * 9 / 20).clamp(16, MAX_DIR_FDS),
            tasks: (spare * 9 / 20 / 2).clamp(64, MAX_TASKS),
            host: (spare / 20).clamp(16, MAX_HOST),
            triggers: (spare / 40).clamp(16, MAX_TRIGGERS),
        }
    }

    /// The budget for this process, after raising its soft descriptor
    /// limit to the hard one.
    pub fn for_process() -> Budget {
        Budget::for_limit(fd_limit())
    }
}

/// The soft RLIMIT_NOFILE, raised to the hard limit first (systemd's
/// default soft limit is 1024; its hard limit is far higher).
pub fn fd_limit() -> u64 {
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

/// An LRU of kept things by key, each remembered with when it was last
/// used: bounded by `cap`, and [`Lru::expire`] drops what no reader has
/// asked for in a while (the descriptors of a container nobody reads).
#[derive(Debug)]
pub struct Lru<K: std::hash::Hash + Eq, V> {
    inner: Mutex<LruCache<K, (Arc<V>, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V> Lru<K, V> {
    pub fn new(cap: usize) -> Self {
        Lru {
            inner: Mutex::new(LruCache::new(
                NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<K, (Arc<V>, Instant)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value kept for `key`, or the one `open` makes (kept from now
    /// on). `open` runs without the lock held.
    pub fn get_or_open<Q>(
        &self,
        key: &Q,
        open: impl FnOnce() -> io::Result<V>,
    ) -> io::Result<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some((v, at)) = self.lock().get_mut(key) {
            *at = Instant::now();
            return Ok(v.clone());
        }
        let v = Arc::new(open()?);
        let mut lru = self.lock();
        // Another thread may have opened it meanwhile: keep one.
        if let Some((old, at)) = lru.get_mut(key) {
            *at = Instant::now();
            return Ok(old.clone());
        }
        lru.put(key.to_owned(), (v.clone(), Instant::now()));
        Ok(v)
    }

    /// Drops the value kept for `key` if it is `v`.
    pub fn forget<Q>(&self, key: &Q, v: &Arc<V>)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let mut lru = self.lock();
        if lru.peek(key).is_some_and(|(k, _)| Arc::ptr_eq(k, v)) {
            lru.pop(key);
        }
    }

    /// Drops what has not been used for `idle`; returns how many are left.
    pub fn expire(&self, idle: Duration) -> usize {
        let mut lru = self.lock();
        while lru
            .peek_lru()
            .is_some_and(|(_, (_, at))| at.elapsed() >= idle)
        {
            lru.pop_lru();
        }
        lru.len()
    }

    /// Everything kept, most recently used first.
    pub fn values(&self) -> Vec<(K, Arc<V>)>
    where
        K: Clone,
    {
        self.lock()
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long a kept directory, file or task nobody reads stays open.
pub const IDLE: Duration = Duration::from_secs(60);

/// Kept directories by path.
#[derive(Debug)]
pub struct Dirs {
    probe: &'static str,
    lru: Lru<PathBuf, KeptDir>,
    held: Arc<Held>,
}

impl Dirs {
    /// At most `fds` descriptors for the directories and their files (so at
    /// most `fds / 2` directories: each is worth keeping only with a file),
    /// each directory told alive by its file `probe`.
    pub fn new(fds: usize, probe: &'static str) -> Dirs {
        Dirs {
            probe,
            lru: Lru::new(fds / 2),
            held: Held::new(fds),
        }
    }

    /// The kept directory at `path`, opened if it is not kept.
    pub fn get(&self, path: &Path) -> io::Result<Arc<KeptDir>> {
        self.lru
            .get_or_open(path, || KeptDir::open(path, self.probe, self.held.clone()))
    }

    /// Runs `f` on the kept directory at `path`; if it finds the directory
    /// gone (ENODEV), forgets it and runs `f` once more on the directory
    /// now at that path (a cgroup removed and created again).
    pub fn with<T>(&self, path: &Path, f: impl Fn(&KeptDir) -> io::Result<T>) -> io::Result<T> {
        let d = self.get(path)?;
        match f(&d) {
            Err(e) if is_stale(&e) => {
                self.lru.forget(path, &d);
                f(&*self.get(path)?)
            }
            r => r,
        }
    }

    /// The content of `name` in the directory at `path` (`None`: no such
    /// file there).
    pub fn read(&self, path: &Path, name: &'static str) -> io::Result<Option<String>> {
        self.with(path, |d| d.read(name))
    }

    /// Closes kept directories that are gone or that nobody read for
    /// [`IDLE`]; returns how many stay open.
    pub fn prune(&self) -> usize {
        self.lru.expire(IDLE);
        for (path, d) in self.lru.values() {
            if !d.alive() {
                self.lru.forget(&path, &d);
            }
        }
        self.lru.len()
    }

    pub fn len(&self) -> usize {
        self.lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// Descriptors held: the directories' and their files' (also those of
    /// directories a reader still holds after the LRU let them go).
    pub fn descriptors(&self) -> usize {
        self.held.count()
    }
}

/// Kept files by a key (the host's files by their absolute path).
#[derive(Debug)]
pub struct Files {
    lru: Lru<String, Kept>,
}

impl Files {
    pub fn new(cap: usize) -> Files {
        Files { lru: Lru::new(cap) }
    }

    /// The content of the file `key`, at `path`, through a kept
    /// descriptor (opened again once if the file behind it is gone).
    pub fn read_text(&self, key: &str, path: impl Fn() -> PathBuf) -> io::Result<String> {
        let f = self.lru.get_or_open(key, || Kept::open(&path()))?;
        match f.read_text() {
            Err(e) if is_stale(&e) => {
                self.lru.forget(key, &f);
                self.lru
                    .get_or_open(key, || Kept::open(&path()))?
                    .read_text()
            }
            r => r,
        }
    }

    /// Drops what nobody read for [`IDLE`].
    pub fn prune(&self) -> usize {
        self.lru.expire(IDLE)
    }

    pub fn len(&self) -> usize {
        self.lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup of this test's own, removed with its children on drop.
    struct TestCgroup(PathBuf);

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0.join("child"));
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn a_leaf_cgroup_is_known_by_its_link_count_and_a_child_is_listed_at_once() {
        // The memory controller's v1 tree on a hybrid host, the unified
        // tree on a pure v2 one.
        let root = [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists())
        .expect("a cgroup file system (run as root on Linux)");
        let cg = TestCgroup(root.join(format!("proclens-kept-{}", std::process::id())));
        std::fs::create_dir(&cg.0).expect("make a test cgroup (as root)");
        let k = KeptDir::open(&cg.0, "cgroup.procs", Held::new(8)).expect("open");
        assert!(
            k.counts_subdirs,
            "{} is a cgroup file system",
            root.display()
        );
        assert!(k.subdirs().expect("list").is_empty());
        std::fs::create_dir(cg.0.join("child")).expect("child cgroup");
        assert_eq!(k.subdirs().expect("list"), vec![OsString::from("child")]);
        std::fs::remove_dir(cg.0.join("child")).expect("remove child");
        assert!(k.subdirs().expect("list").is_empty());
        // Alive by the version's own probe file, and not once removed: the
        // kept files of a removed cgroup answer ENODEV.
        assert!(k.alive(), "{} is alive", cg.0.display());
        assert!(k.read("cgroup.procs").expect("read").is_some());
        std::fs::remove_dir(&cg.0).expect("remove the test cgroup");
        assert!(!k.alive(), "{} was removed", cg.0.display());
        let e = k.read("cgroup.procs").expect_err("a removed cgroup's file");
        assert!(is_stale(&e), "{e}");
        // Elsewhere every directory is listed.
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("d")).expect("dir");
        let t = KeptDir::open(tmp.path(), "d", Held::new(8)).expect("open");
        assert!(!t.counts_subdirs);
        assert_eq!(t.subdirs().expect("list"), vec![OsString::from("d")]);
    }

    #[test]
    fn one_read_gets_the_whole_file_whatever_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0, 1, 63, 64, FIRST_READ - 1, FIRST_READ, 5 * FIRST_READ + 7] {
            let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let p = dir.path().join(format!("f{len}"));
            std::fs::write(&p, &text).expect("write");
            let k = Kept::open(&p).expect("open");
            assert_eq!(k.read_text().expect("read"), text, "length {len}");
            // Read again through the same descriptor: the same, from 0.
            assert_eq!(k.read_text().expect("read"), text, "again, length {len}");
        }
    }

    #[test]
    fn a_kept_procfs_file_is_fresh_on_every_read() {
        // This thread's run time (schedstat's first field, ns) grows as it
        // spins. Spin until a newly opened file shows 5 ms more than the
        // kept descriptor's first read; the kept descriptor, read after
        // that, must show at least as much.
        let path = Path::new("/proc/thread-self/schedstat");
        let ran = |s: &str| -> u64 {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .expect("schedstat run time")
        };
        let k = Kept::open(path).expect("open");
        let first = ran(&k.read_text().expect("read"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let fresh = loop {
            let mut x = 0u64;
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            assert!(x > 0);
            let now = ran(&std::fs::read_to_string(path).expect("read"));
            if now >= first + 5_000_000 {
                break now;
            }
            assert!(Instant::now() < deadline, "this thread never ran 5 ms");
        };
        let kept = ran(&k.read_text().expect("read"));
        assert!(
            kept >= fresh,
            "the kept descriptor read {kept} after a new one read {fresh}"
        );
    }

    #[test]
    fn dirs_know_missing_files_and_keep_what_they_open() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = root.path().join("cg");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(d.join("cgroup.procs"), "1\n").expect("write");
        std::fs::write(d.join("memory.max"), "max\n").expect("write");
        std::fs::create_dir(d.join("child")).expect("mkdir");
        let dirs = Dirs::new(8, "cgroup.procs");
        assert_eq!(
            dirs.read(&d, "memory.max").expect("read").as_deref(),
            Some("max\n")
        );
        assert_eq!(dirs.read(&d, "memory.swap.max").expect("read"), None);
        // The kept descriptor reads what the file holds now.
        std::fs::write(d.join("memory.max"), "4096\n").expect("write");
        assert_eq!(
            dirs.read(&d, "memory.max").expect("read").as_deref(),
            Some("4096\n")
        );
        let subs = dirs.get(&d).expect("dir").subdirs().expect("list");
        assert_eq!(subs, vec![OsString::from("child")]);
        // Listing twice gives the same (the directory is rewound).
        assert_eq!(dirs.get(&d).expect("dir").subdirs().expect("list"), subs);
        assert!(dirs.read(&root.path().join("nope"), "memory.max").is_err());
    }

    #[test]
    fn files_past_the_descriptor_budget_are_read_but_not_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let mk = |name: &str| {
            let d = root.path().join(name);
            std::fs::create_dir(&d).expect("mkdir");
            for f in ["cgroup.procs", "memory.max", "memory.current"] {
                std::fs::write(d.join(f), format!("{name} {f}\n")).expect("write");
            }
            d
        };
        let (a, b, c) = (mk("a"), mk("b"), mk("c"));
        // Four descriptors: two directories at most.
        let dirs = Dirs::new(4, "cgroup.procs");
        let read = |d: &Path, f: &'static str| dirs.read(d, f).expect("read").expect("exists");
        read(&a, "memory.max");
        read(&a, "memory.current");
        assert_eq!(dirs.descriptors(), 3, "a and its two files");
        // b's directory is kept, its file goes over the budget: read anyway.
        assert_eq!(read(&b, "memory.max"), "b memory.max\n");
        assert_eq!(dirs.descriptors(), 4);
        std::fs::write(b.join("memory.max"), "changed\n").expect("write");
        assert_eq!(read(&b, "memory.max"), "changed\n", "still fresh");
        assert_eq!(dirs.descriptors(), 4);
        // c takes the place of the least recently used, a, whose
        // descriptors close with it; c's file then fits.
        assert_eq!(read(&c, "memory.max"), "c memory.max\n");
        assert_eq!(dirs.len(), 2);
        assert_eq!(dirs.descriptors(), 3, "b, c and c's file");
    }

    #[test]
    fn the_lru_is_bounded() {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs = Dirs::new(6, "cgroup.procs");
        for i in 0..10 {
            let d = root.path().join(format!("d{i}"));
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join("cgroup.procs"), "").expect("write");
            dirs.read(&d, "cgroup.procs").expect("read");
        }
        assert_eq!(dirs.len(), 3);
        // Gone directories are pruned.
        for i in 7..10 {
            std::fs::remove_dir_all(root.path().join(format!("d{i}"))).expect("rm");
        }
        assert_eq!(dirs.prune(), 0);
    }

    #[test]
    fn budgets_fit_the_limit() {
        // From a limit that leaves room for the smallest tables up, what
        // the tables may hold plus the reserve stays within the limit.
        for limit in [8192u64, 20000, 65536, 262144, 1 << 20] {
            let b = Budget::for_limit(limit);
            let used = (b.dir_fds + b.tasks * 2 + b.host + b.triggers) as u64;
            assert!(used + RESERVED_FDS <= limit, "{limit}: {b:?} uses {used}");
        }
        // The unit's LimitNOFILE gives the full tables.
        let unit = include_str!("../../packaging/systemd/proclens.service");
        let limit: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .expect("the unit sets LimitNOFILE")
            .trim()
            .parse()
            .expect("a number");
        let full = Budget::for_limit(limit);
        assert_eq!(
            (full.dir_fds, full.tasks, full.triggers),
            (MAX_DIR_FDS, MAX_TASKS, MAX_TRIGGERS),
            "LimitNOFILE={limit}"
        );
    }
}
