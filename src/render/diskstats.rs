//! /proc/diskstats: host device lines with the container's own counts
//! (Documentation/admin-guide/iostats.rst for the field order).

use crate::source::cgroup::{DevNum, IoCounters};
use std::collections::BTreeMap;

/// Bytes to 512-byte sectors, the unit diskstats counts in.
fn sectors(bytes: u64) -> u64 {
    bytes / 512
}

/// The counter fields after "major minor name", in diskstats order, with
/// what the cgroup cannot tell (merges, times, in flight, flushes) at 0.
fn fields(n: usize, c: &IoCounters) -> Vec<u64> {
    let mut v = vec![0u64; n];
    for (i, x) in [
        (0, c.rios),
        (2, sectors(c.rbytes)),
        (4, c.wios),
        (6, sectors(c.wbytes)),
        (11, c.dios),
        (13, sectors(c.dbytes)),
    ] {
        if let Some(s) = v.get_mut(i) {
            *s = x;
        }
    }
    v
}

/// `/sys/block/<disk>/stat` (block/genhd.c part_stat_show: the diskstats
/// counters, each right-aligned to 8 columns), with as many fields as the
/// host's file has.
pub fn block_stat(host: &str, c: &IoCounters) -> String {
    let n = host.split_whitespace().count();
    let mut out = fields(n, c)
        .iter()
        .map(|x| format!("{x:>8}"))
        .collect::<Vec<_>>()
        .join(" ");
    out.push('\n');
    out
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
        let v = fields(f.len() - 3, c);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_stat_keeps_the_kernel_layout() {
        // 17 fields of width 8 (Documentation/block/stat.rst); a 16 MiB
        // write in 16 requests is 32768 sectors.
        let host = "   28962     5515  2132586    28515    28630    23374  4895928    17775        0    12724    46936     7249       68  1379992      519     4968      125\n";
        let c = IoCounters {
            wios: 16,
            wbytes: 16 << 20,
            ..IoCounters::default()
        };
        let out = block_stat(host, &c);
        assert_eq!(out.len(), host.len());
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!((f[4], f[6], f[0]), ("16", "32768", "0"));
    }
}
