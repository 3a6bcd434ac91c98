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

    /// The host's memory: from `sysinfo(2)` on `/` (the daemon runs on
    /// the host, whose call is never intercepted), from the tree's
    /// `proc/meminfo` below any other root.
    pub fn mem(&self) -> Result<HostMem, Error> {
        if self.root == Path::new("/") {
            // SAFETY: sysinfo writes into a struct we own.
            let mut s: libc::sysinfo = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::sysinfo(&mut s) } == 0 {
                return Ok(HostMem::from_sysinfo(&s));
            }
        }
        Ok(HostMem::scan(&self.read("/proc/meminfo")?))
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

/// The host's memory as /proc/meminfo gives it, in kB: what a container's
/// meminfo is bounded by, and what `sysinfo(2)` answers where the
/// container has no memory controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostMem {
    /// `None` when the host's file has no MemTotal line.
    pub mem_total: Option<u64>,
    pub mem_free: u64,
    pub buffers: u64,
    pub shmem: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl HostMem {
    /// One pass over the text of /proc/meminfo for the lines needed; it
    /// stops once it has seen all six (the kernel prints them in the first
    /// third of the file).
    pub fn scan(meminfo: &str) -> HostMem {
        let mut h = HostMem::default();
        let num = |rest: &str| rest.split_whitespace().next().and_then(|v| v.parse().ok());
        let mut seen = 0u8;
        for l in meminfo.lines() {
            let Some((key, rest)) = l.split_once(':') else {
                continue;
            };
            let (bit, field) = match key {
                "MemTotal" => {
                    h.mem_total = num(rest);
                    seen |= 1;
                    continue;
                }
                "MemFree" => (2, &mut h.mem_free),
                "Buffers" => (4, &mut h.buffers),
                "Shmem" => (8, &mut h.shmem),
                "SwapTotal" => (16, &mut h.swap_total),
                "SwapFree" => (32, &mut h.swap_free),
                _ => continue,
            };
            *field = num(rest).unwrap_or(0);
            seen |= bit;
            if seen == 63 {
                break;
            }
        }
        h
    }

    /// The same numbers from the kernel's `struct sysinfo`, which fills
    /// both from the same counters (mm/show_mem.c si_meminfo, and
    /// si_swapinfo): one system call instead of rendering the whole file.
    fn from_sysinfo(s: &libc::sysinfo) -> HostMem {
        let kb = |v: u64| v * u64::from(s.mem_unit.max(1)) / 1024;
        HostMem {
            mem_total: Some(kb(s.totalram)),
            mem_free: kb(s.freeram),
            buffers: kb(s.bufferram),
            shmem: kb(s.sharedram),
            swap_total: kb(s.totalswap),
            swap_free: kb(s.freeswap),
        }
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
    /// The system call and the file agree, on this machine's kernel (the
    /// totals; what is free moves between the two reads).
    #[test]
    fn the_hosts_memory_from_sysinfo_is_its_meminfo() {
        let host = super::Host::new(std::path::Path::new("/"), 4);
        let call = host.mem().expect("sysinfo");
        let file =
            super::HostMem::scan(&std::fs::read_to_string("/proc/meminfo").expect("meminfo"));
        assert!(file.mem_total.is_some_and(|t| t > 0));
        assert_eq!(call.mem_total, file.mem_total);
        assert_eq!(call.swap_total, file.swap_total);
        let near = |a: u64, b: u64| a.abs_diff(b) <= b / 10 + 4096;
        assert!(near(call.mem_free, file.mem_free), "{call:?} {file:?}");
        assert!(near(call.shmem, file.shmem), "{call:?} {file:?}");
        assert!(near(call.swap_free, file.swap_free), "{call:?} {file:?}");
    }

    #[test]
    fn a_captured_meminfo_gives_every_field() {
        let text = "MemTotal:       24731872 kB\nMemFree:         1000 kB\nBuffers:   7 kB\nCached: 9 kB\nSwapTotal: 5 kB\nSwapFree: 3 kB\nShmem: 11 kB\n";
        let h = super::HostMem::scan(text);
        assert_eq!(
            (
                h.mem_total,
                h.mem_free,
                h.buffers,
                h.shmem,
                h.swap_total,
                h.swap_free
            ),
            (Some(24731872), 1000, 7, 11, 5, 3)
        );
    }

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
