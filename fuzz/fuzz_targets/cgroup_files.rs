//! cgroup control files: single values ("max"), flat and nested keyed
//! files, CPU lists, v1 blkio and cpuacct tables. The first byte picks the
//! parser; none may panic, and CPU lists must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proclens::source::cgroup::parse;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match which % 9 {
        0 => {
            let _ = parse::limit(text);
            let _ = parse::number(text);
            let _ = parse::signed(text);
        }
        1 => {
            if let Ok(m) = parse::flat_keyed(text) {
                let _ = proclens::source::cgroup::MemStat::from_v1(&m);
                let _ = proclens::source::cgroup::MemStat::from_v2(&m);
            }
        }
        2 => {
            if let Ok((q, p)) = parse::cpu_max(text) {
                assert!(p > 0);
                let _ = q;
            }
        }
        3 => {
            if let Ok(cpus) = parse::cpu_list(text) {
                let again = parse::cpu_list(&parse::format_cpu_list(&cpus)).expect("own output parses");
                assert_eq!(cpus, again);
            }
        }
        4 => {
            let _ = parse::io_stat(text);
        }
        5 | 6 => {
            let unit = if which % 9 == 5 { parse::BlkioUnit::Bytes } else { parse::BlkioUnit::Ios };
            let _ = parse::blkio_table(text, unit, &mut BTreeMap::new());
        }
        7 => {
            let _ = parse::cpuacct_usage_all(text);
        }
        _ => {
            let _ = parse::number_list(text);
        }
    }
});
