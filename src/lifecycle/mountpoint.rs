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

/// What a probe of a FUSE mount found out about its daemon.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// It answered: a daemon serves the mount.
    Live,
    /// The kernel ended the connection: nobody serves the mount. A probe
    /// sent while the daemon was exiting learns it as ECONNABORTED.
    Dead,
    /// No answer in time.
    Hung,
    /// Some other failure, which we do not guess at.
    Failed(i32),
}

/// Reads a probe's outcome (`None`: it did not finish in time).
fn verdict(answer: Option<std::io::Result<()>>) -> Verdict {
    match answer {
        None => Verdict::Hung,
        Some(Ok(())) => Verdict::Live,
        Some(Err(e)) if super::remount::ended(&e) => Verdict::Dead,
        Some(Err(e)) => Verdict::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// Probes whether a FUSE mount answers: a dead daemon's mount fails with
/// ENOTCONN at once; a live one answers; a hung one does not answer (we
/// stop waiting). The probe looks up a name that does not exist: the
/// kernel caches no answer for it, so the daemon itself must give one (a
/// stat of the mount point could be answered from the attributes the
/// kernel keeps for a second, even for a daemon that is gone).
fn probe(mp: &Path) -> Verdict {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = mp.join(".proclens-probe");
    std::thread::spawn(move || {
        let r = match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other.map(|_| ()),
        };
        let _ = tx.send(r);
    });
    verdict(rx.recv_timeout(Duration::from_secs(2)).ok())
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
        let deadline = std::time::Instant::now() + LIVE_GRACE;
        let mut answer = probe(mp);
        while answer == Verdict::Live && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            answer = probe(mp);
        }
        match answer {
            Verdict::Dead => {
                log::warn!(
                    "{}: replacing the stale {fstype} mount of a daemon that is gone",
                    mp.display()
                );
                nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH)
                    .with_context(|| format!("unmounting stale {}", mp.display()))?;
            }
            Verdict::Live => bail!(
                "{} is already served by a live {fstype} daemon; stop it first",
                mp.display()
            ),
            Verdict::Hung => bail!(
                "{} is a {fstype} mount whose daemon does not answer; stop it first",
                mp.display()
            ),
            Verdict::Failed(errno) => bail!(
                "{} is a {fstype} mount that fails a lookup with {}; unmount it first",
                mp.display(),
                std::io::Error::from_raw_os_error(errno)
            ),
        }
    }
    bail!("{}: too many stacked stale mounts", mp.display())
}

#[cfg(test)]
mod tests {
    use super::{verdict, Verdict};
    use std::io::Error;

    #[test]
    fn a_probe_ended_by_the_kernel_is_a_daemon_on_its_way_out_not_a_live_one() {
        let err = |n| Some(Err(Error::from_raw_os_error(n)));
        assert_eq!(verdict(Some(Ok(()))), Verdict::Live);
        assert_eq!(verdict(err(libc::ENOTCONN)), Verdict::Dead);
        assert_eq!(verdict(err(libc::ECONNABORTED)), Verdict::Dead);
        assert_eq!(verdict(err(libc::EIO)), Verdict::Failed(libc::EIO));
        assert_eq!(verdict(None), Verdict::Hung);
    }
}
