//! One pure function per virtual file: host text and cgroup numbers in, file
//! text out. Lines proclens does not virtualize pass through unchanged, in
//! the host's order and layout (procps, sysstat, htop and psutil parse these
//! files strictly).

pub mod cpuinfo;
pub mod diskstats;
pub mod loadavg;
pub mod meminfo;
pub mod pressure;
pub mod stat;
pub mod swaps;
pub mod sysfs;
pub mod sysinfo;
pub mod uptime;
pub mod vmstat;

/// Why a host file could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);
