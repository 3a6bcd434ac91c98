//! What the supervisor and its workers agree on: how a worker is told its
//! mode and its parent, where its control socket, descriptor channel and
//! seccomp listening socket are, and the mount source that names this
//! daemon's filesystem.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// The worker's end of the control socket.
pub const CTL_FD: i32 = 3;
/// Set by the supervisor in a worker's environment: `fresh` or `successor`.
pub const ENV_MODE: &str = "PROCLENS_WORKER";
/// The supervisor's pid, so a worker started after its parent died exits.
pub const ENV_PARENT: &str = "PROCLENS_SUPERVISOR_PID";
/// `1` when fd [`SECCOMP_FD`] is the seccomp listening socket.
pub const ENV_SECCOMP: &str = "PROCLENS_SECCOMP";

/// The mount source of the filesystem at `mp`: it names the mount point, so
/// that recovery only ever touches the mounts of this daemon's filesystem,
/// wherever a container bound them.
pub fn fsname(mp: &Path) -> OsString {
    let mut s = OsString::from("proclens:");
    s.push(mp.as_os_str());
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// First start, or a restart after the worker died: take the mount
    /// point (replacing a dead mount there) and re-attach dead mounts.
    Fresh,
    /// A reload: mount beside the live predecessor, take its state (on
    /// stdin), move every mount of its connection to ours.
    Successor,
}

/// The worker's end of the descriptor channel (a SOCK_SEQPACKET pair):
/// one message is a line of text and at most one descriptor.
///
/// - worker → supervisor `hold <name>` + fd: keep a copy of a container's
///   seccomp descriptor (and push it to systemd's fd store);
/// - worker → supervisor `release <name>`: that container is gone;
/// - supervisor → worker `adopt <name>` + fd, then `adopted`: the
///   descriptors a new worker serves from its start.
pub const FDS_FD: i32 = 4;
/// The seccomp listening socket, bound by the supervisor once and shared
/// by its workers (it outlives them: runc's connections wait in its
/// backlog while a worker restarts).
pub const SECCOMP_FD: i32 = 5;
/// The in-flight table of notifications (`serve::sysinfo::InFlight`), a
/// memfd the supervisor made and shares with its workers.
pub const INFLIGHT_FD: i32 = 6;
/// Its name in systemd's fd store.
pub const INFLIGHT_NAME: &str = "inflight";

/// Sends `text` and, if given, one descriptor as one message.
pub fn send(sock: &OwnedFd, text: &str, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg: Vec<ControlMessage> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let iov = [std::io::IoSlice::new(text.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message: `None` when none is waiting (`wait` false) or the
/// other end is gone.
pub fn recv(sock: &OwnedFd, wait: bool) -> std::io::Result<Option<(String, Option<OwnedFd>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 1024];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let msg = match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(rs) = c {
            for r in rs {
                // SAFETY: a descriptor the kernel just installed for us;
                // any beyond the first are closed when dropped.
                let owned = unsafe { OwnedFd::from_raw_fd(r) };
                fd.get_or_insert(owned);
            }
        }
    }
    let n = msg.bytes;
    if n == 0 && fd.is_none() {
        return Ok(None);
    }
    Ok(Some((String::from_utf8_lossy(&buf[..n]).into_owned(), fd)))
}

/// A SOCK_SEQPACKET pair for [`send`] and [`recv`], close-on-exec.
pub fn channel() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}
