//! What the cases share: the container every engine is asked for, a
//! running container whatever started it, and running engine commands
//! with a deadline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::{disk_of, host_online_cpus, run_with_timeout, BlockDev, MIB};

/// How long one engine command (a run, an exec, a removal) may take.
/// Minutes, not seconds: under qemu's TCG a docker run takes several.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(180);

/// The container every case asks its engine for: 256 MiB, half a CPU of
/// quota, pinned to the host's last CPU (so the daemon must renumber it
/// to cpu0), I/O accounted on the disk holding the engines' state.
#[derive(Debug, Clone)]
pub struct Spec {
    pub memory: u64,
    pub quota_us: u64,
    pub period_us: u64,
    pub cpu: u32,
    pub disk: BlockDev,
}

impl Spec {
    pub fn standard(state: &Path) -> Spec {
        Spec {
            memory: 256 * MIB,
            quota_us: 50_000,
            period_us: 100_000,
            cpu: *host_online_cpus().iter().next_back().expect("a CPU"),
            disk: disk_of(state),
        }
    }

    /// `/dev/<disk>`, for `--device-write-bps`.
    pub fn disk_path(&self) -> String {
        format!("/dev/{}", self.disk.name)
    }
}

/// A running container. Drop removes it through its engine.
pub trait Running {
    /// Host pid of the container's init.
    fn init_pid(&self) -> i32;
    /// Runs `sh -c script` inside (docker exec, podman exec, ctr task
    /// exec, lxc-attach).
    fn exec(&self, script: &str) -> Output;

    /// [`Running::exec`], asserting success; its stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.exec(script);
        assert!(
            out.status.success(),
            "`{script}` in the container failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs an engine command, asserting success; its stdout, trimmed.
pub fn engine(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, ENGINE_TIMEOUT);
    assert!(
        out.status.success(),
        "{desc} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs an engine command in a Drop: never panics, says what failed.
pub fn quietly(cmd: &mut Command) {
    let desc = format!("{cmd:?}");
    match crate::common::try_run_with_timeout(cmd, ENGINE_TIMEOUT) {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "engines cleanup: {desc}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("engines cleanup: {e}"),
    }
}

/// Waits until `ready` holds, or fails saying `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon the test started (dockerd, containerd): SIGTERM by the pid it
/// was given, then SIGKILL if it does not exit.
#[derive(Debug)]
pub struct Started {
    pub child: Child,
    pub name: &'static str,
    pub log: PathBuf,
}

impl Started {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the daemon's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.log_text());
        }
    }

    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Our own unreaped child: its pid cannot have been recycled.
        let pid = Pid::from_raw(self.child.id() as i32);
        for (sig, wait) in [(Signal::SIGTERM, 30), (Signal::SIGKILL, 10)] {
            let _ = kill(pid, sig);
            let deadline = Instant::now() + Duration::from_secs(wait);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            eprintln!("engines cleanup: {} ignored {sig} for {wait} s", self.name);
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes (other than this one) whose command line names `path`: what
/// an engine still runs from a state directory of ours.
pub fn processes_naming(path: &Path) -> Vec<(i32, String)> {
    let needle = path.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then_some((pid, cmd))
        })
        .collect()
}
