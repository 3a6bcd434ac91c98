//! The systemd notification protocol (sd_notify(3)), for `Type=notify`.
//!
//! A message is one datagram of `KEY=VALUE` lines sent to the AF_UNIX socket
//! named by `$NOTIFY_SOCKET`: a filesystem path, or an abstract name written
//! with a leading `@`. systemd reads the sender's credentials, so any
//! thread of the main process may send. Nothing here is fatal: without
//! `$NOTIFY_SOCKET` (not under systemd) every call does nothing, and a
//! failed send is logged and forgotten. The protocol is small enough that a
//! crate (or linking libsystemd) would add more than it saves.
//!
//! The daemon calls [`ready_when_serving`] once the FUSE session runs and
//! [`stopping`] when a stop signal arrives.
//!
//! Not used yet: systemd's fd store (`FDSTORE=1` and `FDNAME=`, the
//! descriptors passed with SCM_RIGHTS on the same socket, which needs
//! `FileDescriptorStoreMax=` in the unit). The sysinfo front end's
//! descriptors (issue 15) are the first that must outlive a crash; their
//! sender belongs here, and tests/systemd.rs says what its test will be.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// A socket to send notifications to one address.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// `addr` as in `$NOTIFY_SOCKET`: an absolute path, or `@name` for an
    /// abstract socket.
    pub fn new(addr: &str) -> io::Result<Notifier> {
        let addr = if let Some(name) = addr.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if addr.starts_with('/') {
            SocketAddr::from_pathname(addr)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET={addr:?}: neither an absolute path nor @abstract"),
            ));
        };
        Ok(Notifier {
            sock: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE`) as one datagram.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let n = self.sock.send_to_addr(state.as_bytes(), &self.addr)?;
        if n != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {n} of {} bytes", state.len()),
            ));
        }
        Ok(())
    }
}

/// The notifier for `$NOTIFY_SOCKET`, made on first use (None when unset).
fn global() -> Option<&'static Notifier> {
    static N: OnceLock<Option<Notifier>> = OnceLock::new();
    N.get_or_init(|| {
        let addr = std::env::var("NOTIFY_SOCKET").ok()?;
        Notifier::new(&addr)
            .map_err(|e| log::warn!("sd_notify: {e}"))
            .ok()
    })
    .as_ref()
}

/// Sends `state` to systemd if we run under it; true if it was sent.
pub fn notify(state: &str) -> bool {
    let Some(n) = global() else {
        return false;
    };
    match n.send(state) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("sd_notify {:?}: {e}", state.lines().next().unwrap_or(""));
            false
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (as
/// sd_watchdog_enabled(3) advises), when it is set and meant for us
/// (`WATCHDOG_PID` absent or our pid).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// Whether the mount answers a request: a getattr of `proc/meminfo` goes to
/// the daemon's FUSE workers (its attributes are never cached).
///
/// A child process asks, not this one. A request the worker has read but
/// not answered (a worker that hangs, or was stopped) holds its caller in
/// an uninterruptible wait that only the end of the connection releases
/// (fs/fuse/dev.c, request_wait_answer). In the supervisor, that thread
/// kept the watchdog's SIGABRT, and SIGKILL, from ending the process, and
/// so the worker, which dies with its supervisor, from ever being killed:
/// under systemd the service hung in `stop-watchdog` instead of restarting
/// (tests/systemd.rs). A stuck child only stops the pings, as it should.
/// (A probe in flight when a reload re-executes the supervisor is never
/// reaped: a zombie until the supervisor exits.)
fn serving(mountpoint: &Path) -> bool {
    let Ok(path) = CString::new(mountpoint.join("proc/meminfo").into_os_string().into_vec()) else {
        return false;
    };
    // SAFETY: the child of a multi-threaded process may only make
    // async-signal-safe calls: it calls stat(2) and _exit(2), on memory
    // allocated before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; `st` is the child's own.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            let ok = libc::stat(path.as_ptr(), &mut st) == 0
                && st.st_mode & libc::S_IFMT == libc::S_IFREG;
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    if pid < 0 {
        log::warn!(
            "sd_notify: cannot fork a probe of {}: {}",
            mountpoint.display(),
            io::Error::last_os_error()
        );
        return false;
    }
    // As long as the child waits on a hung worker, so does this thread (a
    // wait that any signal ends), and no ping goes out.
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(_, 0)) => return true,
            _ => return false,
        }
    }
}

/// On a thread: waits until the mount at `mountpoint` answers, sends
/// `READY=1`, then, if systemd asked for a watchdog, sends `WATCHDOG=1`
/// with it and at half its interval for as long as the mount still answers
/// (a hung FUSE session stops the pings and systemd restarts the service).
/// Does nothing when not started by systemd.
pub fn ready_when_serving(mountpoint: &Path) {
    if global().is_none() {
        return;
    }
    let mp: PathBuf = mountpoint.to_owned();
    let interval = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    let spawned = std::thread::Builder::new()
        .name("sd-notify".into())
        .spawn(move || {
            while !serving(&mp) {
                std::thread::sleep(Duration::from_millis(50));
            }
            // The first ping goes with READY=1. systemd's watchdog timer
            // runs on from the last ping through a reload, which
            // re-executes this process in the same pid: if the new image
            // waited a whole interval before its first ping, reloads in a
            // row would starve the watchdog and get the service killed.
            let ready = format!("READY=1\nSTATUS=serving {}", mp.display());
            notify(&match interval {
                Some(_) => format!("{ready}\nWATCHDOG=1"),
                None => ready,
            });
            let Some(every) = interval else {
                return;
            };
            log::debug!("sd_notify: watchdog ping every {every:?}");
            loop {
                std::thread::sleep(every);
                if serving(&mp) {
                    notify("WATCHDOG=1");
                } else {
                    log::warn!("{} does not answer; not feeding the watchdog", mp.display());
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("sd_notify: cannot start its thread: {e}");
    }
}

/// Tells systemd the service is stopping (the stop signal arrived).
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=unmounting");
}

/// Sends `state` with one descriptor attached (SCM_RIGHTS), as
/// sd_pid_notify_with_fds(3) does, to the socket `addr` names.
fn send_with_fd(addr: &str, state: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::sys::socket::{
        sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    let to = match addr.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes())?,
        None => UnixAddr::new(addr)?,
    };
    let sock = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let fds = [fd.as_raw_fd()];
    let iov = [io::IoSlice::new(state.as_bytes())];
    sendmsg(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(&to),
    )?;
    Ok(())
}

/// Puts `fd` in systemd's file descriptor store under `name`
/// (`FDSTORE=1`; the unit's FileDescriptorStoreMax bounds how many):
/// systemd hands it back at the next start, in `$LISTEN_FDS`. Does
/// nothing when not run by systemd.
pub fn store_fd(name: &str, fd: BorrowedFd<'_>) -> bool {
    let Ok(addr) = std::env::var("NOTIFY_SOCKET") else {
        return false;
    };
    match send_with_fd(&addr, &format!("FDSTORE=1\nFDNAME={name}"), fd) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("sd_notify FDSTORE {name}: {e}");
            false
        }
    }
}

/// Drops the descriptors stored under `name`.
pub fn remove_fd(name: &str) -> bool {
    notify(&format!("FDSTOREREMOVE=1\nFDNAME={name}"))
}

/// The descriptors systemd passed us (sd_listen_fds_with_names(3)): fds
/// from 3 on, `$LISTEN_FDS` of them, named by `$LISTEN_FDNAMES`, when
/// `$LISTEN_PID` is us. They are made close-on-exec and the variables
/// unset, so that no child takes them for its own.
pub fn listen_fds() -> Vec<(String, OwnedFd)> {
    let me = std::process::id().to_string();
    let mine = std::env::var("LISTEN_PID").is_ok_and(|p| p.trim() == me);
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if !mine || n <= 0 {
        return Vec::new();
    }
    let mut names = names.split(':');
    (3..3 + n)
        .map(|fd| {
            // SAFETY: systemd passed these descriptors to us alone.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = nix::fcntl::fcntl(
                &owned,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            (names.next().unwrap_or("unknown").to_owned(), owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::new(path.to_str().expect("utf-8")).expect("notifier");
        n.send("READY=1\nSTATUS=x").expect("send");
        assert_eq!(recv(&server), "READY=1\nSTATUS=x");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("proclens-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let n = Notifier::new(&format!("@{name}")).expect("notifier");
        n.send("WATCHDOG=1").expect("send");
        assert_eq!(recv(&server), "WATCHDOG=1");
    }

    #[test]
    fn refuses_relative_addresses() {
        assert!(Notifier::new("notify.sock").is_err());
        assert!(Notifier::new("").is_err());
    }

    #[test]
    fn no_listener_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n =
            Notifier::new(dir.path().join("absent").to_str().expect("utf-8")).expect("notifier");
        assert!(n.send("READY=1").is_err());
    }

    #[test]
    fn watchdog_interval_is_half_and_only_ours() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }
}
