//! PSI triggers through the mount, as on the kernel's own pressure files
//! (Documentation/accounting/psi.rst, "Monitoring for pressure
//! thresholds"): a reader opens `proc/pressure/<res>` read-write, writes
//! `some 150000 1000000`, and polls for POLLPRI. Its handle holds the
//! container's cgroup pressure file (opened read-write for it, see
//! `Views::open_pressure`); the write is made there, so the kernel
//! registers the trigger on that file, and one thread waits on every such
//! file with epoll and forwards each event to the reader's poll.
//!
//! Knows nothing of FUSE: the front end hands it file handles, bytes and a
//! waker to call when a handle has something for its poll.
//!
//! Limits: at most [`PER_CONTAINER`] such files per container and the
//! daemon's trigger budget in all (each is a descriptor the daemon holds,
//! and a privileged trigger is polled by the kernel at a tenth of its
//! window): a container cannot take the daemon's descriptors, or the
//! kernel's polling, from the others. Past them, an open fails with ENFILE.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

/// Pressure files one container may hold open for writing. Memory
/// monitors (Android's lmkd, oomd) use two or three triggers; 16 is each
/// resource at several thresholds, and 256 containers of them fit the
/// budget of a daemon with the unit's descriptor limit.
pub const PER_CONTAINER: usize = 16;

/// What a handle's poll is to say (kernel/sched/psi.c psi_trigger_poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Nothing since the last poll.
    Nothing,
    /// The trigger fired (reported once per event).
    Event,
    /// No trigger: none was written yet, or the kernel dropped it (its
    /// cgroup was removed).
    NoTrigger,
}

/// Called when a handle has something for its poll.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

struct Slot {
    file: File,
    container: String,
    /// A trigger is registered on `file` (and `file` in the epoll set).
    armed: bool,
    /// An event its poll has not reported yet.
    pending: bool,
    /// The kernel's file says the trigger is gone.
    gone: bool,
    waker: Option<Waker>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("container", &self.container)
            .field("armed", &self.armed)
            .field("pending", &self.pending)
            .field("gone", &self.gone)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// By the front end's file handle.
    slots: HashMap<u64, Slot>,
    /// Files held per container.
    held: HashMap<String, usize>,
}

/// Every pressure file opened for writing through the mount.
#[derive(Debug)]
pub struct Triggers {
    epoll: OwnedFd,
    inner: Mutex<Inner>,
    per_container: usize,
    total: usize,
}

fn last_error<T>() -> io::Result<T> {
    Err(io::Error::last_os_error())
}

impl Triggers {
    /// At most `per_container` files per container and `total` in all;
    /// starts the thread that waits for their events.
    pub fn start(per_container: usize, total: usize) -> io::Result<Arc<Triggers>> {
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return last_error();
        }
        let t = Arc::new(Triggers {
            // SAFETY: a descriptor the kernel just gave us, owned here.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            inner: Mutex::new(Inner::default()),
            per_container,
            total,
        });
        let weak = Arc::downgrade(&t);
        std::thread::Builder::new()
            .name("psi-triggers".into())
            .spawn(move || {
                while let Some(t) = weak.upgrade() {
                    if let Err(e) = t.wait() {
                        log::error!("waiting for PSI trigger events: {e}");
                        return;
                    }
                }
            })?;
        Ok(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `file` (a pressure file opened read-write for `container`)
    /// as the handle `fh`'s; ENFILE past the limits.
    pub fn add(&self, fh: u64, file: File, container: String) -> io::Result<()> {
        let mut inner = self.lock();
        let held = inner.held.get(&container).copied().unwrap_or(0);
        if held >= self.per_container || inner.slots.len() >= self.total {
            return Err(io::Error::from_raw_os_error(libc::ENFILE));
        }
        inner.held.insert(container.clone(), held + 1);
        inner.slots.insert(
            fh,
            Slot {
                file,
                container,
                armed: false,
                pending: false,
                gone: false,
                waker: None,
            },
        );
        Ok(())
    }

    /// Closes the handle's file, which drops its trigger.
    pub fn remove(&self, fh: u64) {
        let mut inner = self.lock();
        let Some(slot) = inner.slots.remove(&fh) else {
            return;
        };
        if let Some(n) = inner.held.get_mut(&slot.container) {
            *n -= 1;
            if *n == 0 {
                inner.held.remove(&slot.container);
            }
        }
        if slot.armed && !slot.gone {
            self.unwatch(&slot.file);
        }
    }

    /// Whether `fh` is a handle of ours.
    pub fn holds(&self, fh: u64) -> bool {
        self.lock().slots.contains_key(&fh)
    }

    /// How many files are held.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A write to handle `fh`, as the kernel's pressure file takes it
    /// (psi_write): at most 32 bytes, the last of them replaced by a NUL,
    /// one trigger per file (EBUSY after that). What is left is written to
    /// the cgroup's file, whose answer (EINVAL for a malformed trigger or
    /// window, EPERM for an unprivileged opener on kernels before 6.5) is
    /// the reader's.
    pub fn write(&self, fh: u64, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut buf = data[..data.len().min(32)].to_vec();
        if let Some(last) = buf.last_mut() {
            *last = 0;
        }
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        let text = &buf[..end];
        let mut inner = self.lock();
        let slot = inner
            .slots
            .get_mut(&fh)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        if slot.armed {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        if text.is_empty() {
            // An empty write would reach no parser: the kernel's says EINVAL.
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // kernfs takes one write(2) whole; a short one is an error here.
        let n = (&slot.file).write(text)?;
        if n != text.len() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLPRI | libc::EPOLLERR) as u32,
            u64: fh,
        };
        // SAFETY: registers a descriptor we own with our epoll set; the
        // event struct is read during the call only.
        if unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                slot.file.as_raw_fd(),
                &mut ev,
            )
        } != 0
        {
            return last_error();
        }
        slot.armed = true;
        Ok(data.len())
    }

    /// What the poll of handle `fh` is to say, taking a pending event;
    /// `waker`, when given, is called when there is more to say. `None`
    /// when `fh` is not one of ours.
    pub fn poll(&self, fh: u64, waker: Option<Waker>) -> Option<Ready> {
        let mut inner = self.lock();
        let slot = inner.slots.get_mut(&fh)?;
        if let Some(w) = waker {
            slot.waker = Some(w);
        }
        Some(if !slot.armed || slot.gone {
            Ready::NoTrigger
        } else if std::mem::take(&mut slot.pending) {
            Ready::Event
        } else {
            Ready::Nothing
        })
    }

    fn unwatch(&self, file: &File) {
        // SAFETY: removes a descriptor we own from our epoll set (the
        // event argument is ignored for EPOLL_CTL_DEL).
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                file.as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits (at most a second, so that the thread ends soon after the
    /// last `Arc` is dropped) for events and hands them to their handles.
    fn wait(&self) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: epoll_wait fills at most events.len() entries of a
        // buffer we own.
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
            return match e.raw_os_error() {
                Some(libc::EINTR) => Ok(()),
                _ => Err(e),
            };
        }
        let mut wake = Vec::new();
        {
            let mut inner = self.lock();
            for ev in &events[..n as usize] {
                let (bits, fh) = (ev.events, ev.u64);
                let Some(slot) = inner.slots.get_mut(&fh) else {
                    continue;
                };
                if bits & libc::EPOLLERR as u32 != 0 {
                    // The cgroup was removed: its trigger with it (kernfs
                    // answers EPOLLERR | EPOLLPRI from now on).
                    slot.gone = true;
                    let file = slot.file.as_raw_fd();
                    // SAFETY: as in `unwatch`, on a descriptor we own.
                    unsafe {
                        libc::epoll_ctl(
                            self.epoll.as_raw_fd(),
                            libc::EPOLL_CTL_DEL,
                            file,
                            std::ptr::null_mut(),
                        );
                    }
                } else if bits & libc::EPOLLPRI as u32 != 0 {
                    // Polling the kernel's file took its event (it reports
                    // each once): it is the reader's now.
                    slot.pending = true;
                }
                wake.extend(slot.waker.clone());
            }
        }
        for w in wake {
            w();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> File {
        tempfile::tempfile().expect("tempfile")
    }

    #[test]
    fn a_container_holds_at_most_its_share() {
        let t = Triggers::start(2, 3).expect("start");
        t.add(1, file(), "a".into()).expect("first");
        t.add(2, file(), "a".into()).expect("second");
        let e = t.add(3, file(), "a".into()).expect_err("third of a");
        assert_eq!(e.raw_os_error(), Some(libc::ENFILE));
        t.add(3, file(), "b".into()).expect("b's first");
        let e = t.add(4, file(), "c".into()).expect_err("past the total");
        assert_eq!(e.raw_os_error(), Some(libc::ENFILE));
        // Closing one gives the container its place back.
        t.remove(1);
        t.add(4, file(), "a".into()).expect("a again");
        assert_eq!(t.len(), 3);
        assert!(t.holds(4) && !t.holds(1));
    }

    #[test]
    fn writes_are_taken_as_the_kernel_takes_them() {
        let t = Triggers::start(4, 4).expect("start");
        let (mut r, w) = {
            let f = file();
            (f.try_clone().expect("dup"), f)
        };
        t.add(1, w, "a".into()).expect("add");
        // Before a trigger, a poll says there is none.
        assert_eq!(t.poll(1, None), Some(Ready::NoTrigger));
        assert_eq!(t.poll(9, None), None);
        assert_eq!(
            t.write(1, b"").map_err(|e| e.raw_os_error()),
            Err(Some(libc::EINVAL))
        );
        assert_eq!(
            t.write(1, b"\0").map_err(|e| e.raw_os_error()),
            Err(Some(libc::EINVAL))
        );
        // The last byte is the kernel's NUL: "some 150000 1000000" arrives
        // whole when written with its NUL, as psi.rst's example does.
        let trig = b"some 150000 1000000\0";
        // A regular file cannot be watched for POLLPRI (EPERM from
        // epoll_ctl): the write itself went through.
        let e = t
            .write(1, trig)
            .expect_err("a tempfile is no pressure file");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        use std::io::{Read, Seek};
        r.rewind().expect("rewind");
        let mut got = String::new();
        r.read_to_string(&mut got).expect("read");
        assert_eq!(got, "some 150000 1000000");
        // More than 32 bytes: the first 31 are taken.
        let t2 = Triggers::start(4, 4).expect("start");
        let f = file();
        let mut r2 = f.try_clone().expect("dup");
        t2.add(1, f, "a".into()).expect("add");
        let long = b"some 150000 1000000 and then a lot more";
        let _ = t2.write(1, long);
        r2.rewind().expect("rewind");
        let mut got = String::new();
        r2.read_to_string(&mut got).expect("read");
        assert_eq!(got.as_bytes(), &long[..31]);
    }
}
