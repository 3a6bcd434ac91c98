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

    drop_capabilities().context("dropping capabilities")?;

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
    // systemd Type=notify: READY=1 once the mount answers, then the watchdog.
    crate::sdnotify::ready_when_serving(&mp);

    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => log::info!("SIGHUP: nothing to reload"),
            Ok(sig) => {
                crate::sdnotify::stopping();
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

/// CAP_SYS_ADMIN (mount, unmount) and CAP_SYS_PTRACE (reading
/// `/proc/<pid>/ns/pid` of other users' processes) are all the daemon needs.
/// (Numbers from include/uapi/linux/capability.h.)
const KEEP_CAPS: [u32; 2] = [CAP_SYS_PTRACE, CAP_SYS_ADMIN];
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;

/// Drops every other capability from this thread's sets and the bounding set
/// before any thread starts (threads inherit them), and forbids regaining
/// privileges through exec.
fn drop_capabilities() -> Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .context("reading /proc/sys/kernel/cap_last_cap")?
        .trim()
        .parse()
        .context("parsing /proc/sys/kernel/cap_last_cap")?;
    for cap in (0..=last).filter(|c| !KEEP_CAPS.contains(c)) {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            bail!("PR_CAPBSET_DROP {cap}: {}", std::io::Error::last_os_error());
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut data = [Data::default(); 2];
    for cap in KEEP_CAPS {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective |= bit;
        data[word].permitted |= bit;
    }
    // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    // SAFETY: capset reads a valid header and two data words we own.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        bail!("capset: {}", std::io::Error::last_os_error());
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    }
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
