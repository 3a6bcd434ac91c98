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

    /// `CLOCK_BOOTTIME` in nanoseconds as the tree below the root tells
    /// it: the live clock on `/`; for a captured tree the moment of its
    /// capture, its `proc/uptime` (the same clock, in centiseconds), so
    /// that what a capture renders does not depend on how long this
    /// machine has been up. A tree without that file gets the live clock.
    pub fn boottime_ns(&self) -> u64 {
        if self.root != Path::new("/") {
            if let Ok(Some(t)) = self.read_opt("/proc/uptime") {
                if let Some(ns) = uptime_ns(&t) {
                    return ns;
                }
            }
        }
        boottime_ns()
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

/// The first field of `/proc/uptime` ("5987.97 1042.90"), in nanoseconds.
fn uptime_ns(text: &str) -> Option<u64> {
    let (secs, frac) = text.split_whitespace().next()?.split_once('.')?;
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(secs.parse::<u64>().ok()? * 1_000_000_000 + frac.parse::<u64>().ok()?)
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

#[cfg(test)]
mod tests {
    #[test]
    fn uptime_is_read_to_the_nanosecond() {
        assert_eq!(
            super::uptime_ns("5987.97 1042.90\n"),
            Some(5_987_970_000_000)
        );
        assert_eq!(super::uptime_ns("12.5 3.00"), Some(12_500_000_000));
        assert_eq!(super::uptime_ns("12 3"), None);
        assert_eq!(super::uptime_ns(""), None);
    }
}
