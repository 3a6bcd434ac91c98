//! `proclens mount`: preflight checks, replacing a stale mount, the FUSE
//! session, the sampler thread and signal handling.

use crate::fs::ProcLens;
use crate::view::{Options, Views};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// at once; a live one answers; a hung one does not answer (we stop waiting).
fn probe(mp: &Path) -> Option<std::io::Result<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = mp.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&p).map(|_| ()));
    });
    rx.recv_timeout(Duration::from_secs(2)).ok()
}

/// Replaces a stale mount left by a crashed daemon; refuses a live one.
fn clear_stale(mp: &Path) -> Result<()> {
    for _ in 0..16 {
        let mounts = fuse_mounts_at(mp)?;
        let Some(fstype) = mounts.last() else {
            return Ok(());
        };
        match probe(mp) {
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

pub fn run(mountpoint: &Path, opts: Options) -> Result<()> {
    preflight()?;
    let mp: PathBuf = std::path::absolute(mountpoint)
        .with_context(|| format!("resolving {}", mountpoint.display()))?;
    clear_stale(&mp)?;
    std::fs::create_dir_all(&mp).with_context(|| format!("creating {}", mp.display()))?;

    // Signals go to the main thread's sigwait: block them before any thread
    // starts so every thread inherits the mask.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;

    let views =
        Arc::new(Views::new(Path::new("/"), opts).context("reading the host's cgroup layout")?);
    log::info!("{}", views.cgroups().describe());

    let sampler = views.clone();
    std::thread::Builder::new()
        .name("loadavg".into())
        .spawn(move || sampler_loop(&sampler))
        .context("starting the sampler thread")?;

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("proclens".into()),
        fuser::MountOption::Subtype("proclens".into()),
        fuser::MountOption::RO,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
    ];
    // Readers are every user of every container.
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2),
    );
    config.clone_fd = true;
    let notifier = Arc::new(std::sync::OnceLock::new());
    let session = fuser::Session::new(ProcLens::new(views, notifier.clone()), &mp, &config)
        .with_context(|| format!("mounting FUSE at {}", mp.display()))?;
    let _ = notifier.set(session.notifier());
    let bg = session.spawn().context("starting FUSE workers")?;
    log::info!("serving {}", mp.display());

    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => log::info!("SIGHUP: nothing to reload"),
            Ok(sig) => {
                log::info!("{sig}: unmounting {}", mp.display());
                break;
            }
            Err(e) => bail!("waiting for signals: {e}"),
        }
    }
    // Detach so that a reader's open file or cwd cannot keep us from
    // exiting; the bind mounts in containers go with the connection.
    if let Err(e) = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH) {
        log::warn!("unmounting {}: {e}", mp.display());
    }
    // Exiting closes /dev/fuse, which ends the connection; fuser's own
    // unmount on drop would only repeat ours.
    std::mem::forget(bg);
    Ok(())
}

fn sampler_loop(views: &Views) {
    let mut next = Instant::now() + crate::loadavg::INTERVAL;
    loop {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let t = Instant::now();
        views.sample();
        let (accounts, loads) = views.state_counts();
        log::debug!(
            "sampler cycle in {:?}: state for {accounts} CPU accounts, {loads} load averages; {} fallbacks so far",
            t.elapsed(),
            views.fallbacks()
        );
        next += crate::loadavg::INTERVAL;
        // Never try to catch up a backlog (after a suspend): skip ahead.
        if next < Instant::now() {
            next = Instant::now() + crate::loadavg::INTERVAL;
        }
    }
}
