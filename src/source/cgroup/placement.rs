//! Where one cgroup's files are: per controller, its directory and the
//! hierarchy it belongs to.

use super::mounts::Controller;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// cgroup v1 or the unified (v2) hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

/// Where one controller's files are for one cgroup: its directory and the
/// hierarchy's mount point, where the walk up to the ancestors stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dir {
    pub version: Version,
    pub path: PathBuf,
    pub top: PathBuf,
}

impl Dir {
    /// The hierarchy's root cgroup.
    pub fn is_root(&self) -> bool {
        self.path == self.top
    }

    /// This cgroup and its ancestors below the hierarchy root, leaf first:
    /// where limits can be. The root holds none (the kernel refuses a
    /// memory limit or a CFS quota there, and v2 has no memory.max or
    /// cpu.max at its root), so its files are not read at all.
    pub fn chain(&self) -> impl Iterator<Item = &Path> {
        // Ancestors end at separators, so once the path is known to be
        // inside the top, "below the top" is "longer than it": no walk of
        // components per ancestor.
        let inside = self.path.starts_with(&self.top);
        let top_len = self.top.as_os_str().len();
        self.path
            .ancestors()
            .take_while(move |p| inside && p.as_os_str().len() > top_len)
    }
}

/// The controller directories of one cgroup membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    pub dirs: BTreeMap<Controller, Dir>,
}

impl Placement {
    pub fn get(&self, c: Controller) -> Option<&Dir> {
        self.dirs.get(&c)
    }

    /// The directory whose task list describes the container: pids, then cpu,
    /// then memory (on v2 they are all the same directory).
    pub fn tasks_dir(&self) -> Option<&Dir> {
        [
            Controller::Pids,
            Controller::Cpuacct,
            Controller::Cpu,
            Controller::Memory,
        ]
        .iter()
        .find_map(|c| self.get(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &str, top: &str) -> Dir {
        Dir {
            version: Version::V1,
            path: PathBuf::from(path),
            top: PathBuf::from(top),
        }
    }

    fn chain(d: &Dir) -> Vec<&str> {
        d.chain().map(|p| p.to_str().expect("utf8")).collect()
    }

    #[test]
    fn the_chain_is_the_path_and_its_ancestors_below_the_top() {
        let m = "/sys/fs/cgroup/memory";
        assert_eq!(
            chain(&dir("/sys/fs/cgroup/memory/docker/abc", m)),
            [
                "/sys/fs/cgroup/memory/docker/abc",
                "/sys/fs/cgroup/memory/docker"
            ]
        );
        assert!(chain(&dir(m, m)).is_empty(), "the root holds no limits");
        assert_eq!(
            chain(&dir("/sys/fs/cgroup/memory/a/", "/sys/fs/cgroup/memory/")),
            ["/sys/fs/cgroup/memory/a/"]
        );
        // A name that only starts like the top is not inside it.
        assert!(chain(&dir("/sys/fs/cgroup/memoryx/a", m)).is_empty());
    }
}
