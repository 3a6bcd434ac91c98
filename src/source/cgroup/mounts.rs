//! Where each cgroup controller lives: parsed from `/proc/self/mountinfo`
//! (proc(5), "/proc/pid/mountinfo") and `/proc/<pid>/cgroup` (cgroups(7)),
//! never from hard-coded paths, so v1, v2 and hybrid hosts all work.

use super::parse::ParseError;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The controllers proclens reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    Cpuacct,
    Cpuset,
    Blkio,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 6] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Blkio,
        Controller::Pids,
    ];

    /// Name in v1 mount options and `/proc/<pid>/cgroup`.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Blkio => "blkio",
            Controller::Pids => "pids",
        }
    }

    /// Name in v2 `cgroup.controllers` (cpu and cpuacct merged, blkio became io).
    pub fn v2_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu | Controller::Cpuacct => "cpu",
            Controller::Cpuset => "cpuset",
            Controller::Blkio => "io",
            Controller::Pids => "pids",
        }
    }
}

/// One cgroup filesystem mount: `root` is the path inside the hierarchy that
/// is mounted at `mountpoint` (it is not "/" inside a cgroup namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub root: String,
    pub mountpoint: PathBuf,
}

/// The cgroup mounts of the host, as the daemon sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    pub v1: BTreeMap<Controller, CgroupMount>,
    pub v2: Option<CgroupMount>,
}

/// Undo the octal escapes mountinfo uses for space, tab, newline and backslash.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // "\ooo" with a value that fits a byte (the kernel writes \040,
        // \011, \012 and \134); anything else is kept as it is.
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u16, |v, c| v * 8 + u16::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text. The first mount of each controller wins, preferring
/// a mount of the hierarchy's root (a host sees "/" there).
pub fn parse_mountinfo(text: &str) -> Result<Mounts, ParseError> {
    let mut m = Mounts::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f
            .iter()
            .position(|x| *x == "-")
            .ok_or_else(|| ParseError(format!("mountinfo line without \" - \": {line:?}")))?;
        if sep < 6 || f.len() < sep + 4 {
            return Err(ParseError(format!("short mountinfo line: {line:?}")));
        }
        let mount = CgroupMount {
            root: unescape(f[3]),
            mountpoint: PathBuf::from(unescape(f[4])),
        };
        let better = |old: &CgroupMount| old.root != "/" && mount.root == "/";
        match f[sep + 1] {
            "cgroup2" if m.v2.as_ref().is_none_or(better) => m.v2 = Some(mount),
            "cgroup" => {
                for opt in f[sep + 3].split(',') {
                    if let Some(c) = Controller::ALL.iter().find(|c| c.v1_name() == opt) {
                        if m.v1.get(c).is_none_or(better) {
                            m.v1.insert(*c, mount.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

/// A process's cgroup membership from `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The `0::` line (v2 path), if present.
    pub v2: Option<String>,
    /// v1 lines, by controller.
    pub v1: BTreeMap<Controller, String>,
}

/// Parses `/proc/<pid>/cgroup`: "hierarchy-ID:controller-list:cgroup-path".
pub fn parse_proc_cgroup(text: &str) -> Result<Membership, ParseError> {
    let mut m = Membership::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError(format!("bad cgroup line {line:?}")));
        };
        if !path.starts_with('/') {
            return Err(ParseError(format!("cgroup path is not absolute: {line:?}")));
        }
        if id == "0" && ctrls.is_empty() {
            m.v2 = Some(path.to_owned());
            continue;
        }
        for name in ctrls.split(',') {
            if let Some(c) = Controller::ALL.iter().find(|c| c.v1_name() == name) {
                m.v1.insert(*c, path.to_owned());
            }
        }
    }
    Ok(m)
}

/// The directory of a cgroup path under a mount, or `None` when the path is
/// outside what the mount shows (another cgroup namespace's root).
pub fn cgroup_dir(mount: &CgroupMount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        let rest = path.strip_prefix(mount.root.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount.mountpoint.clone()
    } else {
        mount.mountpoint.join(rel)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_mounts() {
        let m = parse_mountinfo(HYBRID).expect("parses");
        assert_eq!(
            m.v1[&Controller::Memory].mountpoint,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            m.v1[&Controller::Cpuacct].mountpoint,
            PathBuf::from("/sys/fs/cgroup/cpuacct")
        );
        assert!(!m.v1.contains_key(&Controller::Pids));
        assert_eq!(
            m.v2.expect("v2").mountpoint,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn merged_controllers_and_escapes() {
        let t = "1 0 0:1 / /sys/fs/cgroup/cpu\\040acct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let m = parse_mountinfo(t).expect("parses");
        assert_eq!(
            m.v1[&Controller::Cpu].mountpoint,
            PathBuf::from("/sys/fs/cgroup/cpu acct")
        );
        assert_eq!(m.v1[&Controller::Cpu], m.v1[&Controller::Cpuacct]);
        assert!(parse_mountinfo("1 0 0:1 / /x rw cgroup\n").is_err());
    }

    #[test]
    fn escapes_that_do_not_fit_a_byte_stay_literal() {
        // Found by fuzzing (fuzz/artifacts/mountinfo): \777 overflowed.
        assert_eq!(unescape("a\\777b"), "a\\777b");
        assert_eq!(unescape("a\\040b\\"), "a b\\");
        assert_eq!(unescape("\\13"), "\\13");
    }

    #[test]
    fn proc_cgroup_lines() {
        let m = parse_proc_cgroup("4:memory:/a/b\n2:cpu,cpuacct:/a\n0::/c\n").expect("parses");
        assert_eq!(m.v1[&Controller::Memory], "/a/b");
        assert_eq!(m.v1[&Controller::Cpuacct], "/a");
        assert_eq!(m.v2.as_deref(), Some("/c"));
        assert!(parse_proc_cgroup("garbage\n").is_err());
    }

    #[test]
    fn dirs_respect_mount_root() {
        let host = CgroupMount {
            root: "/".into(),
            mountpoint: "/sys/fs/cgroup".into(),
        };
        assert_eq!(
            cgroup_dir(&host, "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/a/b"))
        );
        assert_eq!(
            cgroup_dir(&host, "/"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup_dir(&host, "/a/../../etc"), None);
        let ns = CgroupMount {
            root: "/pod".into(),
            mountpoint: "/cg".into(),
        };
        assert_eq!(cgroup_dir(&ns, "/pod/c"), Some(PathBuf::from("/cg/c")));
        assert_eq!(cgroup_dir(&ns, "/podx"), None);
        assert_eq!(cgroup_dir(&ns, "/other"), None);
    }
}
