//! `proclens mount`: a supervisor process and the worker that serves.
//!
//! **Why two processes.** systemd tracks one pid, and a reload (SIGHUP,
//! the unit's `ExecReload`) must run the binary now installed at the path
//! we were started from, which an upgrade may have replaced, without any
//! container seeing a failed read. A process image cannot survive its own
//! `execve`, and fuser 0.18 cannot adopt an already initialized `/dev/fuse`
//! connection in a new image (`Session::new` and `Session::from_fd` both
//! run the INIT handshake), so the serving cannot simply continue across
//! an exec of the process that serves. Instead:
//!
//! - the **supervisor** (this module; the pid systemd sees, single-threaded
//!   where it forks, so that its workers' parent-death signal only fires
//!   when it really dies) checks the host, drops capabilities, starts a
//!   worker, forwards stop signals, restarts a worker that dies, and on
//!   SIGHUP runs the reload below;
//! - a **worker** (`worker.rs`) mounts the filesystem and serves it.
//!
//! **Reload**: the supervisor opens the installed binary, asks the serving
//! worker for its per-container state (which then holds still), and starts
//! a worker of the new binary with that state on stdin. The new worker
//! mounts a fresh connection beside the old, re-points every proclens bind
//! mount in every mount namespace and finally the host's mount point to it
//! (`remount.rs`: each swap is atomic with MOVE_MOUNT_BENEATH), and says
//! `ready`. The old worker is told to drain: it keeps serving files that
//! are still open on its connection and exits when the kernel ends its
//! session. Then the supervisor re-executes the very file the new worker
//! ran (`execveat` on the fd it opened), keeping its pid, and picks up its
//! workers from the environment. If the new binary fails at any point
//! before `ready`, it is killed, the old worker resumes (and re-attaches
//! anything the failed one left dead), and nothing else changes.
//!
//! **Crash**: a worker that dies is restarted by the supervisor at once;
//! if the whole daemon dies (the worker follows its supervisor through
//! PR_SET_PDEATHSIG), the next `proclens mount` finds the containers'
//! mounts of the dead connection and re-attaches them. Either way the
//! containers need no action.

use super::mountpoint::{clear_stale, preflight};
use super::privileges::drop_capabilities;
use super::protocol::{self, Mode};
use super::worker;
use crate::container::view::Options;
use crate::serve::sysinfo::InFlight;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a new worker may take to mount and re-point every mount.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the serving worker may take to hand over its state.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The supervisor's state across its own re-execution.
const ENV_STATE: &str = "PROCLENS_SUPERVISOR_STATE";

/// A worker the supervisor started.
#[derive(Debug)]
struct Child {
    pid: i32,
    ctl: UnixStream,
    /// Our end of its descriptor channel (`protocol::send`/`recv`).
    fds: OwnedFd,
}

#[derive(Debug)]
struct Supervisor {
    /// The binary to run on a reload: where we were started from.
    exe: PathBuf,
    /// Our own command line, for workers and for re-executing.
    args: Vec<OsString>,
    serving: Option<Child>,
    /// Replaced workers still serving files open on their connection.
    draining: Vec<i32>,
    /// When to try again after a worker died.
    respawn_at: Option<Instant>,
    /// The seccomp listening socket the workers share.
    seccomp: Option<OwnedFd>,
    /// A copy of every container's seccomp descriptor, by name: they must
    /// outlive any one worker (also pushed to systemd's fd store).
    held: BTreeMap<String, OwnedFd>,
    /// What the workers took and may not have answered.
    in_flight: Option<InFlight>,
}

/// The path we were executed from, as `/proc/self/exe` said at start
/// (" (deleted)" once an upgrade replaced the file: the path is what counts).
fn installed_path() -> Result<PathBuf> {
    let p = std::fs::read_link("/proc/self/exe").context("reading /proc/self/exe")?;
    let b = p.as_os_str().as_bytes();
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(
        b.strip_suffix(b" (deleted)").unwrap_or(b),
    )))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn run(mountpoint: &Path, opts: Options, seccomp_socket: &Path) -> Result<()> {
    let mp: PathBuf = std::path::absolute(mountpoint)
        .with_context(|| format!("resolving {}", mountpoint.display()))?;
    // Before anything opens a descriptor: systemd's are at 3 and up.
    let stored = super::sdnotify::listen_fds();
    match std::env::var(protocol::ENV_MODE).as_deref() {
        Ok("fresh") => return worker::run(&mp, opts, Mode::Fresh),
        Ok("successor") => return worker::run(&mp, opts, Mode::Successor),
        _ => {}
    }
    preflight()?;
    let resumed = std::env::var(ENV_STATE).ok();
    if resumed.is_none() {
        clear_stale(&mp)?;
        std::fs::create_dir_all(&mp).with_context(|| format!("creating {}", mp.display()))?;
    }
    drop_capabilities().context("dropping capabilities")?;

    // Signals go to the main thread's sigwait: block them before any thread
    // starts so every thread inherits the mask.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;
    let events = nix::sys::signalfd::SignalFd::with_flags(
        &signals,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .context("signalfd")?;

    let mut sup = Supervisor {
        exe: installed_path()?,
        args: std::env::args_os().collect(),
        serving: None,
        draining: Vec::new(),
        respawn_at: None,
        seccomp: None,
        held: BTreeMap::new(),
        in_flight: None,
    };
    match resumed {
        Some(state) => {
            sup.resume(&state)?;
            log::info!(
                "reload complete: supervisor {} now runs {}, worker {} serves",
                std::process::id(),
                sup.exe.display(),
                sup.serving.as_ref().map_or(0, |c| c.pid)
            );
            super::sdnotify::notify("READY=1");
        }
        None => {
            sup.adopt_stored(stored);
            sup.rescue();
            sup.seccomp = listen_seccomp(seccomp_socket);
            let child = sup
                .spawn(Mode::Fresh, None, None)
                .and_then(|c| sup.wait_ready(c))
                .context("the serving process failed to start")?;
            serve_seccomp(&child);
            sup.serving = Some(child);
        }
    }
    // systemd Type=notify: READY=1 once the mount answers, then the watchdog.
    super::sdnotify::ready_when_serving(&mp);

    loop {
        let channel = sup.serving.as_ref().map(|c| c.fds.as_raw_fd());
        match wait_event(&events, channel, Duration::from_secs(1)) {
            Some(Signal::SIGHUP) => sup.reload(),
            Some(Signal::SIGCHLD) | None => {}
            Some(sig) => {
                super::sdnotify::stopping();
                log::info!("{sig}: stopping; unmounting {}", mp.display());
                sup.stop();
                return Ok(());
            }
        }
        if let Some(c) = sup.serving.take() {
            sup.collect(&c);
            sup.serving = Some(c);
        }
        sup.reap();
    }
}

/// Binds the seccomp listening socket at `path` (replacing a stale one),
/// for runc to hand containers' notification descriptors to. Without it
/// proclens serves its files all the same; `sysinfo(2)` is left to the
/// kernel (proclens-runc adds no seccomp rule when nobody listens).
fn listen_seccomp(path: &Path) -> Option<OwnedFd> {
    let bind = || -> std::io::Result<OwnedFd> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let l = std::os::unix::net::UnixListener::bind(path)?;
        // Only root (runc) may hand us descriptors.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(l.into())
    };
    match bind() {
        Ok(fd) => {
            log::info!(
                "answering sysinfo(2) of containers whose runtime connects to {}",
                path.display()
            );
            Some(fd)
        }
        Err(e) => {
            log::warn!(
                "{}: {e}; sysinfo(2) is not answered for containers",
                path.display()
            );
            None
        }
    }
}

/// Tells a worker it takes the runtimes' connections from now on.
fn serve_seccomp(c: &Child) {
    let mut ctl = &c.ctl;
    if let Err(e) = writeln!(ctl, "serve-seccomp") {
        log::warn!("worker {}: {e}", c.pid);
    }
}

/// Whether a notification descriptor's container is gone (all its tasks
/// exited: the descriptor hangs up).
fn hung_up(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// The next signal of the set `events` was made for, or None after
/// `timeout` or as soon as the serving worker's descriptor channel has a
/// message (a container's descriptor is copied without delay, so that it
/// is in systemd's fd store before anything can take the daemon down).
fn wait_event(
    events: &nix::sys::signalfd::SignalFd,
    channel: Option<RawFd>,
    timeout: Duration,
) -> Option<Signal> {
    let mut fds = vec![libc::pollfd {
        fd: events.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    fds.extend(channel.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }));
    // SAFETY: pollfds we own; a timeout in milliseconds.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as i32,
        )
    };
    if n <= 0 || fds[0].revents & libc::POLLIN == 0 {
        return None;
    }
    let info = events.read_signal().ok()??;
    Signal::try_from(info.ssi_signo as i32).ok()
}

impl Supervisor {
    /// Starts a worker of `exe` (default: ours), with `state` on its stdin.
    fn spawn(&self, mode: Mode, exe: Option<&OwnedFd>, state: Option<&str>) -> Result<Child> {
        let (ours, theirs) = UnixStream::pair().context("control socket")?;
        let (fds_ours, fds_theirs) = protocol::channel().context("descriptor channel")?;
        let program: PathBuf = match exe {
            Some(fd) => format!("/proc/self/fd/{}", fd.as_raw_fd()).into(),
            None => self.exe.clone(),
        };
        let mut cmd = Command::new(&program);
        // ps shows the installed path, not /proc/self/fd/N.
        cmd.arg0(&self.exe)
            .args(self.args.iter().skip(1))
            .env(
                protocol::ENV_MODE,
                match mode {
                    Mode::Fresh => "fresh",
                    Mode::Successor => "successor",
                },
            )
            .env(protocol::ENV_PARENT, std::process::id().to_string())
            .env(
                protocol::ENV_SECCOMP,
                if self.seccomp.is_some() { "1" } else { "0" },
            )
            .env_remove(ENV_STATE);
        cmd.stdin(match state {
            Some(s) => Stdio::from(memfd_with(s)?),
            None => Stdio::null(),
        });
        // (source, the number it has in the worker).
        let mut map = vec![
            (theirs.as_raw_fd(), protocol::CTL_FD),
            (fds_theirs.as_raw_fd(), protocol::FDS_FD),
        ];
        let table = self.in_flight.as_ref().map(|t| t.fd().as_raw_fd());
        map.push((
            table.unwrap_or(fds_theirs.as_raw_fd()),
            protocol::INFLIGHT_FD,
        ));
        if let Some(l) = &self.seccomp {
            map.push((l.as_raw_fd(), protocol::SECCOMP_FD));
        }
        // SAFETY: between fork and exec only fcntl/dup2, async-signal-safe,
        // on a vector allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way of the targets first, close-on-exec; then
                // each onto its number, which dup2 leaves open across exec.
                let mut moved = [0i32; 4];
                for (i, (src, _)) in map.iter().enumerate() {
                    moved[i] = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 10);
                    if moved[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, (_, dst)) in map.iter().enumerate() {
                    if libc::dup2(moved[i], *dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let c = Child {
            pid: child.id() as i32,
            ctl: ours,
            fds: fds_ours,
        };
        // Every container's descriptor, for the worker to serve from its
        // start (it reads them before it says ready).
        for (name, fd) in &self.held {
            protocol::send(&c.fds, &format!("adopt {name}"), Some(fd.as_fd()))
                .with_context(|| format!("handing {name} to worker {}", c.pid))?;
        }
        protocol::send(&c.fds, "adopted", None).context("descriptor channel")?;
        Ok(c)
    }

    /// Takes what a worker said on its descriptor channel: copies of new
    /// containers' descriptors to hold (and to hand to `forward`, the
    /// serving worker, when the sender is another), ends to forget.
    fn collect_into(&mut self, c: &Child, forward: Option<&Child>) {
        loop {
            match protocol::recv(&c.fds, false) {
                Ok(Some((text, Some(fd)))) if text.starts_with("hold ") => {
                    let name = text["hold ".len()..].to_owned();
                    super::sdnotify::store_fd(&name, fd.as_fd());
                    if let Some(f) = forward {
                        if let Err(e) =
                            protocol::send(&f.fds, &format!("adopt {name}"), Some(fd.as_fd()))
                        {
                            log::error!("{name}: handing it to worker {}: {e}", f.pid);
                        }
                    }
                    self.held.insert(name, fd);
                }
                Ok(Some((text, None))) if text.starts_with("release ") => {
                    let name = &text["release ".len()..];
                    if self.held.remove(name).is_some() {
                        super::sdnotify::remove_fd(name);
                    }
                }
                Ok(Some((text, _))) => log::warn!("worker {}: unexpected {text:?}", c.pid),
                Ok(None) => break,
                Err(e) => {
                    log::debug!("worker {}: descriptor channel: {e}", c.pid);
                    break;
                }
            }
        }
    }

    fn collect(&mut self, c: &Child) {
        self.collect_into(c, None);
    }

    /// Answers the notifications a dead worker (or a dead daemon) took and
    /// left waiting (see `InFlight`), before another worker starts.
    fn rescue(&self) {
        if let Some(t) = &self.in_flight {
            let n = t.rescue(|name| self.held.get(name).map(|f| f.as_fd()));
            if n > 0 {
                log::warn!("{n} sysinfo calls left waiting by a worker that died were handed to the kernel");
            }
        }
    }

    /// Takes the descriptors systemd kept for us (containers of a daemon
    /// that died, and the in-flight table), dropping those whose container
    /// is gone; makes a table if there was none.
    fn adopt_stored(&mut self, stored: Vec<(String, OwnedFd)>) {
        let mut n = 0;
        for (name, fd) in stored {
            if name == protocol::INFLIGHT_NAME {
                match InFlight::map(fd) {
                    Ok(t) => self.in_flight = Some(t),
                    Err(e) => log::warn!("the stored in-flight table: {e}"),
                }
                continue;
            }
            if !name.starts_with("sysinfo-") {
                log::warn!("closing a descriptor named {name:?} that systemd kept for us");
                continue;
            }
            if hung_up(&fd) {
                super::sdnotify::remove_fd(&name);
                continue;
            }
            self.held.insert(name, fd);
            n += 1;
        }
        if n > 0 {
            log::info!("took back {n} containers' seccomp descriptors from systemd's fd store");
        }
        if self.in_flight.is_none() {
            match InFlight::create() {
                Ok(t) => {
                    super::sdnotify::store_fd(protocol::INFLIGHT_NAME, t.fd());
                    self.in_flight = Some(t);
                }
                Err(e) => log::warn!(
                    "no in-flight table ({e}): a worker crash may leave a sysinfo call waiting"
                ),
            }
        }
    }

    /// Waits for a new worker's `ready`; kills it on failure or timeout.
    fn wait_ready(&self, c: Child) -> Result<Child> {
        let deadline = Instant::now() + START_TIMEOUT;
        let r = (|| -> Result<()> {
            let mut line = String::new();
            let mut r = BufReader::new(&c.ctl);
            c.ctl.set_read_timeout(Some(Duration::from_millis(100)))?;
            loop {
                match r.read_line(&mut line) {
                    Ok(0) => {}
                    Ok(_) if line.trim() == "ready" => return Ok(()),
                    Ok(_) => bail!("unexpected message {line:?}"),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => bail!("control socket: {e}"),
                }
                if let Ok(st) = waitpid(Pid::from_raw(c.pid), Some(WaitPidFlag::WNOHANG)) {
                    if st != WaitStatus::StillAlive {
                        bail!("worker {} exited before serving: {st:?}", c.pid);
                    }
                }
                if Instant::now() > deadline {
                    bail!("worker {} not ready after {START_TIMEOUT:?}", c.pid);
                }
            }
        })();
        match r {
            Ok(()) => {
                c.ctl.set_read_timeout(None)?;
                Ok(c)
            }
            Err(e) => {
                // Our own unreaped child: its pid cannot have been recycled.
                let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(c.pid), None);
                Err(e)
            }
        }
    }

    /// SIGHUP: replace the worker by one of the installed binary, then
    /// re-execute ourselves from it. On failure the old worker keeps serving.
    fn reload(&mut self) {
        super::sdnotify::notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        log::info!("SIGHUP: reloading from {}", self.exe.display());
        let done = self.try_reload();
        if let Err(e) = &done {
            log::error!(
                "reload failed: {e:#}; worker {} keeps serving",
                self.serving.as_ref().map_or(0, |c| c.pid)
            );
        }
        super::sdnotify::notify("READY=1");
    }

    fn try_reload(&mut self) -> Result<()> {
        let Some(old) = self.serving.as_mut() else {
            bail!("no worker is serving");
        };
        let file = std::fs::File::open(&self.exe)
            .with_context(|| format!("opening {}", self.exe.display()))?;
        // Above the fds a worker is given (the control socket becomes its
        // fd 3, and dup2 there must not replace the binary to run).
        let exe: OwnedFd = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
            .map(|fd| {
                // SAFETY: a fresh fd that nothing else owns.
                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
            })
            .context("dup")?;
        let old_pid = old.pid;
        if let Some(o) = self.serving.take() {
            // Every descriptor the old worker received so far, for the new.
            self.collect(&o);
            self.serving = Some(o);
        }
        let Some(old) = self.serving.as_mut() else {
            bail!("no worker is serving");
        };
        let state = match export(old) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "worker {} handed over no state ({e:#}); the successor starts afresh",
                    old.pid
                );
                String::new()
            }
        };
        let new = self
            .spawn(Mode::Successor, Some(&exe), Some(&state))
            .and_then(|c| self.wait_ready(c));
        let Some(old) = self.serving.take() else {
            bail!("no worker is serving");
        };
        let new = match new {
            Ok(n) => n,
            Err(e) => {
                let mut old = old;
                if let Err(e) = writeln!(old.ctl, "thaw") {
                    log::error!("worker {}: {e}", old.pid);
                }
                self.serving = Some(old);
                return Err(e);
            }
        };
        let mut old = old;
        if let Err(e) = writeln!(old.ctl, "drain") {
            log::warn!("worker {}: {e}", old.pid);
        }
        // It stops taking runtimes' connections and notifications; what it
        // took meanwhile goes to the new worker, which takes over then.
        if let Err(e) = wait_line(&old.ctl, "drained", EXPORT_TIMEOUT) {
            log::warn!("worker {old_pid} did not say it stopped answering sysinfo(2): {e:#}");
        }
        self.collect_into(&old, Some(&new));
        serve_seccomp(&new);
        self.draining.push(old.pid);
        self.serving = Some(new);
        log::info!(
            "worker {} replaced worker {}",
            self.serving.as_ref().map_or(0, |c| c.pid),
            old.pid
        );
        self.reexec(&exe);
        // Still the old image: the new worker serves all the same.
        log::info!("reload complete: worker replaced, supervisor unchanged");
        Ok(())
    }

    /// Runs the new binary in our pid; returns only if that fails.
    fn reexec(&self, exe: &OwnedFd) {
        let Some(c) = &self.serving else { return };
        let fd = c.ctl.as_raw_fd();
        // The control socket, the descriptor channel, the seccomp socket
        // and every container's descriptor must survive the exec.
        let mut keep: Vec<RawFd> = vec![fd, c.fds.as_raw_fd()];
        keep.extend(self.seccomp.as_ref().map(|l| l.as_raw_fd()));
        keep.extend(self.in_flight.as_ref().map(|t| t.fd().as_raw_fd()));
        keep.extend(self.held.values().map(|f| f.as_raw_fd()));
        let set_cloexec = |on: bool| {
            for k in &keep {
                // SAFETY: fcntl on descriptors we own.
                unsafe {
                    let fl = libc::fcntl(*k, libc::F_GETFD);
                    let fl = if on {
                        fl | libc::FD_CLOEXEC
                    } else {
                        fl & !libc::FD_CLOEXEC
                    };
                    libc::fcntl(*k, libc::F_SETFD, fl);
                }
            }
        };
        set_cloexec(false);
        let draining: Vec<String> = self.draining.iter().map(i32::to_string).collect();
        let held: Vec<String> = self
            .held
            .iter()
            .map(|(n, f)| format!("{}={}", hex(n.as_bytes()), f.as_raw_fd()))
            .collect();
        let state = format!(
            "exe={};serving={}:{fd}:{};draining={};seccomp={};inflight={};held={}",
            hex(self.exe.as_os_str().as_bytes()),
            c.pid,
            c.fds.as_raw_fd(),
            draining.join(","),
            self.seccomp.as_ref().map_or(-1, |l| l.as_raw_fd()),
            self.in_flight.as_ref().map_or(-1, |t| t.fd().as_raw_fd()),
            held.join(",")
        );
        let to_c = |b: Vec<u8>| CString::new(b).unwrap_or_default();
        let argv: Vec<CString> = self
            .args
            .iter()
            .map(|a| to_c(a.clone().into_vec()))
            .collect();
        let mut envp: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k != ENV_STATE)
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                to_c(kv)
            })
            .collect();
        envp.push(to_c(format!("{ENV_STATE}={state}").into_bytes()));
        let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_p.push(std::ptr::null());
        let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_p.push(std::ptr::null());
        // SAFETY: NULL-terminated arrays of NUL-terminated strings that
        // outlive the call; on success it does not return.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                exe.as_raw_fd(),
                c"".as_ptr(),
                argv_p.as_ptr(),
                envp_p.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
        }
        log::error!(
            "re-executing {}: {}",
            self.exe.display(),
            std::io::Error::last_os_error()
        );
        set_cloexec(true);
    }

    /// Picks up the workers of the image we were re-executed from.
    fn resume(&mut self, state: &str) -> Result<()> {
        for part in state.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k {
                "exe" => {
                    if let Some(b) = unhex(v) {
                        self.exe = PathBuf::from(OsString::from_vec(b));
                    }
                }
                "serving" => {
                    let mut f = v.split(':');
                    let pid = f.next().context("serving=pid:fd:fd")?;
                    let fd: i32 = f
                        .next()
                        .context("control fd")?
                        .parse()
                        .context("control fd")?;
                    let ctl = unsafe_adopt::<UnixStream>(fd);
                    // An image of before the descriptor channel passes none:
                    // a channel nobody writes to stands in.
                    let fds = match f.next().and_then(|n| n.parse().ok()) {
                        Some(n) => unsafe_adopt::<OwnedFd>(n),
                        None => protocol::channel().context("descriptor channel")?.0,
                    };
                    self.serving = Some(Child {
                        pid: pid.parse().context("serving pid")?,
                        ctl,
                        fds,
                    });
                }
                "seccomp" => {
                    if let Ok(n) = v.parse::<i32>() {
                        if n >= 0 {
                            self.seccomp = Some(unsafe_adopt::<OwnedFd>(n));
                        }
                    }
                }
                "inflight" => {
                    if let Ok(n) = v.parse::<i32>() {
                        if n >= 0 {
                            match InFlight::map(unsafe_adopt::<OwnedFd>(n)) {
                                Ok(t) => self.in_flight = Some(t),
                                Err(e) => log::warn!("the in-flight table: {e}"),
                            }
                        }
                    }
                }
                "held" => {
                    for item in v.split(',').filter(|i| !i.is_empty()) {
                        let Some((name, n)) = item.split_once('=') else {
                            continue;
                        };
                        let (Some(name), Ok(n)) = (unhex(name), n.parse::<i32>()) else {
                            continue;
                        };
                        self.held.insert(
                            String::from_utf8_lossy(&name).into_owned(),
                            unsafe_adopt::<OwnedFd>(n),
                        );
                    }
                }
                "draining" => {
                    self.draining = v.split(',').filter_map(|p| p.parse().ok()).collect();
                }
                _ => {}
            }
        }
        if self.serving.is_none() {
            bail!("{ENV_STATE} names no serving worker");
        }
        Ok(())
    }

    /// Collects exited workers; restarts the serving one. Only workers are
    /// waited for, by pid: the sd-notify thread reaps its own probes.
    fn reap(&mut self) {
        let mut workers = self.draining.clone();
        workers.extend(self.serving.as_ref().map(|c| c.pid));
        for pid in workers {
            let st = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => continue,
                Ok(st) => st,
            };
            if self.serving.as_ref().is_some_and(|c| c.pid == pid) {
                log::error!("worker {pid} died ({st:?}); starting another");
                // What it sent before it died is still on the way;
                // what it took and did not answer is answered now.
                if let Some(c) = self.serving.take() {
                    self.collect(&c);
                }
                self.rescue();
                self.respawn_at = Some(Instant::now());
            } else if let Some(i) = self.draining.iter().position(|p| *p == pid) {
                self.draining.remove(i);
                log::info!("replaced worker {pid} finished ({st:?})");
            }
        }
        if self.serving.is_none() && self.respawn_at.is_some_and(|t| Instant::now() >= t) {
            match self
                .spawn(Mode::Fresh, None, None)
                .and_then(|c| self.wait_ready(c))
            {
                Ok(c) => {
                    log::info!("worker {} serves again", c.pid);
                    serve_seccomp(&c);
                    self.serving = Some(c);
                    self.respawn_at = None;
                }
                Err(e) => {
                    log::error!("restarting the worker: {e:#}; trying again in 1 s");
                    self.respawn_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }

    /// SIGTERM/SIGINT: the serving worker unmounts and exits; replaced ones
    /// just exit. Waits up to 10 s, then kills what is left.
    fn stop(&mut self) {
        let mut pids: Vec<i32> = self.draining.clone();
        pids.extend(self.serving.as_ref().map(|c| c.pid));
        for p in &pids {
            let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = pids;
        while !left.is_empty() {
            left.retain(|p| {
                matches!(
                    waitpid(Pid::from_raw(*p), Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive)
                )
            });
            if Instant::now() > deadline {
                for p in &left {
                    log::warn!("worker {p} ignored SIGTERM for 10 s; killing it");
                    let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
                    let _ = waitpid(Pid::from_raw(*p), None);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A descriptor the image before us left open for us across the exec,
/// made close-on-exec again.
fn unsafe_adopt<T: std::os::fd::FromRawFd + std::os::fd::AsFd>(fd: RawFd) -> T {
    // SAFETY: the fd was left open for us across the exec by the image
    // before us, named in ENV_STATE, and nothing else owns it.
    let owned = unsafe { T::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        owned.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    owned
}

/// Reads lines of `ctl` until `want`, for at most `timeout`.
fn wait_line(ctl: &UnixStream, want: &str, timeout: Duration) -> Result<()> {
    ctl.set_read_timeout(Some(timeout))?;
    let r = (|| -> Result<()> {
        let mut r = BufReader::new(ctl);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                bail!("the control socket closed");
            }
            if line.trim() == want {
                return Ok(());
            }
        }
    })();
    ctl.set_read_timeout(None)?;
    r
}

/// Asks a worker for its state (which then holds still until `thaw` or
/// `drain`).
fn export(c: &mut Child) -> Result<String> {
    writeln!(c.ctl, "export")?;
    c.ctl.set_read_timeout(Some(EXPORT_TIMEOUT))?;
    let r = (|| -> Result<String> {
        let mut r = BufReader::new(&c.ctl);
        let mut line = String::new();
        r.read_line(&mut line)?;
        let n: usize = line
            .trim()
            .strip_prefix("state ")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unexpected reply {line:?}"))?;
        let mut buf = vec![0; n];
        r.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    })();
    c.ctl.set_read_timeout(None)?;
    r
}

/// A sealed-size anonymous file holding `s`, read from the start.
fn memfd_with(s: &str) -> Result<std::fs::File> {
    let fd =
        nix::sys::memfd::memfd_create(c"proclens-state", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .context("memfd_create")?;
    let mut f = std::fs::File::from(fd);
    f.write_all(s.as_bytes())?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
    Ok(f)
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
