//! cgroup discovery and readers. Everything here takes a filesystem root
//! (`/` in production, a captured fixture tree in tests).

pub mod mounts;
pub mod parse;
mod placement;
mod read;

pub use mounts::{Controller, Membership, Mounts};
pub use parse::{DevNum, IoCounters};
pub use placement::{Dir, Placement, Version};
pub use read::{CpuLimits, CpuUsage, Error, MemCounters, MemStat, Memory, Swap};

use crate::source::kept::Dirs;
use read::Files;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A resource the kernel accounts pressure stalls for
/// (Documentation/accounting/psi.rst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Cpu,
    Memory,
    Io,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Cpu, Resource::Memory, Resource::Io];

    /// Its name in `/proc/pressure/`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Io => "io",
        }
    }

    /// Its file in a cgroup of the unified hierarchy.
    pub fn cgroup_file(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu.pressure",
            Resource::Memory => "memory.pressure",
            Resource::Io => "io.pressure",
        }
    }

    /// The host's file, the system-wide stalls.
    pub fn proc_path(self) -> &'static str {
        match self {
            Resource::Cpu => "/proc/pressure/cpu",
            Resource::Memory => "/proc/pressure/memory",
            Resource::Io => "/proc/pressure/io",
        }
    }
}

/// The host's cgroup layout: which controller is on which hierarchy.
#[derive(Debug)]
pub struct Cgroups {
    root: PathBuf,
    mounts: Mounts,
    /// Every cgroup directory read, kept open (`kept.rs`).
    dirs: Dirs,
    /// Controllers enabled on the unified hierarchy (its root's cgroup.controllers).
    v2_controllers: BTreeSet<String>,
}

/// Joins an absolute path below a filesystem root.
pub fn under(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").unwrap_or(abs))
}

impl Cgroups {
    /// Reads `<root>/proc/self/mountinfo` and the unified root's controllers.
    /// At most `max_fds` descriptors of cgroup directories and their files
    /// are kept open.
    pub fn discover(root: &Path, max_fds: usize) -> Result<Self, Error> {
        let path = root.join("proc/self/mountinfo");
        let text = crate::source::kfile::read_text(&path).map_err(|error| Error::Read {
            path: path.clone(),
            error,
        })?;
        let mounts =
            mounts::parse_mountinfo(&text).map_err(|error| Error::Parse { path, error })?;
        Self::new(root, mounts, max_fds)
    }

    pub fn new(root: &Path, mounts: Mounts, max_fds: usize) -> Result<Self, Error> {
        let dirs = Dirs::new(max_fds, "cgroup.procs");
        let mut v2_controllers = BTreeSet::new();
        if let Some(v2) = &mounts.v2 {
            let top = under(root, &v2.mountpoint);
            if let Some(text) = Files(&dirs).text_opt(&top, "cgroup.controllers")? {
                v2_controllers = text.split_whitespace().map(str::to_owned).collect();
            }
        }
        Ok(Cgroups {
            root: root.to_owned(),
            mounts,
            dirs,
            v2_controllers,
        })
    }

    /// Closes the kept directories of cgroups that are gone; returns how
    /// many stay open.
    pub fn prune(&self) -> usize {
        self.dirs.prune()
    }

    /// Descriptors kept open for cgroup directories and their files.
    pub fn kept_descriptors(&self) -> usize {
        self.dirs.descriptors()
    }

    /// The inode of a cgroup directory, through its kept descriptor: a
    /// cgroup created again at the same path has another.
    pub fn ino(&self, dir: &Path) -> Result<u64, Error> {
        self.dirs
            .get(dir)
            .map(|d| d.ino())
            .map_err(|error| Error::Read {
                path: dir.to_owned(),
                error,
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A human summary for the startup log line.
    pub fn describe(&self) -> String {
        let v1: Vec<&str> = self.mounts.v1.keys().map(|c| c.v1_name()).collect();
        let v2: Vec<&str> = self.v2_controllers.iter().map(String::as_str).collect();
        format!(
            "cgroup v1 controllers [{}], v2 controllers [{}]",
            v1.join(" "),
            v2.join(" ")
        )
    }

    /// A controller sits on v1 when a v1 hierarchy has it, else on v2 when
    /// the unified hierarchy has it enabled, else nowhere (unlimited).
    pub fn locate(&self, m: &Membership) -> Placement {
        let mut dirs = BTreeMap::new();
        for c in Controller::ALL {
            let dir = if let Some(mount) = self.mounts.v1.get(&c) {
                m.v1.get(&c)
                    .and_then(|p| mounts::cgroup_dir(mount, p))
                    .map(|p| Dir {
                        version: Version::V1,
                        path: under(&self.root, &p),
                        top: under(&self.root, &mount.mountpoint),
                    })
            } else {
                match (&self.mounts.v2, &m.v2) {
                    (Some(mount), Some(p)) if self.v2_controllers.contains(c.v2_name()) => {
                        mounts::cgroup_dir(mount, p).map(|p| Dir {
                            version: Version::V2,
                            path: under(&self.root, &p),
                            top: under(&self.root, &mount.mountpoint),
                        })
                    }
                    _ => None,
                }
            };
            if let Some(d) = dir {
                dirs.insert(c, d);
            }
        }
        Placement { dirs }
    }

    /// The cgroup of `m` in the unified hierarchy, whatever controllers it
    /// carries: the kernel accounts a task's pressure stalls to its cgroup
    /// there (kernel/sched/psi.c, task_dfl_cgroup), on a hybrid host too,
    /// where the unified hierarchy has no controller. `None` without a
    /// cgroup2 mount or when the path is outside what it shows.
    pub fn unified(&self, m: &Membership) -> Option<Dir> {
        let mount = self.mounts.v2.as_ref()?;
        let path = mounts::cgroup_dir(mount, m.v2.as_deref()?)?;
        Some(Dir {
            version: Version::V2,
            path: under(&self.root, &path),
            top: under(&self.root, &mount.mountpoint),
        })
    }

    /// The text of a unified cgroup's pressure file for `r`; `None` when
    /// it has none (a kernel without PSI, or PSI switched off for it).
    pub fn pressure(&self, dir: &Dir, r: Resource) -> Result<Option<String>, Error> {
        Files(&self.dirs).text_opt(&dir.path, r.cgroup_file())
    }

    /// The membership a process in cgroup `path` has (same path on every
    /// hierarchy), for `proclens show --cgroup`.
    pub fn membership_of_path(&self, path: &str) -> Membership {
        Membership {
            v2: self.mounts.v2.as_ref().map(|_| path.to_owned()),
            v1: self
                .mounts
                .v1
                .keys()
                .map(|c| (*c, path.to_owned()))
                .collect(),
        }
    }

    /// `None` without a memory controller, or in the root cgroup: that is
    /// the host itself (and v2 has no memory.current there).
    pub fn memory(&self, p: &Placement) -> Result<Option<Memory>, Error> {
        p.get(Controller::Memory)
            .filter(|d| !d.is_root())
            .map(|d| read::memory(Files(&self.dirs), d))
            .transpose()
    }

    /// [`Cgroups::memory`] without the `memory.stat` breakdown (all its
    /// fields `None`): limits, usage and swap only.
    pub fn memory_usage(&self, p: &Placement) -> Result<Option<Memory>, Error> {
        p.get(Controller::Memory)
            .filter(|d| !d.is_root())
            .map(|d| read::memory_usage(Files(&self.dirs), d))
            .transpose()
    }

    pub fn cpu_limits(&self, p: &Placement, online: &[u32]) -> Result<CpuLimits, Error> {
        read::cpu_limits(Files(&self.dirs), p, online)
    }

    pub fn cpu_usage(&self, p: &Placement) -> Result<Option<CpuUsage>, Error> {
        read::cpu_usage(Files(&self.dirs), p)
    }

    /// [`Cgroups::memory`] and every counter of the same `memory.stat`,
    /// read once, for `/proc/vmstat`.
    pub fn memory_counters(&self, p: &Placement) -> Result<Option<(Memory, MemCounters)>, Error> {
        p.get(Controller::Memory)
            .filter(|d| !d.is_root())
            .map(|d| read::memory_counters(Files(&self.dirs), d))
            .transpose()
    }

    /// Nanoseconds the cgroup's own CFS quota held its tasks back (summed
    /// over CPUs); 0 without a cpu controller.
    pub fn throttled(&self, p: &Placement) -> Result<u64, Error> {
        match p.get(Controller::Cpu).filter(|d| !d.is_root()) {
            Some(d) => read::throttled(Files(&self.dirs), d),
            None => Ok(0),
        }
    }

    /// `None` without an I/O controller, or in the root cgroup (the host:
    /// v2 has no io.stat there).
    pub fn io(&self, p: &Placement) -> Result<Option<BTreeMap<DevNum, IoCounters>>, Error> {
        p.get(Controller::Blkio)
            .filter(|d| !d.is_root())
            .map(|d| read::io(Files(&self.dirs), d))
            .transpose()
    }

    /// How many tasks the container's pids controller counts (`None`
    /// without one, or for the root cgroup).
    pub fn task_count(&self, p: &Placement) -> Result<Option<u64>, Error> {
        match p.get(Controller::Pids).filter(|d| !d.is_root()) {
            Some(d) => read::task_count(Files(&self.dirs), d),
            None => Ok(None),
        }
    }

    /// Thread ids of every task in the cgroup and its descendants.
    pub fn tasks(&self, dir: &Dir) -> Result<Vec<u32>, Error> {
        read::tasks(Files(&self.dirs), dir)
    }
}
