//! The host around the test: the scratch directory every engine keeps its
//! state in, and the few places outside it engines write whatever they
//! are told. Both clean up after the test, and say what they found.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::mountinfo;
use crate::engine::processes_naming;
use crate::kernel;

/// Paths engines write outside the state they are given, and whether
/// that is expected (and then only removed) or a leak (removed and failed).
/// Expected, whatever the options say: dockerd's trust key and plugin
/// socket directory (/run/docker/plugins), containerd's shim sockets and
/// ctr's FIFOs (/run/containerd/s, /run/containerd/fifo), podman's blob
/// cache (/var/lib/containers/cache) and runc state (/run/runc, runc's
/// default), LXC's locks (/run/lxc/lock).
const GLOBAL_PATHS: &[(&str, bool)] = &[
    ("/etc/docker/key.json", true),
    ("/run/docker", true),
    ("/run/containerd", true),
    ("/var/lib/containers", true),
    ("/run/runc", true),
    ("/run/lxc", true),
    ("/var/lib/docker", false),
    ("/run/docker.sock", false),
    ("/var/lib/containerd", false),
    ("/run/containers", false),
    ("/run/libpod", false),
    ("/var/lib/lxc", false),
];

/// What was on the host before: the global paths that existed and the
/// top-level cgroups. Drop removes what the test added there.
pub struct HostState {
    existed: BTreeSet<&'static str>,
    cgroups: BTreeSet<PathBuf>,
    scratch: PathBuf,
}

impl HostState {
    pub fn capture(scratch: &Path) -> HostState {
        HostState {
            existed: GLOBAL_PATHS
                .iter()
                .map(|(p, _)| *p)
                .filter(|p| Path::new(p).symlink_metadata().is_ok())
                .collect(),
            cgroups: kernel::top_level_cgroups(),
            scratch: scratch.to_owned(),
        }
    }

    /// Removes what appeared; returns the leaks (what should not have).
    pub fn clean(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        // LXC's lock for our lxcpath, even when /run/lxc was there.
        let lock = Path::new("/run/lxc/lock")
            .join(self.scratch.strip_prefix("/").unwrap_or(&self.scratch));
        let _ = fs::remove_dir_all(&lock);
        for (p, expected) in GLOBAL_PATHS {
            let path = Path::new(p);
            if self.existed.contains(p) || path.symlink_metadata().is_err() {
                continue;
            }
            let _ = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            if !expected {
                leaks.push(format!("an engine created {p} (removed)"));
            }
        }
        for cg in kernel::top_level_cgroups().difference(&self.cgroups) {
            let name = cg
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // LXC moves its monitor there to remove the monitor's cgroup,
            // and leaves it.
            if name == "lxc.pivot" {
                crate::common::remove_cgroup(cg);
                continue;
            }
            let ours = name.starts_with("proclens-e2e-")
                || name.starts_with("lxc.")
                || ["docker", "libpod_parent", "default"].contains(&name.as_str());
            if ours {
                crate::common::remove_cgroup(cg);
                leaks.push(format!("cgroup {} was left (removed)", cg.display()));
            }
        }
        leaks
    }
}

impl Drop for HostState {
    fn drop(&mut self) {
        for leak in self.clean() {
            eprintln!("engines cleanup: {leak}");
        }
    }
}

/// The scratch directory: engines' state, images, rootfs copies. Drop
/// kills what still runs from it (a shim whose engine died: its command
/// line names our directory), unmounts what is mounted below it (overlay
/// layers, podman's storage), then removes it.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        // On the disk of /var/tmp: the I/O checks need a block device
        // (in the v2 VM /tmp is a tmpfs).
        let dir = tempfile::Builder::new()
            .prefix("proclens-e2e-engines-")
            .tempdir_in("/var/tmp")
            .expect("scratch dir in /var/tmp");
        let path = dir.path().canonicalize().expect("canonical scratch");
        Scratch {
            dir: Some(dir),
            path,
        }
    }

    /// Mount points below the scratch directory, deepest first.
    fn mounts(&self) -> Vec<PathBuf> {
        let mut m: Vec<PathBuf> = mountinfo()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&self.path))
            .collect();
        m.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        m.dedup();
        m
    }

    /// Removes strays and mounts; returns what there was.
    pub fn clean(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        for (pid, cmd) in processes_naming(&self.path) {
            // pidfd: a pid recycled since the scan is never signalled.
            // SAFETY: plain syscalls with integer arguments.
            unsafe {
                let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
                if fd >= 0 {
                    libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, 0usize, 0);
                    libc::close(fd as i32);
                }
            }
            leaks.push(format!("process {pid} ({cmd}) was left running (killed)"));
        }
        for m in self.mounts() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            leaks.push(format!("{} was left mounted (unmounted)", m.display()));
        }
        leaks
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for leak in self.clean() {
            eprintln!("engines cleanup: {leak}");
        }
        drop(self.dir.take());
    }
}
