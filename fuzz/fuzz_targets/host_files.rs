//! The host files proclens rewrites, with a fixed container: renderers must
//! never panic, and meminfo keeps the host's line count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proclens::source::cgroup::{IoCounters, MemStat, Memory};
use proclens::render::{cpuinfo, diskstats, meminfo, stat, swaps};
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else { return };
    let Ok(host) = std::str::from_utf8(rest) else { return };
    match which % 5 {
        0 => {
            let mem = Memory {
                limit: Some(268_435_456),
                usage: 300_000_000,
                stat: MemStat { file: Some(1 << 20), active_file: Some(1 << 19), ..MemStat::default() },
                swap: None,
            };
            if let Ok(out) = meminfo::render(host, &mem) {
                assert_eq!(out.lines().count(), host.lines().count());
            }
        }
        1 => {
            let _ = cpuinfo::render(host, &[1, 3]);
        }
        2 => {
            let lines = [stat::CpuTimes { user: 5, idle: 7, ..stat::CpuTimes::default() }; 2];
            let _ = stat::render(host, &lines, Some(1), None);
        }
        3 => {
            let mut io = BTreeMap::new();
            io.insert((254, 0), IoCounters { wbytes: 16 << 20, wios: 16, ..IoCounters::default() });
            let _ = diskstats::render(host, &io);
        }
        _ => {
            let _ = swaps::render(host, 65536, 1024);
        }
    }
});
