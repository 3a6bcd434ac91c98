//! /proc/<pid>/stat, /proc/<pid>/cgroup, /proc/<pid>/status and ns links.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match which % 4 {
        0 => {
            let _ = proclens::source::proc::parse_stat(text);
        }
        1 => {
            if let Ok(m) = proclens::source::cgroup::mounts::parse_proc_cgroup(text) {
                for p in m.v1.values().chain(m.v2.iter()) {
                    assert!(p.starts_with('/'));
                }
            }
        }
        2 => {
            let _ = proclens::source::proc::parse_innermost_pid(text);
        }
        _ => {
            let _ = proclens::source::proc::parse_ns_link(text);
        }
    }
});
