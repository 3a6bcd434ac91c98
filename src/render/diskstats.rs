//! /proc/diskstats: host device lines with the container's own counts
//! (Documentation/admin-guide/iostats.rst for the field order).

use crate::cgroup::{DevNum, IoCounters};
use std::collections::BTreeMap;

/// Bytes to 512-byte sectors, the unit diskstats counts in.
fn sectors(bytes: u64) -> u64 {
    bytes / 512
}

pub fn render(host: &str, io: &BTreeMap<DevNum, IoCounters>) -> String {
    let mut out = String::new();
    for l in host.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let (Ok(maj), Ok(min)) = (f[0].parse::<u32>(), f[1].parse::<u32>()) else {
            continue;
        };
        // Devices the container never touched are left out.
        let Some(c) = io.get(&(maj, min)).filter(|c| !c.is_zero()) else {
            continue;
        };
        // Fields 4.. after major, minor, name; what the cgroup cannot tell
        // (merges, times, in-flight, flushes) is 0.
        let mut v = vec![0u64; f.len() - 3];
        let mut set = |i: usize, x: u64| {
            if let Some(s) = v.get_mut(i) {
                *s = x;
            }
        };
        set(0, c.rios);
        set(2, sectors(c.rbytes));
        set(4, c.wios);
        set(6, sectors(c.wbytes));
        set(11, c.dios);
        set(13, sectors(c.dbytes));
        // Keep the host's padded "major minor name" prefix byte for byte.
        let name_end = l.find(f[2]).map_or(0, |p| p + f[2].len());
        out.push_str(&l[..name_end]);
        for x in v {
            out.push(' ');
            out.push_str(&x.to_string());
        }
        out.push('\n');
    }
    out
}
