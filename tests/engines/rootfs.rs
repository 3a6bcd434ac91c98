//! The image every engine runs, built on the spot without a registry: the
//! host's own tools and the libraries `ldd` lists for them, at the same
//! paths, plus `/etc/passwd` and the `dumb` terminfo entry procps `top`
//! insists on. About 9 MiB, made in about a second; `docker import` and
//! `podman import` take it as a tar, ctr and LXC as a directory.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{checked_stdout, host_command, which, RUN_TIMEOUT};

/// What the checks run inside, from procps, coreutils, glibc and sysstat,
/// and busybox (static), whose `free` asks sysinfo(2).
pub const TOOLS: &[&str] = &[
    "sh", "cat", "cp", "free", "top", "uptime", "getconf", "grep", "head", "sleep", "dd", "rm",
    "iostat", "busybox",
];

/// The tools' paths on the host; a missing one is named in the failure.
pub fn host_tools() -> Result<Vec<PathBuf>, Vec<&'static str>> {
    let found: Vec<(&str, Option<PathBuf>)> = TOOLS.iter().map(|t| (*t, which(t))).collect();
    let missing: Vec<&str> = found
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(t, _)| *t)
        .collect();
    if missing.is_empty() {
        Ok(found.into_iter().filter_map(|(_, p)| p).collect())
    } else {
        Err(missing)
    }
}

/// Copies `path` to the same path below `root`, following the host's
/// symlinks for the file itself (the rootfs has the merged-/usr links).
fn copy_in(root: &Path, path: &Path) {
    let dst = root.join(path.strip_prefix("/").expect("absolute path"));
    fs::create_dir_all(dst.parent().expect("a parent")).expect("mkdir in rootfs");
    if dst.exists() {
        return;
    }
    fs::copy(path, &dst).unwrap_or_else(|e| panic!("copy {} into the rootfs: {e}", path.display()));
}

/// Builds the rootfs in `root` (which must not exist).
pub fn build(root: &Path) {
    let tools = host_tools().unwrap_or_else(|missing| panic!("tools missing: {missing:?}"));
    fs::create_dir_all(root.join("usr")).expect("mkdir rootfs");
    // Debian's merged /usr: /bin, /lib... are links into /usr, so every
    // path ldd prints lands in one place.
    for d in ["bin", "sbin", "lib", "lib64"] {
        fs::create_dir_all(root.join("usr").join(d)).expect("mkdir usr dir");
        symlink(format!("usr/{d}"), root.join(d)).expect("merged-usr link");
    }
    for d in ["proc", "sys", "dev", "tmp", "etc", "state"] {
        fs::create_dir_all(root.join(d)).expect("mkdir rootfs dir");
    }
    for tool in &tools {
        copy_in(root, tool);
        // busybox-static needs nothing more (ldd fails on it).
        if tool.file_name().is_some_and(|n| n == "busybox") {
            continue;
        }
        let ldd = checked_stdout(host_command("ldd").arg(tool), RUN_TIMEOUT);
        for line in ldd.lines() {
            let lib = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
                copy_in(root, Path::new(lib));
            }
        }
    }
    let terminfo = [
        "/usr/share/terminfo/d/dumb",
        "/lib/terminfo/d/dumb",
        "/usr/lib/terminfo/d/dumb",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file())
    .expect("no terminfo entry for `dumb` on the host (apt-get install ncurses-base)");
    copy_in(root, terminfo);
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
}

/// The rootfs as a tar file, for `docker import` and `podman import`.
pub fn tar(root: &Path, out: &Path) {
    let status = Command::new(which("tar").expect("tar"))
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of the rootfs failed: {status}");
}

/// A fresh copy of the rootfs (ctr and LXC write into theirs).
pub fn copy(from: &Path, to: &Path) {
    let status = Command::new(which("cp").expect("cp"))
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a of the rootfs failed: {status}");
}
