//! The serving process of `proclens mount`: the FUSE session, the sampler,
//! and the re-pointing of containers' mounts at start. Its parent, the
//! supervisor in `daemon.rs`, starts it, hands it its predecessor's state on
//! a reload, and talks to it over a socket (fd [`CTL_FD`]) with one-line
//! commands:
//!
//! - worker → supervisor `ready`: serving, every mount re-pointed;
//! - `export` → `state <n>` and n bytes: the per-container state, frozen
//!   from then on (see `Views::export_state`);
//! - `thaw`: a successor failed; advance the state again and re-attach any
//!   mount the successor left dead;
//! - `drain`: a successor serves now; the mount point is no longer ours.
//!   Keep serving the files still open (top keeps /proc/stat open for its
//!   whole life), and exit when the kernel ends the session, which it does
//!   once the last file of our connection is closed.

use super::mountpoint::clear_stale;
use super::privileges::drop_capabilities;
use super::protocol::{self, fsname, Mode, CTL_FD, ENV_PARENT, ENV_SECCOMP, FDS_FD, SECCOMP_FD};
use super::remount::{self, Dev};
use crate::container::view::{Options, Views};
use crate::serve::fuse;
use crate::serve::sysinfo::{Keeper, Sysinfo};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Worker {
    mp: PathBuf,
    views: Arc<Views>,
    /// Our connection's device number.
    dev: Dev,
    /// The mount point is ours to unmount on SIGTERM (not once draining).
    owns_mp: AtomicBool,
    draining: AtomicBool,
    /// A detached copy of our filesystem, to put back at the mount point if
    /// a failed successor left it dead. Dropped when draining: it would
    /// keep our connection alive.
    spare: Mutex<Option<OwnedFd>>,
    /// The sysinfo(2) front end, when the supervisor gave us its socket.
    sysinfo: Option<Seccomp>,
}

/// The seccomp front end and the listening socket it accepts on (only
/// while the supervisor says so: `serve-seccomp` until `drain`).
struct Seccomp {
    front: Arc<Sysinfo>,
    listener: std::os::unix::net::UnixListener,
    accepting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Hands every container descriptor to the supervisor over the descriptor
/// channel: it keeps a copy for our successors.
struct ToSupervisor(OwnedFd);

impl Keeper for ToSupervisor {
    fn hold(&self, name: &str, fd: std::os::fd::BorrowedFd<'_>) {
        if let Err(e) = protocol::send(&self.0, &format!("hold {name}"), Some(fd)) {
            log::error!("{name}: the supervisor keeps no copy of its seccomp descriptor: {e}");
        }
    }

    fn release(&self, name: &str) {
        if let Err(e) = protocol::send(&self.0, &format!("release {name}"), None) {
            log::warn!("{name}: telling the supervisor it is gone: {e}");
        }
    }
}

/// The seccomp front end of this worker: the descriptors the supervisor
/// hands over at start (`adopt` ... `adopted`), and the socket it shares.
fn seccomp(views: &Arc<Views>) -> Result<Option<Seccomp>> {
    // A supervisor of a version before the descriptor channel (an upgrade
    // by reload starts us from it) gives us no fd 4: no sysinfo then.
    // SAFETY: F_GETFD on a descriptor number, no memory involved.
    if unsafe { libc::fcntl(FDS_FD, libc::F_GETFD) } < 0 {
        log::warn!("started without a descriptor channel: sysinfo(2) is not answered until the next restart");
        return Ok(None);
    }
    // SAFETY: fd 4 was set up by the supervisor for us alone.
    let fds = unsafe { OwnedFd::from_raw_fd(FDS_FD) };
    let _ = nix::fcntl::fcntl(
        &fds,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mine = fds.try_clone().context("descriptor channel")?;
    // SAFETY: fd 6 is the in-flight table the supervisor shares with us.
    let table = unsafe { OwnedFd::from_raw_fd(protocol::INFLIGHT_FD) };
    let _ = nix::fcntl::fcntl(
        &table,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let in_flight = crate::serve::sysinfo::InFlight::map(table)
        .map_err(|e| {
            log::warn!("the in-flight table: {e}; a crash may leave a sysinfo call waiting")
        })
        .ok();
    let front = Arc::new(Sysinfo::new(
        views.clone(),
        Box::new(ToSupervisor(mine)),
        in_flight,
    )?);
    let mut adopted = 0;
    loop {
        match protocol::recv(&fds, true).context("the supervisor's descriptors")? {
            Some((text, Some(fd))) if text.starts_with("adopt ") => {
                let name = text["adopt ".len()..].to_owned();
                match front.adopt(name.clone(), fd) {
                    Ok(()) => adopted += 1,
                    Err(e) => log::error!("{name}: cannot watch its seccomp descriptor: {e}"),
                }
            }
            Some((text, None)) if text == "adopted" => break,
            Some((text, _)) => bail!("unexpected message on the descriptor channel: {text:?}"),
            None => bail!("the supervisor closed the descriptor channel"),
        }
    }
    if adopted > 0 {
        log::info!("answering sysinfo(2) for {adopted} containers from before");
    }
    if std::env::var(ENV_SECCOMP).as_deref() != Ok("1") {
        return Ok(None);
    }
    // SAFETY: fd 5 is the listening socket the supervisor shares with us.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(SECCOMP_FD) };
    let _ = nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let answering = front.clone();
    std::thread::Builder::new()
        .name("sysinfo".into())
        .spawn(move || answering.notify_loop())
        .context("starting the sysinfo thread")?;
    Ok(Some(Seccomp {
        front,
        listener,
        accepting: Mutex::new(None),
    }))
}

fn source(mp: &Path) -> String {
    remount::escape(&fsname(mp))
}

pub fn run(mp: &Path, opts: Options, mode: Mode) -> Result<()> {
    // Die with the supervisor: systemd tracks it, and a crash of it must
    // leave no serving process that nothing manages.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let parent: Option<i32> = std::env::var(ENV_PARENT).ok().and_then(|p| p.parse().ok());
    if parent != Some(nix::unistd::getppid().as_raw()) {
        bail!("the supervisor that started this worker is gone");
    }
    // SAFETY: fd 3 was set up by the supervisor for us alone.
    let ctl = unsafe { UnixStream::from(OwnedFd::from_raw_fd(CTL_FD)) };
    let _ = nix::fcntl::fcntl(
        &ctl,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );

    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;
    drop_capabilities().context("dropping capabilities")?;

    let views =
        Arc::new(Views::new(Path::new("/"), opts).context("reading the host's cgroup layout")?);
    if mode == Mode::Successor {
        let mut state = String::new();
        std::io::stdin()
            .read_to_string(&mut state)
            .context("reading the predecessor's state")?;
        match views.import_state(&state) {
            Some((a, l)) => log::info!(
                "took over the state of {a} CPU accounts and {l} load averages"
            ),
            None if state.is_empty() => log::warn!("no state from the predecessor"),
            None => log::warn!("the predecessor's state is in a format this version does not read; starting afresh"),
        }
    }
    let sysinfo = seccomp(&views)?;
    let sampler = views.clone();
    std::thread::Builder::new()
        .name("loadavg".into())
        .spawn(move || sampler_loop(&sampler))
        .context("starting the sampler thread")?;

    let at = match mode {
        Mode::Fresh => {
            clear_stale(mp)?;
            std::fs::create_dir_all(mp).with_context(|| format!("creating {}", mp.display()))?;
            mp.to_owned()
        }
        Mode::Successor => {
            let name = mp.file_name().map(|n| n.as_bytes()).unwrap_or(b"mnt");
            let mut stage = OsString::from(".");
            stage.push(std::ffi::OsStr::from_bytes(name));
            stage.push(format!(".proclens-next-{}", std::process::id()));
            let stage = mp.with_file_name(stage);
            std::fs::create_dir_all(&stage)
                .with_context(|| format!("creating {}", stage.display()))?;
            stage
        }
    };
    let front = sysinfo.as_ref().map(|s| s.front.clone());
    let session = fuse::serve(&at, &fsname(mp), views.clone(), front).inspect_err(|_| {
        if at != mp {
            let _ = std::fs::remove_dir(&at);
        }
    })?;
    let dev = *remount::devs_at(&at)
        .last()
        .context("our mount is not in /proc/self/mountinfo")?;
    log::info!(
        "serving {} (connection {}:{}, pid {})",
        at.display(),
        dev.0,
        dev.1,
        std::process::id()
    );

    let w = Arc::new(Worker {
        mp: mp.to_owned(),
        views,
        dev,
        owns_mp: AtomicBool::new(mode == Mode::Fresh),
        draining: AtomicBool::new(false),
        spare: Mutex::new(None),
        sysinfo,
    });
    // The session ends when the kernel drops our connection: unmounted and
    // no file open.
    let watcher = w.clone();
    std::thread::Builder::new()
        .name("session".into())
        .spawn(move || {
            let r = session.wait();
            // No sysinfo call may be left half answered by our exit.
            if let Some(s) = &watcher.sysinfo {
                s.front.stop_and_wait();
            }
            if watcher.draining.load(Ordering::SeqCst) {
                log::info!(
                    "pid {}: the last reader of the old connection is gone; exiting",
                    std::process::id()
                );
                std::process::exit(0);
            }
            log::error!(
                "the FUSE session ended ({r}): {} was unmounted",
                watcher.mp.display()
            );
            std::process::exit(2);
        })
        .context("starting the session watcher")?;

    match mode {
        Mode::Fresh => {
            match remount::recover(mp, &source(mp), dev, None) {
                Ok(r) if r.namespaces > 0 || r.failed > 0 => {
                    log::info!("re-attached mounts left by a daemon that died: {r}")
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!("containers bound to a dead mount keep it until they restart: {e}")
                }
            }
            *w.spare.lock().unwrap_or_else(|e| e.into_inner()) = remount::clone_of(mp).ok();
        }
        Mode::Successor => take_over(&w, &at)?,
    }

    let mut out = ctl.try_clone().context("control socket")?;
    writeln!(out, "ready").context("telling the supervisor")?;
    let cw = w.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || control(&cw, ctl))
        .context("starting the control thread")?;

    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => log::debug!("SIGHUP goes to the supervisor; ignored"),
            Ok(sig) => {
                if let Some(s) = &w.sysinfo {
                    s.front.stop_and_wait();
                }
                if w.owns_mp.load(Ordering::SeqCst) {
                    log::info!("{sig}: unmounting {}", mp.display());
                    // Detach so that a reader's open file or cwd cannot
                    // keep us from exiting; the containers' bind mounts go
                    // with the connection.
                    if let Err(e) = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH) {
                        log::warn!("unmounting {}: {e}", mp.display());
                    }
                }
                return Ok(());
            }
            Err(e) => bail!("waiting for signals: {e}"),
        }
    }
}

/// A reload: moves every mount of the predecessor's connection (the one at
/// the mount point) to ours, mounted at `stage`, the mount point last.
fn take_over(w: &Worker, stage: &Path) -> Result<()> {
    let mp = &w.mp;
    let result = (|| -> Result<()> {
        let old = *remount::devs_at(mp)
            .last()
            .with_context(|| format!("no proclens mount at {} to take over", mp.display()))?;
        let start = Instant::now();
        let r = remount::recover(stage, &source(mp), w.dev, Some(old))
            .context("re-pointing the mounts")?;
        if remount::devs_at(mp).last() != Some(&w.dev) {
            bail!(
                "{} still shows the old connection after re-pointing ({r})",
                mp.display()
            );
        }
        w.owns_mp.store(true, Ordering::SeqCst);
        // Mounts made from the old connection while we worked (a container
        // that copied the host's namespace just before the switch).
        let again = remount::recover(mp, &source(mp), w.dev, Some(old))
            .context("re-pointing the mounts (second pass)")?;
        log::info!(
            "took over from connection {}:{}: {r}; second pass: {again}; {:?} in all",
            old.0,
            old.1,
            start.elapsed()
        );
        Ok(())
    })();
    // The staging mount point served only as a source of clones.
    if let Err(e) = nix::mount::umount2(stage, nix::mount::MntFlags::MNT_DETACH) {
        log::warn!("unmounting {}: {e}", stage.display());
    }
    let _ = std::fs::remove_dir(stage);
    result?;
    *w.spare.lock().unwrap_or_else(|e| e.into_inner()) = remount::clone_of(mp).ok();
    Ok(())
}

/// After a failed successor: put our filesystem back at the mount point if
/// the successor left a dead one there, and re-attach every dead mount.
fn heal(w: &Worker) {
    let mp = &w.mp;
    if remount::devs_at(mp).last() != Some(&w.dev) {
        let dead = matches!(
            remount::probe(mp, std::time::Duration::from_secs(1)),
            Some(Err(ref e)) if remount::ended(e)
        );
        let spare = w.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (dead, spare) {
            (true, Some(fd)) => match remount::put_back(&fd, mp) {
                Ok(()) => {
                    log::warn!(
                        "{}: put our mount back over the failed successor's",
                        mp.display()
                    );
                    w.owns_mp.store(true, Ordering::SeqCst);
                }
                Err(e) => log::error!("{}: cannot put our mount back: {e}", mp.display()),
            },
            (true, None) => log::error!(
                "{} is dead and no copy of our mount is left to put back",
                mp.display()
            ),
            (false, spare) => {
                *w.spare.lock().unwrap_or_else(|e| e.into_inner()) = spare;
                return;
            }
        }
        *w.spare.lock().unwrap_or_else(|e| e.into_inner()) = remount::clone_of(mp).ok();
    }
    match remount::recover(mp, &source(mp), w.dev, None) {
        Ok(r) if r.namespaces > 0 => {
            log::warn!("re-attached mounts the failed successor left: {r}")
        }
        Ok(_) => {}
        Err(e) => log::error!("re-attaching after a failed successor: {e}"),
    }
}

fn control(w: &Worker, ctl: UnixStream) {
    let Ok(mut out) = ctl.try_clone() else {
        return;
    };
    for line in BufReader::new(ctl).lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "export" => {
                let state = w.views.export_state();
                let sent = write!(out, "state {}\n{state}", state.len()).and_then(|_| out.flush());
                if let Err(e) = sent {
                    log::warn!("sending state: {e}");
                    w.views.thaw();
                }
            }
            "thaw" => {
                w.views.thaw();
                heal(w);
            }
            "serve-seccomp" => {
                if let Some(s) = &w.sysinfo {
                    let mut a = s.accepting.lock().unwrap_or_else(|e| e.into_inner());
                    if a.is_none() {
                        let front = s.front.clone();
                        match s.listener.try_clone() {
                            Ok(l) => {
                                *a = std::thread::Builder::new()
                                    .name("sysinfo-accept".into())
                                    .spawn(move || front.accept_loop(&l))
                                    .map_err(|e| log::error!("starting the seccomp listener: {e}"))
                                    .ok()
                            }
                            Err(e) => log::error!("the seccomp socket: {e}"),
                        }
                    }
                }
            }
            "drain" => {
                // The successor takes the runtimes' connections and the
                // notifications from here; ours end with what is in hand.
                if let Some(s) = &w.sysinfo {
                    s.front.stop_accepting();
                    let a = s.accepting.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(a) = a {
                        let _ = a.join();
                    }
                    s.front.stop_and_wait();
                }
                w.views.thaw();
                w.owns_mp.store(false, Ordering::SeqCst);
                w.draining.store(true, Ordering::SeqCst);
                w.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Err(e) = writeln!(out, "drained") {
                    log::warn!("telling the supervisor: {e}");
                }
                log::info!(
                    "pid {}: replaced; serving the files still open on the old connection until they are closed",
                    std::process::id()
                );
            }
            other => log::warn!("unknown control command {other:?}"),
        }
    }
}

fn sampler_loop(views: &Views) {
    let mut next = Instant::now() + crate::container::loadavg::INTERVAL;
    loop {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        // While a successor takes the state over, the averages hold still.
        if !views.is_frozen() {
            let t = Instant::now();
            views.sample();
            let (accounts, loads) = views.state_counts();
            log::debug!(
                "sampler cycle in {:?}: state for {accounts} CPU accounts, {loads} load averages; {} fallbacks so far",
                t.elapsed(),
                views.fallbacks()
            );
        }
        next += crate::container::loadavg::INTERVAL;
        // Never try to catch up a backlog (after a suspend): skip ahead.
        if next < Instant::now() {
            next = Instant::now() + crate::container::loadavg::INTERVAL;
        }
    }
}
