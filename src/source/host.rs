//! The host's own /proc and /sys files and clocks, read below a root.

use crate::source::kept::Files;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {error}")]
pub struct Error {
    pub path: PathBuf,
    pub error: std::io::Error,
}

/// Reads host files below `root` (`/` in production, a fixture in tests),
/// each through a descriptor kept open (`kept.rs`).
#[derive(Debug)]
pub struct Host {
    root: PathBuf,
    files: Files,
}

impl Host {
    /// At most `max_files` host files are kept open.
    pub fn new(root: &Path, max_files: usize) -> Host {
        Host {
            root: root.to_owned(),
            files: Files::new(max_files),
        }
    }

    /// Closes what nobody read for a while.
    pub fn prune(&self) -> usize {
        self.files.prune()
    }

    /// Host files kept open.
    pub fn kept_descriptors(&self) -> usize {
        self.files.len()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file by its absolute path, e.g. "/proc/meminfo".
    pub fn read(&self, abs: &str) -> Result<String, Error> {
        let path = || self.root.join(abs.trim_start_matches('/'));
        self.files.read_text(abs, path).map_err(|error| Error {
            path: path(),
            error,
        })
    }

    /// Like [`Host::read`]; `None` when the file does not exist.
    pub fn read_opt(&self, abs: &str) -> Result<Option<String>, Error> {
        match self.read(abs) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Online CPUs from `/sys/devices/system/cpu/online`.
    pub fn online_cpus(&self) -> Result<Vec<u32>, Error> {
        let abs = "/sys/devices/system/cpu/online";
        let text = self.read(abs)?;
        crate::source::cgroup::parse::cpu_list(&text).map_err(|e| Error {
            path: self.root.join(abs.trim_start_matches('/')),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.0),
        })
    }
}

/// `CLOCK_BOOTTIME` in nanoseconds: the clock /proc/uptime and process
/// start times (`/proc/<pid>/stat` field 22) are measured on.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_BOOTTIME
    // exists on every Linux since 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The size of a page, the unit of /proc/vmstat's page counts.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// Clock ticks per second (USER_HZ) that /proc counts CPU time in.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}
