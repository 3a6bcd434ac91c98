//! The second front end: `sysinfo(2)` answered for containers, over
//! seccomp user notification (seccomp_unotify(2)).
//!
//! `proclens-runc` gives a container a seccomp rule that makes `sysinfo`
//! notify, and points runc's `linux.seccomp.listenerPath` at our socket.
//! At `create` runc connects and sends the filter's notification
//! descriptor (SCM_RIGHTS) with the container's state as JSON. From then
//! on every `sysinfo` call in the container waits for us: we resolve the
//! caller to its container exactly as a FUSE read does, fill `struct
//! sysinfo` from the same numbers as its meminfo, swaps, loadavg and
//! uptime, write it into the caller through `/proc/<pid>/mem` and answer 0.
//!
//! The memory file is opened, then the notification checked still valid
//! (`SECCOMP_IOCTL_NOTIF_ID_VALID`): the task that called is alive, so the
//! memory opened is its own, even if its pid were given to another process
//! afterwards; it is checked again before answering. Anything that goes
//! wrong is answered with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: the kernel
//! runs the real call, and the caller sees the host's numbers, never an
//! error, never a hang, never another container's.
//!
//! The descriptors must outlive the worker that serves them (a filter
//! whose listener is gone answers every notified call with ENOSYS): each
//! one received is handed to [`Keeper::hold`] at once (the supervisor keeps
//! a copy, and systemd's fd store another), and a new worker is given them
//! all back ([`Sysinfo::adopt`]).

use crate::container::view::Views;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The audit architecture of this build: a call made through another ABI
/// (an i386 program on x86_64) has another `struct sysinfo` and number.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// Callers whose memory files are kept (each holds two descriptors).
const MEMORIES: usize = 256;

/// Whether the process behind `pidfd` has exited (the pidfd turns readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, no waiting.
    unsafe { libc::poll(&mut p, 1, 0) != 0 }
}

/// How often a waiting accept loop looks whether it should stop.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// Where the descriptors of containers go to be kept across workers (the
/// supervisor), and where their end is told.
pub trait Keeper: Send + Sync {
    /// A new container's descriptor, named `name`: keep a copy.
    fn hold(&self, name: &str, fd: BorrowedFd<'_>);
    /// The container `name` is gone: drop the copy.
    fn release(&self, name: &str);
}

/// A container's notification descriptor.
#[derive(Debug)]
struct Filter {
    name: String,
    /// Its entry in the in-flight table.
    slot: Option<usize>,
    /// Held open: closing the last descriptor of a filter's listener makes
    /// every notified call in the container fail with ENOSYS.
    _fd: OwnedFd,
}

/// Counters of the answers given.
#[derive(Debug, Default)]
pub struct Stats {
    pub answered: AtomicU64,
    /// Handed back to the kernel (`CONTINUE`): host numbers for that call.
    pub continued: AtomicU64,
    pub containers: AtomicU64,
}

/// The seccomp front end of one worker.
pub struct Sysinfo {
    views: Arc<Views>,
    keeper: Box<dyn Keeper>,
    epoll: OwnedFd,
    filters: Mutex<HashMap<RawFd, Filter>>,
    /// Cleared when a successor serves: stop receiving notifications.
    serving: AtomicBool,
    /// Cleared to stop accepting runtimes' connections.
    accepting: AtomicBool,
    /// Where each notification received is noted, for the supervisor.
    in_flight: Option<InFlight>,
    /// Held while a notification is being answered.
    busy: Mutex<()>,
    /// Callers' memory files, by pid, with the pidfd that vouches for them.
    memories: Mutex<lru::LruCache<u32, (Arc<std::fs::File>, OwnedFd)>>,
    pub stats: Stats,
}

impl std::fmt::Debug for Sysinfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sysinfo")
            .field("filters", &self.filters)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A name for systemd's fd store (no ':', which separates LISTEN_FDNAMES,
/// nothing but ASCII letters, digits and `._-`, short enough for an
/// [`InFlight`] entry) for the filter of container `id` that runc installed
/// for process `pid`: one per container start, and one more per `runc
/// exec` (docker exec), each with its own descriptor, so the name must say
/// which process too. An id that is not plain or is long is hashed.
pub fn fd_name(id: &str, pid: u32) -> String {
    let clean = !id.is_empty()
        && id.len() <= 96
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if clean {
        format!("sysinfo-{id}-{pid}")
    } else {
        // FNV-1a: stable across versions (names outlive the process).
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("sysinfo-{h:016x}-{pid}")
    }
}

/// What runc sends with the descriptor (the OCI runtime spec's
/// ContainerProcessState): which of the descriptors is the seccomp one,
/// and the container's id.
#[derive(Debug, serde::Deserialize)]
struct ProcessState {
    #[serde(default)]
    fds: Vec<String>,
    /// The process the filter was installed for (the container's init, or
    /// an exec'd process).
    #[serde(default)]
    pid: u32,
    state: ContainerState,
}

#[derive(Debug, serde::Deserialize)]
struct ContainerState {
    id: String,
}

/// Receives one runc message: (container id, the pid it installed the
/// filter for, the seccomp descriptor). Other descriptors sent along are
/// closed.
fn receive(conn: &UnixStream) -> io::Result<(String, u32, OwnedFd)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let (n, fds) = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(rs) = c {
                // SAFETY: descriptors the kernel just installed for us.
                fds.extend(rs.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, fds)
    };
    if n == 0 && fds.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let state: ProcessState = serde_json::from_slice(&buf[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("container state: {e}")))?;
    let at = state.fds.iter().position(|f| f == "seccompFd").unwrap_or(0);
    let fd = fds.into_iter().nth(at).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no seccomp descriptor in the message",
        )
    })?;
    Ok((state.state.id, state.pid, fd))
}

fn ioctl<T>(fd: RawFd, req: libc::Ioctl, arg: *mut T) -> io::Result<()> {
    loop {
        // SAFETY: a seccomp ioctl on a notification descriptor we hold,
        // with a pointer to the struct the request names.
        let r = unsafe { libc::ioctl(fd, req, arg) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether notification `id` still stands (its caller waits for it).
fn still_valid(fd: RawFd, id: u64) -> bool {
    let mut id = id;
    ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id).is_ok()
}

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (linux/seccomp.h; not in libc).
const SYNC_WAKE_UP: libc::c_ulong = 1;

/// Asks the kernel (6.6 and later) to hand each notification of `fd` and
/// its answer over on the CPU where it is made: the caller waits for us
/// and we wait for the next call, so running both on one CPU saves the
/// wake-up of another CPU each way. An older kernel refuses (EINVAL) and
/// wakes as usual.
fn sync_wake_up(fd: RawFd) {
    // SAFETY: the flags are the ioctl's argument itself, not a pointer.
    let r = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS, SYNC_WAKE_UP) };
    if r != 0 {
        log::debug!(
            "seccomp: no synchronous wake-ups: {}",
            io::Error::last_os_error()
        );
    }
}

impl Sysinfo {
    pub fn new(
        views: Arc<Views>,
        keeper: Box<dyn Keeper>,
        in_flight: Option<InFlight>,
    ) -> io::Result<Sysinfo> {
        // SAFETY: returns a new descriptor or -1.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sysinfo {
            views,
            keeper,
            // SAFETY: a fresh descriptor that nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(epoll) },
            filters: Mutex::new(HashMap::new()),
            serving: AtomicBool::new(true),
            accepting: AtomicBool::new(true),
            in_flight,
            busy: Mutex::new(()),
            memories: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MEMORIES).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            stats: Stats::default(),
        })
    }

    /// Containers whose `sysinfo` calls are answered.
    pub fn containers(&self) -> usize {
        self.filters.lock().map_or(0, |f| f.len())
    }

    /// (calls answered, calls handed back to the kernel, containers served).
    pub fn counts(&self) -> (u64, u64, usize) {
        (
            self.stats.answered.load(Ordering::Relaxed),
            self.stats.continued.load(Ordering::Relaxed),
            self.containers(),
        )
    }

    /// Serves the descriptor `fd` of container `name` from now on.
    pub fn adopt(&self, name: String, fd: OwnedFd) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLHUP) as u32,
            u64: raw as u64,
        };
        // SAFETY: adds a descriptor we own to our epoll set.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, &mut ev) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
        sync_wake_up(raw);
        log::info!("answering sysinfo(2) for {name}");
        self.stats.containers.fetch_add(1, Ordering::Relaxed);
        let slot = self.in_flight.as_ref().and_then(|t| t.slot(&name));
        if let Ok(mut f) = self.filters.lock() {
            f.insert(
                raw,
                Filter {
                    name,
                    slot,
                    _fd: fd,
                },
            );
        }
        Ok(())
    }

    /// Stops receiving notifications (a successor serves them now); the
    /// one being answered is finished first.
    pub fn stop(&self) {
        self.serving.store(false, Ordering::SeqCst);
    }

    /// Stops receiving notifications and waits until the one being
    /// answered, if any, is answered: before this process exits, so that no
    /// caller is left waiting for an answer nobody will give.
    pub fn stop_and_wait(&self) {
        self.stop();
        drop(self.busy.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Makes [`Sysinfo::accept_loop`] return within [`POLL_EVERY`].
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Accepts runtimes' connections on `listener` until
    /// [`Sysinfo::stop_accepting`]. The socket is shared with the other
    /// workers of the supervisor, but only one of them accepts at a time
    /// (the supervisor says which), so a blocking accept after poll cannot
    /// be left waiting by another's.
    pub fn accept_loop(&self, listener: &UnixListener) {
        while self.accepting.load(Ordering::SeqCst) {
            let mut p = libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd we own.
            let n = unsafe { libc::poll(&mut p, 1, POLL_EVERY.as_millis() as i32) };
            if n <= 0 || !self.accepting.load(Ordering::SeqCst) {
                continue;
            }
            let conn = match listener.accept() {
                Ok((c, _)) => c,
                Err(e) => {
                    log::warn!("seccomp listener: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            match receive(&conn) {
                Ok((id, pid, fd)) => {
                    let name = fd_name(&id, pid);
                    // Kept elsewhere before anything else can go wrong here.
                    self.keeper.hold(&name, fd.as_fd());
                    if let Err(e) = self.adopt(name.clone(), fd) {
                        log::error!("{name}: cannot watch its seccomp descriptor: {e}");
                    }
                }
                // A connection closed without a word: proclens-runc asking
                // whether anybody listens.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(e) => log::warn!("seccomp listener: a runtime's message: {e}"),
            }
        }
    }

    /// Answers notifications until the process ends.
    pub fn notify_loop(&self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: epoll_wait writes at most events.len() entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    1000,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("seccomp: epoll_wait: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            for ev in &events[..n as usize] {
                let fd = ev.u64 as RawFd;
                if ev.events & libc::EPOLLIN as u32 != 0 {
                    let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
                    // Checked with the lock held: once `stop_and_wait`
                    // returned, nothing more is received.
                    if self.serving.load(Ordering::SeqCst) {
                        self.answer_one(fd);
                    }
                }
                if ev.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                    self.forget(fd);
                }
            }
            if !self.serving.load(Ordering::SeqCst) {
                // A successor answers; ours only wait for the end.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Every task of the container is gone: the descriptor is done.
    fn forget(&self, fd: RawFd) {
        let gone = self.filters.lock().ok().and_then(|mut f| f.remove(&fd));
        if let Some(f) = gone {
            // SAFETY: removes a descriptor of ours from our epoll set.
            unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                )
            };
            log::info!(
                "{}: the container is gone; its seccomp descriptor is closed",
                f.name
            );
            if let Some(t) = &self.in_flight {
                t.clear(&f.name);
            }
            self.keeper.release(&f.name);
        }
    }

    /// Receives one notification of `fd` and answers it.
    fn answer_one(&self, fd: RawFd) {
        // The kernel wants a zeroed struct.
        // SAFETY: seccomp_notif is plain old data.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        if let Err(e) = ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) {
            // ENOENT: the caller went away before we took it.
            if e.raw_os_error() != Some(libc::ENOENT) {
                log::debug!("seccomp: receiving a notification: {e}");
            }
            return;
        }
        let t = Instant::now();
        if let Some(table) = &self.in_flight {
            let slot = self
                .filters
                .lock()
                .ok()
                .and_then(|f| f.get(&fd).and_then(|f| f.slot));
            if let Some(slot) = slot {
                table.record(slot, n.id);
            }
        }
        let done = self.fill(fd, &n);
        let mut resp = libc::seccomp_notif_resp {
            id: n.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        match done {
            Ok(true) => {}
            // The caller is gone: nobody to answer.
            Ok(false) => return,
            Err(why) => {
                log::debug!(
                    "sysinfo for pid {}: the kernel answers instead: {why}",
                    n.pid
                );
                resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
            }
        }
        match ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) {
            Ok(()) if resp.flags == 0 => {
                self.stats.answered.fetch_add(1, Ordering::Relaxed);
                log::trace!("sysinfo for pid {} in {:?}", n.pid, t.elapsed());
            }
            Ok(()) => {
                self.stats.continued.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => log::debug!("seccomp: answering pid {}: {e}", n.pid),
        }
    }

    /// The memory of task `pid`, opened now or kept from an earlier call of
    /// the same process: a kept file is used only while the pidfd opened
    /// with it says the process has not exited, so `pid` cannot have been
    /// given to another since (pidfds exist for thread group leaders; a
    /// file of another thread is opened for each call).
    /// Also says whether the file was a kept one.
    fn memory_of(&self, pid: u32) -> Result<(Arc<std::fs::File>, bool), String> {
        if let Ok(mut m) = self.memories.lock() {
            if let Some((file, pidfd)) = m.get(&pid) {
                if !exited(pidfd) {
                    return Ok((file.clone(), true));
                }
                m.pop(&pid);
            }
        }
        // The pidfd first: "not exited" afterwards covers the open.
        // SAFETY: pidfd_open takes integers; a new descriptor or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map(Arc::new)
            .map_err(|e| format!("/proc/{pid}/mem: {e}"))?;
        if pidfd >= 0 {
            // SAFETY: a descriptor the kernel just gave us.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
            if !exited(&pidfd) {
                if let Ok(mut m) = self.memories.lock() {
                    m.put(pid, (file.clone(), pidfd));
                }
            }
        }
        Ok((file, false))
    }

    /// Writes the container's `struct sysinfo` into the caller of `n`.
    /// `Ok(false)`: the notification is gone; `Err`: let the kernel answer.
    fn fill(&self, fd: RawFd, n: &libc::seccomp_notif) -> Result<bool, String> {
        if n.data.arch != AUDIT_ARCH || n.data.nr as libc::c_long != libc::SYS_sysinfo {
            return Err(format!(
                "not sysinfo of this ABI (nr {}, arch {:#x})",
                n.data.nr, n.data.arch
            ));
        }
        let caller = self.views.caller(n.pid).map_err(|e| e.to_string())?;
        let info = self
            .views
            .sysinfo(&caller)
            .map_err(|e| e.to_string())?
            .ok_or("the caller is the host")?;
        // Opened before the check: if the notification still stands, the
        // task that called is alive and this is its memory.
        let bytes = info.encode();
        let at = n.data.args[0];
        let (mem, kept) = self.memory_of(n.pid)?;
        if !still_valid(fd, n.id) {
            return Ok(false);
        }
        if let Err(e) = mem.write_all_at(&bytes, at) {
            if !kept {
                return Err(format!("writing struct sysinfo at {at:#x}: {e}"));
            }
            // A kept file outlives an exec of its process, whose old memory
            // then takes no more writes: open the new one.
            if let Ok(mut m) = self.memories.lock() {
                m.pop(&n.pid);
            }
            let (mem, _) = self.memory_of(n.pid)?;
            if !still_valid(fd, n.id) {
                return Ok(false);
            }
            mem.write_all_at(&bytes, at)
                .map_err(|e| format!("writing struct sysinfo at {at:#x}: {e}"))?;
        }
        Ok(still_valid(fd, n.id))
    }
}

/// The notifications a worker has taken, in memory it shares with the
/// supervisor (a memfd, also kept in systemd's fd store): per container,
/// the id of the last notification received. A worker that dies between
/// receiving a notification and answering it leaves its caller waiting
/// for an answer nobody would give; any holder of the container's
/// descriptor may answer it, and notification ids of one filter follow
/// each other, so the supervisor answers `CONTINUE` for the last id and
/// the next ([`InFlight::rescue`]) before another worker starts: an id not
/// taken yet is refused by the kernel (EINPROGRESS) and left to the next
/// worker, one answered already is gone (ENOENT).
#[derive(Debug)]
pub struct InFlight {
    base: *mut u8,
    fd: OwnedFd,
}

// SAFETY: the mapping is only ever accessed through atomics (ids) and
// names written before an entry's id is published.
unsafe impl Send for InFlight {}
unsafe impl Sync for InFlight {}

/// Entries of [`InFlight`]: a NUL-padded name, then the last id.
const NAME_LEN: usize = 120;
const ENTRY: usize = NAME_LEN + 8;
pub const IN_FLIGHT_ENTRIES: usize = 4096;
const IN_FLIGHT_SIZE: usize = ENTRY * IN_FLIGHT_ENTRIES;

impl InFlight {
    /// A new, empty table.
    pub fn create() -> io::Result<InFlight> {
        let fd = nix::sys::memfd::memfd_create(
            c"proclens-sysinfo",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )?;
        nix::unistd::ftruncate(&fd, IN_FLIGHT_SIZE as i64)?;
        InFlight::map(fd)
    }

    /// The table in the memfd `fd` (one handed down, or from the fd store).
    pub fn map(fd: OwnedFd) -> io::Result<InFlight> {
        let size = std::fs::File::from(fd.try_clone()?).metadata()?.len();
        if size != IN_FLIGHT_SIZE as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("in-flight table of {size} bytes, not {IN_FLIGHT_SIZE}"),
            ));
        }
        // SAFETY: maps the whole memfd shared; unmapped on drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                IN_FLIGHT_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(InFlight {
            base: base.cast(),
            fd,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn name_at(&self, i: usize) -> &[u8] {
        // SAFETY: within the mapping; names are written once per entry.
        let name = unsafe { std::slice::from_raw_parts(self.base.add(i * ENTRY), NAME_LEN) };
        let end = name.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
        &name[..end]
    }

    fn id_at(&self, i: usize) -> &AtomicU64 {
        // SAFETY: 8-byte aligned (ENTRY and NAME_LEN are multiples of 8,
        // the mapping page-aligned) and within the mapping.
        unsafe { &*self.base.add(i * ENTRY + NAME_LEN).cast::<AtomicU64>() }
    }

    /// The entry of container `name` (made if there is none), if the table
    /// has room; names longer than an entry holds are not tracked.
    pub fn slot(&self, name: &str) -> Option<usize> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > NAME_LEN {
            return None;
        }
        if let Some(i) = (0..IN_FLIGHT_ENTRIES).find(|i| self.name_at(*i) == b) {
            return Some(i);
        }
        let i = (0..IN_FLIGHT_ENTRIES).find(|i| self.name_at(*i).is_empty())?;
        // SAFETY: within the mapping; the entry is free.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.base.add(i * ENTRY), b.len()) };
        self.id_at(i).store(0, Ordering::Release);
        Some(i)
    }

    /// Notification `id` of the container at `slot` was received.
    pub fn record(&self, slot: usize, id: u64) {
        self.id_at(slot).store(id, Ordering::Release);
    }

    /// Frees the entry of a container that is gone.
    pub fn clear(&self, name: &str) {
        if let Some(i) = (0..IN_FLIGHT_ENTRIES).find(|i| self.name_at(*i) == name.as_bytes()) {
            // SAFETY: within the mapping.
            unsafe { std::ptr::write_bytes(self.base.add(i * ENTRY), 0, ENTRY) };
        }
    }

    /// Answers `CONTINUE` to the notifications a dead worker may have
    /// taken and left unanswered, through the descriptors `fds` (by
    /// container name); returns how many were answered.
    pub fn rescue<'a>(&self, fds: impl Fn(&str) -> Option<BorrowedFd<'a>>) -> usize {
        let mut n = 0;
        for i in 0..IN_FLIGHT_ENTRIES {
            let name = String::from_utf8_lossy(self.name_at(i)).into_owned();
            if name.is_empty() {
                continue;
            }
            let Some(fd) = fds(&name) else { continue };
            let last = self.id_at(i).load(Ordering::Acquire);
            for id in [last, last.wrapping_add(1)] {
                let mut resp = libc::seccomp_notif_resp {
                    id,
                    val: 0,
                    error: 0,
                    flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
                };
                if ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp).is_ok() {
                    log::warn!(
                        "{name}: answered a sysinfo call the dead worker had taken (the kernel runs it)"
                    );
                    n += 1;
                }
            }
        }
        n
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.cast(), IN_FLIGHT_SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_store_names_are_safe() {
        let docker = "4f6b0c6e2a1d9e8f7c3b5a4d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
        let name = fd_name(docker, 4_194_303);
        assert_eq!(name, format!("sysinfo-{docker}-4194303"));
        assert!(
            name.len() <= NAME_LEN,
            "{name} does not fit an in-flight entry"
        );
        assert_eq!(fd_name("abc123_x.y-z", 7), "sysinfo-abc123_x.y-z-7");
        // The init's filter and an exec's are told apart.
        assert_ne!(fd_name("c", 1), fd_name("c", 2));
        for odd in ["a:b", "", &"x".repeat(1000), "a b\nc"] {
            let n = fd_name(odd, 4_194_303);
            assert!(n.len() <= NAME_LEN, "{n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{n}"
            );
        }
        assert_ne!(fd_name("a:b", 1), fd_name("a:c", 1));
    }
}
