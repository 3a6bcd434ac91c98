//! The files proclens renders, by name and by the host file each stands in
//! for: the vocabulary the view, the front ends and the counters share.

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
}

impl VFile {
    pub const PROC: [VFile; 7] = [
        VFile::Meminfo,
        VFile::Cpuinfo,
        VFile::Stat,
        VFile::Loadavg,
        VFile::Uptime,
        VFile::Diskstats,
        VFile::Swaps,
    ];
    pub const CPU: [VFile; 3] = [VFile::CpuOnline, VFile::CpuPossible, VFile::CpuPresent];
    pub const ALL: [VFile; 10] = [
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
        }
    }

    /// The host file it stands in for.
    pub fn host_path(self) -> String {
        if VFile::CPU.contains(&self) {
            format!("/sys/devices/system/cpu/{}", self.name())
        } else {
            format!("/proc/{}", self.name())
        }
    }

    /// Names accepted by `proclens show`.
    pub fn from_cli(s: &str) -> Option<VFile> {
        VFile::PROC.into_iter().find(|f| f.name() == s).or_else(|| {
            VFile::CPU
                .into_iter()
                .find(|f| format!("cpu/{}", f.name()) == s)
        })
    }
}
