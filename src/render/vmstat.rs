//! /proc/vmstat for a container: the host's lines, in the host's order
//! (mm/vmstat.c vmstat_show: `name value`), each value the container's.
//!
//! The rule, line by line:
//!
//! 1. A count the container's cgroup keeps is the container's: the
//!    `memory.stat` amounts behind the `nr_*` gauges (bytes, shown in pages,
//!    KiB for `nr_kernel_stack`, huge pages for the `*hugepages` lines), the
//!    events `memory.stat` counts under vmstat's own name (`pgfault`,
//!    `pgmajfault`, `workingset_*`, `pgscan_*`, `pgsteal_*`, `pgrefill`,
//!    `pgactivate`, `pswpin`/`pswpout` where the kernel has them, ...),
//!    `oom_kill`, and `pgpgin`/`pgpgout`: the KiB its block I/O read and
//!    wrote (vmstat's `bi`/`bo`). `nr_free_pages` is meminfo's MemFree.
//! 2. Every other line is 0: what the cgroup cannot tell is not the host's
//!    activity either. A 0 never goes backwards, and the container's own
//!    counters only grow while its cgroup lives, so `vmstat`'s differences
//!    are never negative.

use super::meminfo;
use super::RenderError;
use crate::source::cgroup::{DevNum, IoCounters, MemCounters, Memory};
use std::collections::BTreeMap;

/// What one vmstat line of the container is made from.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The host's memory (its MemTotal bounds the container's).
    pub host_mem: meminfo::HostMem,
    pub mem: &'a Memory,
    pub counters: &'a MemCounters,
    /// Per-device block I/O; `None` without an I/O controller.
    pub io: Option<&'a BTreeMap<DevNum, IoCounters>>,
    pub page_size: u64,
    /// Bytes in a transparent huge page (the PMD size).
    pub thp_size: u64,
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Pages,
    KiB,
    HugePages,
}

/// vmstat gauges and the `memory.stat` amounts (bytes) they add up.
const GAUGES: &[(&str, &[&str], Unit)] = &[
    // One zone's worth is the node's on a single node; on several it is
    // the sum, as the container's own.
    ("nr_zone_inactive_anon", &["inactive_anon"], Unit::Pages),
    ("nr_zone_active_anon", &["active_anon"], Unit::Pages),
    ("nr_zone_inactive_file", &["inactive_file"], Unit::Pages),
    ("nr_zone_active_file", &["active_file"], Unit::Pages),
    ("nr_zone_unevictable", &["unevictable"], Unit::Pages),
    // NR_ZONE_WRITE_PENDING: dirty and under writeback.
    (
        "nr_zone_write_pending",
        &["file_dirty", "file_writeback"],
        Unit::Pages,
    ),
    ("nr_inactive_anon", &["inactive_anon"], Unit::Pages),
    ("nr_active_anon", &["active_anon"], Unit::Pages),
    ("nr_inactive_file", &["inactive_file"], Unit::Pages),
    ("nr_active_file", &["active_file"], Unit::Pages),
    ("nr_unevictable", &["unevictable"], Unit::Pages),
    ("nr_slab_reclaimable", &["slab_reclaimable"], Unit::Pages),
    (
        "nr_slab_unreclaimable",
        &["slab_unreclaimable"],
        Unit::Pages,
    ),
    ("nr_anon_pages", &["anon"], Unit::Pages),
    ("nr_mapped", &["file_mapped"], Unit::Pages),
    ("nr_file_pages", &["file"], Unit::Pages),
    ("nr_dirty", &["file_dirty"], Unit::Pages),
    ("nr_writeback", &["file_writeback"], Unit::Pages),
    ("nr_shmem", &["shmem"], Unit::Pages),
    ("nr_shmem_hugepages", &["shmem_thp"], Unit::HugePages),
    ("nr_file_hugepages", &["file_thp"], Unit::HugePages),
    (
        "nr_anon_transparent_hugepages",
        &["anon_thp"],
        Unit::HugePages,
    ),
    ("nr_kernel_stack", &["kernel_stack"], Unit::KiB),
    ("nr_page_table_pages", &["pagetables"], Unit::Pages),
    ("nr_sec_page_table_pages", &["sec_pagetables"], Unit::Pages),
    ("nr_swapcached", &["swapcached"], Unit::Pages),
    ("nr_hugetlb", &["hugetlb"], Unit::Pages),
];

/// The container's value for the vmstat line `key`.
fn value(key: &str, inp: &Inputs, free_pages: u64) -> u64 {
    let c = inp.counters;
    if let Some((_, from, unit)) = GAUGES.iter().find(|(k, _, _)| *k == key) {
        let bytes: u64 = from.iter().filter_map(|k| c.get(k)).sum();
        return match unit {
            Unit::Pages => bytes / inp.page_size.max(1),
            Unit::KiB => bytes / 1024,
            Unit::HugePages => bytes / inp.thp_size.max(1),
        };
    }
    let io = |f: fn(&IoCounters) -> u64| -> u64 {
        inp.io
            .map_or(0, |io| io.values().map(f).sum::<u64>() / 1024)
    };
    match key {
        "nr_free_pages" => free_pages,
        // KiB, as the kernel shows them (sectors / 2: mm/vmstat.c).
        "pgpgin" => io(|c| c.rbytes),
        "pgpgout" => io(|c| c.wbytes),
        // An event memory.stat counts under vmstat's own name. (The nr_*
        // names are gauges; memory.stat names its amounts differently.)
        _ if !key.starts_with("nr_") => c.get(key).unwrap_or(0),
        _ => 0,
    }
}

pub fn render(host: &str, inp: &Inputs) -> Result<String, RenderError> {
    let (_, free_kb) = meminfo::total_free_kb(&inp.host_mem, inp.mem)?;
    let free_pages = free_kb * 1024 / inp.page_size.max(1);
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        let mut f = line.split(' ');
        let (Some(key), Some(v), None) = (f.next(), f.next(), f.next()) else {
            return Err(RenderError(format!(
                "vmstat line {line:?} is not \"name value\""
            )));
        };
        if key.is_empty() || v.parse::<u64>().is_err() {
            return Err(RenderError(format!(
                "vmstat line {line:?} is not \"name value\""
            )));
        }
        out.push_str(key);
        out.push(' ');
        out.push_str(&value(key, inp, free_pages).to_string());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::cgroup::parse;
    use crate::source::cgroup::{MemStat, Swap};

    fn flat(text: &str) -> BTreeMap<&str, u64> {
        parse::flat_keyed(text).expect("memory.stat parses")
    }

    fn values(text: &str) -> BTreeMap<String, u64> {
        text.lines()
            .map(|l| {
                let (k, v) = l.split_once(' ').expect("name value");
                (k.to_owned(), v.parse().expect("a number"))
            })
            .collect()
    }

    /// The captured hybrid host (kernel 6.18, cgroup v1 controllers): its
    /// /proc/vmstat and the container's memory.stat and blkio counters.
    #[test]
    fn v1_the_containers_counts_and_zero_for_the_rest() {
        let host = include_str!("../../tests/fixtures/psi-v1/root/proc/vmstat");
        let meminfo = include_str!("../../tests/fixtures/psi-v1/root/proc/meminfo");
        let stat = include_str!(
            "../../tests/fixtures/psi-v1/root/sys/fs/cgroup/memory/proclens-psi/memory.stat"
        );
        let usage: u64 = include_str!(
            "../../tests/fixtures/psi-v1/root/sys/fs/cgroup/memory/proclens-psi/memory.usage_in_bytes"
        )
        .trim()
        .parse()
        .expect("usage");
        let blkio = include_str!(
            "../../tests/fixtures/psi-v1/root/sys/fs/cgroup/blkio/proclens-psi/blkio.throttle.io_service_bytes_recursive"
        );
        let m = flat(stat);
        let mem = Memory {
            limit: Some(48 << 20),
            usage,
            stat: MemStat::from_v1(&m),
            swap: None,
        };
        let counters = MemCounters::from_v1(&m);
        let mut io = BTreeMap::new();
        parse::blkio_table(blkio, parse::BlkioUnit::Bytes, &mut io).expect("blkio");
        let out = render(
            host,
            &Inputs {
                host_mem: meminfo::HostMem::scan(meminfo),
                mem: &mem,
                counters: &counters,
                io: Some(&io),
                page_size: 4096,
                thp_size: 2 << 20,
            },
        )
        .expect("renders");
        let v = values(&out);
        let h = values(host);
        // Every host line, in the host's order, and nothing else.
        let keys = |t: &str| {
            t.lines()
                .map(|l| l.split(' ').next().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&out), keys(host));
        // Events: memory.stat's total_* (the cgroup and its children).
        assert_eq!(v["pgfault"], m["total_pgfault"]);
        assert_eq!(v["pgmajfault"], m["total_pgmajfault"]);
        assert_eq!(
            v["workingset_refault_file"],
            m["total_workingset_refault_file"]
        );
        // Gauges: bytes to 4 KiB pages.
        assert_eq!(v["nr_file_pages"], m["total_cache"] / 4096);
        assert_eq!(v["nr_anon_pages"], m["total_rss"] / 4096);
        assert_eq!(v["nr_inactive_file"], m["total_inactive_file"] / 4096);
        assert_eq!(v["nr_zone_inactive_file"], v["nr_inactive_file"]);
        assert_eq!(v["nr_mapped"], m["total_mapped_file"] / 4096);
        // bi/bo: the 16 MiB direct write and the two 96 MiB reads of the
        // capture, in KiB (blkio bytes / 1024).
        assert_eq!(v["pgpgout"], 16384);
        assert_eq!(
            v["pgpgin"],
            io.values().map(|c| c.rbytes).sum::<u64>() / 1024
        );
        assert!(v["pgpgin"] >= 96 * 1024, "{}", v["pgpgin"]);
        // v1's pgpgin/pgpgout count charges, not I/O: not used.
        assert_ne!(v["pgpgout"], m["total_pgpgout"]);
        // MemFree of the 48 MiB limit, in pages.
        assert_eq!(
            v["nr_free_pages"],
            ((48 << 20) - usage) / 1024 * 1024 / 4096
        );
        // What the cgroup cannot tell is 0, not the host's.
        for k in [
            "pgalloc_normal",
            "pgfree",
            "numa_hit",
            "pswpin",
            "nr_dirty_threshold",
            "nr_mlock",
        ] {
            assert!(
                h[k] > 0 || k == "pswpin",
                "the host's {k} is {}: nothing to test",
                h[k]
            );
            assert_eq!(v[k], 0, "{k}");
        }
        // v1 keeps no slab or kernel stack breakdown.
        assert_eq!(v["nr_kernel_stack"], 0);
    }

    /// The captured pure v2 cgroup (kernel 6.1): its memory.stat names
    /// every amount and event vmstat has a line for.
    #[test]
    fn v2_units_and_names() {
        let stat =
            include_str!("../../tests/fixtures/v2/root/sys/fs/cgroup/proclens-fixture/memory.stat");
        let meminfo = include_str!("../../tests/fixtures/v2/root/proc/meminfo");
        let m = flat(stat);
        let mem = Memory {
            limit: Some(512 << 20),
            usage: 60 << 20,
            stat: MemStat::from_v2(&m),
            swap: Some(Swap {
                limit: None,
                usage: 0,
            }),
        };
        let counters = MemCounters::from_v2(&m);
        let host = "nr_free_pages 1\nnr_kernel_stack 2\nnr_anon_transparent_hugepages 3\nnr_slab_reclaimable 4\nnr_zone_write_pending 5\npgscan_direct 6\npgsteal_direct 7\nworkingset_activate_file 8\npswpin 9\npgpgout 10\noom_kill 11\n";
        let out = render(
            host,
            &Inputs {
                host_mem: meminfo::HostMem::scan(meminfo),
                mem: &mem,
                counters: &counters,
                io: None,
                page_size: 4096,
                thp_size: 2 << 20,
            },
        )
        .expect("renders");
        let v = values(&out);
        // kernel_stack 32768 B = 32 KiB; anon_thp 23068672 B = 11 huge pages;
        // slab_reclaimable 132848 B = 32 pages (rounded down, as the kernel).
        assert_eq!(v["nr_kernel_stack"], 32);
        assert_eq!(v["nr_anon_transparent_hugepages"], 11);
        assert_eq!(v["nr_slab_reclaimable"], 32);
        assert_eq!(v["nr_zone_write_pending"], 0);
        assert_eq!(v["pgscan_direct"], 74438);
        assert_eq!(v["pgsteal_direct"], 9113);
        assert_eq!(v["workingset_activate_file"], 202);
        // 6.1's memory.stat has no pswpin; no I/O controller: no pgpgout.
        assert_eq!((v["pswpin"], v["pgpgout"], v["oom_kill"]), (0, 0, 0));
        // MemFree = 512 MiB - 60 MiB.
        assert_eq!(v["nr_free_pages"], (452 << 20) / 4096);
    }

    #[test]
    fn a_line_that_is_not_name_value_is_an_error() {
        let mem = Memory {
            limit: None,
            usage: 0,
            stat: MemStat::default(),
            swap: None,
        };
        let counters = MemCounters::default();
        let inp = Inputs {
            host_mem: meminfo::HostMem::scan("MemTotal: 1024 kB\n"),
            mem: &mem,
            counters: &counters,
            io: None,
            page_size: 4096,
            thp_size: 2 << 20,
        };
        for bad in ["pgfault\n", "pgfault x\n", "pgfault 1 2\n", " 1\n"] {
            assert!(render(bad, &inp).is_err(), "{bad:?}");
        }
        assert_eq!(render("pgfault 7\n", &inp).as_deref(), Ok("pgfault 0\n"));
    }
}
