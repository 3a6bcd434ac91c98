//! /proc/self/mountinfo, and the cgroup directory a path maps to: whatever
//! the text, a cgroup path never leads outside its mount point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proclens::source::cgroup::mounts;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (info, path) = text.split_once('\u{0}').unwrap_or((text, "/a/b"));
    let Ok(m) = mounts::parse_mountinfo(info) else { return };
    for mount in m.v1.values().chain(m.v2.iter()) {
        if let Some(dir) = mounts::cgroup_dir(mount, path) {
            assert!(dir.starts_with(&mount.mountpoint), "{dir:?} outside {:?}", mount.mountpoint);
        }
    }
});
