//! When proclens stays out of a container: the rules the OCI hook
//! (`super::ocihook`) and the runtime wrapper (`super::runc`) share. Either
//! one leaves a container with the kernel's own files, and never stops it
//! from starting, when
//!
//! - the container opts out with the annotation `io.proclens.disable=true`
//!   ([`opts_out`]);
//! - the daemon does not serve the mount ([`probe`]): not mounted, dead, or
//!   no answer within 2 s;
//! - a target is missing or resolves outside the container's rootfs
//!   ([`target_in`]);
//! - for sysinfo(2), the daemon does not listen at its seccomp socket
//!   ([`listens`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The annotation that turns proclens off for one container.
pub const DISABLE_ANNOTATION: &str = "io.proclens.disable";

/// statfs(2) f_type of a FUSE mount (include/uapi/linux/magic.h).
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// How long the daemon may take to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the value of [`DISABLE_ANNOTATION`] (absent: `None`) opts out.
pub fn opts_out(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    })
}

/// Whether the daemon serves `mp`: a FUSE mount whose `proc/meminfo`
/// answers a stat within 2 s. Asked from a thread so a hung daemon cannot
/// hang container creation (the thread is left behind: the hook exits and
/// the wrapper execs, which ends it).
pub fn probe(mp: &Path) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = mp.to_owned();
    std::thread::spawn(move || {
        let res = (|| {
            let st = nix::sys::statfs::statfs(&p).map_err(|e| format!("statfs: {e}"))?;
            if st.filesystem_type().0 as i64 != FUSE_SUPER_MAGIC {
                return Err("not a FUSE mount (is proclens.service running?)".to_owned());
            }
            std::fs::metadata(p.join("proc/meminfo"))
                .map(|_| ())
                .map_err(|e| format!("proc/meminfo: {e}"))
        })();
        let _ = tx.send(res);
    });
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the daemon does not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Whether the daemon takes seccomp descriptors at `path`: a connection
/// that is accepted, or waits in a full backlog, says yes; a socket nobody
/// listens at (a daemon that died) or none says no. Closed at once
/// without a word, which the daemon takes for this question. Never blocks.
pub fn listens(path: &Path) -> Result<(), String> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let addr = UnixAddr::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Resolves `rel` (absolute in the container) below `rootfs` (canonical)
/// without leaving it: the existing target's canonical path must stay
/// inside the rootfs (a symlink in an image must not redirect a bind to a
/// host path).
pub fn target_in(rootfs: &Path, rel: &str) -> Result<PathBuf, String> {
    let joined = rootfs.join(rel.trim_start_matches('/'));
    let real = joined
        .canonicalize()
        .map_err(|e| format!("{}: {e}", joined.display()))?;
    if !real.starts_with(rootfs) {
        return Err(format!(
            "{} resolves to {}, outside the rootfs",
            joined.display(),
            real.display()
        ));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_value_opts_out() {
        for v in ["true", "TRUE", " yes", "1", "on"] {
            assert!(opts_out(Some(v)), "{v:?}");
        }
        for v in ["false", "0", "", "no", "off", "disable"] {
            assert!(!opts_out(Some(v)), "{v:?}");
        }
        assert!(!opts_out(None));
    }

    #[test]
    fn a_plain_directory_is_not_served() {
        let mp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(mp.path().join("proc")).expect("mkdir");
        std::fs::write(mp.path().join("proc/meminfo"), "MemTotal: 1 kB\n").expect("write");
        let why = probe(mp.path()).expect_err("not FUSE");
        assert!(why.contains("not a FUSE mount"), "{why}");
        let why = probe(Path::new("/nonexistent/proclens")).expect_err("missing");
        assert!(why.contains("statfs"), "{why}");
    }

    #[test]
    fn targets_stay_in_the_rootfs() {
        let root = tempfile::tempdir().expect("tempdir");
        let rootfs = root.path().canonicalize().expect("canon");
        std::fs::create_dir_all(rootfs.join("proc")).expect("mkdir");
        std::fs::write(rootfs.join("proc/meminfo"), "").expect("write");
        std::os::unix::fs::symlink("/etc", rootfs.join("sys")).expect("symlink");
        assert_eq!(
            target_in(&rootfs, "/proc/meminfo").expect("inside"),
            rootfs.join("proc/meminfo")
        );
        let e = target_in(&rootfs, "/sys/block").expect_err("missing or outside");
        assert!(e.contains("outside") || e.contains("No such file"), "{e}");
        let e = target_in(&rootfs, "/sys").expect_err("outside");
        assert!(e.contains("outside the rootfs"), "{e}");
    }
}
