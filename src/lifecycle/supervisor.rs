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
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::{CString, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
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

pub fn run(mountpoint: &Path, opts: Options) -> Result<()> {
    let mp: PathBuf = std::path::absolute(mountpoint)
        .with_context(|| format!("resolving {}", mountpoint.display()))?;
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

    let mut sup = Supervisor {
        exe: installed_path()?,
        args: std::env::args_os().collect(),
        serving: None,
        draining: Vec::new(),
        respawn_at: None,
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
            let child = sup
                .spawn(Mode::Fresh, None, None)
                .and_then(|c| sup.wait_ready(c))
                .context("the serving process failed to start")?;
            sup.serving = Some(child);
        }
    }
    // systemd Type=notify: READY=1 once the mount answers, then the watchdog.
    super::sdnotify::ready_when_serving(&mp);

    loop {
        match wait_signal(&signals, Duration::from_secs(1)) {
            Some(Signal::SIGHUP) => sup.reload(),
            Some(Signal::SIGCHLD) | None => {}
            Some(sig) => {
                super::sdnotify::stopping();
                log::info!("{sig}: stopping; unmounting {}", mp.display());
                sup.stop();
                return Ok(());
            }
        }
        sup.reap();
    }
}

/// sigtimedwait(2): the next of `set`, or None after `timeout`.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid sigset and timespec; no siginfo wanted.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    Signal::try_from(n).ok()
}

impl Supervisor {
    /// Starts a worker of `exe` (default: ours), with `state` on its stdin.
    fn spawn(&self, mode: Mode, exe: Option<&OwnedFd>, state: Option<&str>) -> Result<Child> {
        let (ours, theirs) = UnixStream::pair().context("control socket")?;
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
            .env_remove(ENV_STATE);
        cmd.stdin(match state {
            Some(s) => Stdio::from(memfd_with(s)?),
            None => Stdio::null(),
        });
        let fd = theirs.as_raw_fd();
        // SAFETY: between fork and exec only dup2/fcntl, async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if fd == protocol::CTL_FD {
                    let fl = libc::fcntl(fd, libc::F_GETFD);
                    libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
                } else if libc::dup2(fd, protocol::CTL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Child {
            pid: child.id() as i32,
            ctl: ours,
        })
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
        // The control socket must survive the exec.
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
        }
        let draining: Vec<String> = self.draining.iter().map(i32::to_string).collect();
        let state = format!(
            "exe={};serving={}:{fd};draining={}",
            hex(self.exe.as_os_str().as_bytes()),
            c.pid,
            draining.join(",")
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
        // SAFETY: as above.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, fl | libc::FD_CLOEXEC);
        }
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
                    let (pid, fd) = v.split_once(':').context("serving=pid:fd")?;
                    let fd: i32 = fd.parse().context("control fd")?;
                    // SAFETY: the fd was left open for us across the exec
                    // by the image before us, and nothing else owns it.
                    let ctl = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                    let _ = nix::fcntl::fcntl(
                        &ctl,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                    );
                    self.serving = Some(Child {
                        pid: pid.parse().context("serving pid")?,
                        ctl,
                    });
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

    /// Collects exited workers; restarts the serving one.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => {
                    let Some(pid) = st.pid().map(Pid::as_raw) else {
                        break;
                    };
                    if self.serving.as_ref().is_some_and(|c| c.pid == pid) {
                        log::error!("worker {pid} died ({st:?}); starting another");
                        self.serving = None;
                        self.respawn_at = Some(Instant::now());
                    } else if let Some(i) = self.draining.iter().position(|p| *p == pid) {
                        self.draining.remove(i);
                        log::info!("replaced worker {pid} finished ({st:?})");
                    }
                }
            }
        }
        if self.serving.is_none() && self.respawn_at.is_some_and(|t| Instant::now() >= t) {
            match self
                .spawn(Mode::Fresh, None, None)
                .and_then(|c| self.wait_ready(c))
            {
                Ok(c) => {
                    log::info!("worker {} serves again", c.pid);
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
