//! The files proclens renders, by name and by the host file each stands in
//! for: the vocabulary the view, the front ends and the counters share.

use crate::source::cgroup::Resource;

/// The files proclens renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VFile {
    Meminfo,
    Cpuinfo,
    Stat,
    Loadavg,
    Uptime,
    Diskstats,
    Swaps,
    CpuOnline,
    CpuPossible,
    CpuPresent,
    Vmstat,
    PressureCpu,
    PressureMemory,
    PressureIo,
}

impl VFile {
    pub const PROC: [VFile; 8] = [
        VFile::Meminfo,
        VFile::Cpuinfo,
        VFile::Stat,
        VFile::Loadavg,
        VFile::Uptime,
        VFile::Diskstats,
        VFile::Swaps,
        VFile::Vmstat,
    ];
    pub const CPU: [VFile; 3] = [VFile::CpuOnline, VFile::CpuPossible, VFile::CpuPresent];
    /// In `proc/pressure/`.
    pub const PRESSURE: [VFile; 3] = [VFile::PressureCpu, VFile::PressureMemory, VFile::PressureIo];
    /// In the order of their inode numbers: new files go at the end.
    pub const ALL: [VFile; 14] = [
        VFile::Meminfo,
        VFile::Cpuinfo,
        VFile::Stat,
        VFile::Loadavg,
        VFile::Uptime,
        VFile::Diskstats,
        VFile::Swaps,
        VFile::CpuOnline,
        VFile::CpuPossible,
        VFile::CpuPresent,
        VFile::Vmstat,
        VFile::PressureCpu,
        VFile::PressureMemory,
        VFile::PressureIo,
    ];

    /// The name in its directory.
    pub fn name(self) -> &'static str {
        match self {
            VFile::Meminfo => "meminfo",
            VFile::Cpuinfo => "cpuinfo",
            VFile::Stat => "stat",
            VFile::Loadavg => "loadavg",
            VFile::Uptime => "uptime",
            VFile::Diskstats => "diskstats",
            VFile::Swaps => "swaps",
            VFile::CpuOnline => "online",
            VFile::CpuPossible => "possible",
            VFile::CpuPresent => "present",
            VFile::Vmstat => "vmstat",
            VFile::PressureCpu => "cpu",
            VFile::PressureMemory => "memory",
            VFile::PressureIo => "io",
        }
    }

    /// The resource of a pressure file.
    pub fn pressure(self) -> Option<Resource> {
        match self {
            VFile::PressureCpu => Some(Resource::Cpu),
            VFile::PressureMemory => Some(Resource::Memory),
            VFile::PressureIo => Some(Resource::Io),
            _ => None,
        }
    }

    /// The host file it stands in for.
    pub fn host_path(self) -> String {
        if let Some(r) = self.pressure() {
            r.proc_path().to_owned()
        } else if VFile::CPU.contains(&self) {
            format!("/sys/devices/system/cpu/{}", self.name())
        } else {
            format!("/proc/{}", self.name())
        }
    }

    /// Its name for a person and for `proclens show`: `meminfo`,
    /// `cpu/online`, `pressure/cpu`.
    pub fn label(self) -> String {
        if VFile::CPU.contains(&self) {
            format!("cpu/{}", self.name())
        } else if VFile::PRESSURE.contains(&self) {
            format!("pressure/{}", self.name())
        } else {
            self.name().to_owned()
        }
    }

    /// Names accepted by `proclens show`.
    pub fn from_cli(s: &str) -> Option<VFile> {
        VFile::ALL.into_iter().find(|f| f.label() == s)
    }
}
