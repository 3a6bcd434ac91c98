//! The checks before serving: the host is one proclens can work on, and the
//! mount point is free (a dead daemon's mount there is replaced, a live
//! one's is refused).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// Refuses to start where proclens cannot work, with one clear line.
pub fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("proclens mount must run as root (it mounts a FUSE filesystem and reads every process's cgroup)");
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing: load the fuse module (modprobe fuse) or pass the device into this container");
    }
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().count())
        .unwrap_or(1);
    if nspid > 1 {
        bail!("proclens must run in the host's pid namespace (FUSE reports reader pids in the daemon's namespace); run it on the host, or with --pid=host");
    }
    Ok(())
}

/// The FUSE mounts at `mp`, from our mountinfo (fields 5 and 9+).
fn fuse_mounts_at(mp: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mp = mp.to_string_lossy().replace(' ', "\\040");
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let fstype = *f.get(sep + 1)?;
            (f.get(4) == Some(&mp.as_str()) && fstype.starts_with("fuse"))
                .then(|| fstype.to_owned())
        })
        .collect())
}

/// Whether a FUSE mount answers: a dead daemon's mount fails with ENOTCONN
/// at once; a live one answers; a hung one does not answer (we stop
/// waiting). The probe looks up a name that does not exist: the kernel
/// caches no answer for it, so the daemon itself must give one (a stat of
/// the mount point could be answered from the attributes the kernel keeps
/// for a second, even for a daemon that is gone).
fn probe(mp: &Path) -> Option<std::io::Result<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = mp.join(".proclens-probe");
    std::thread::spawn(move || {
        let r = match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other.map(|_| ()),
        };
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(2)).ok()
}

/// How long a mount that answers is watched for its daemon going away.
const LIVE_GRACE: Duration = Duration::from_secs(5);

/// Replaces a stale mount left by a crashed daemon; refuses a live one.
///
/// A mount that answers is watched for a moment before it is refused: the
/// worker of a daemon that was just killed is still exiting (it follows its
/// supervisor by PR_SET_PDEATHSIG), and systemd's restart comes that fast.
pub fn clear_stale(mp: &Path) -> Result<()> {
    for _ in 0..16 {
        let mounts = fuse_mounts_at(mp)?;
        let Some(fstype) = mounts.last() else {
            return Ok(());
        };
        let mut answer = probe(mp);
        let deadline = std::time::Instant::now() + LIVE_GRACE;
        while matches!(answer, Some(Ok(()))) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            answer = probe(mp);
        }
        match answer {
            Some(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                log::warn!(
                    "{}: replacing the stale {fstype} mount of a daemon that is gone",
                    mp.display()
                );
                nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH)
                    .with_context(|| format!("unmounting stale {}", mp.display()))?;
            }
            Some(_) => bail!(
                "{} is already served by a live {fstype} daemon; stop it first",
                mp.display()
            ),
            None => bail!(
                "{} is a {fstype} mount whose daemon does not answer; stop it first",
                mp.display()
            ),
        }
    }
    bail!("{}: too many stacked stale mounts", mp.display())
}
