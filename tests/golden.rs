//! Golden tests: real cgroup v1 (this host) and v2 (Debian kernel under
//! qemu) trees captured verbatim in tests/fixtures, rendered through the
//! library as a reader would see them. Expected numbers are worked out by
//! hand from the captured files (see the comments and tests/fixtures/*/README.md),
//! each assertion names the DESIGN.md rule it checks.

use proclens::container::view::{Options, Views};
use proclens::container::VFile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("root")
}

/// The reader pid recorded in the fixture's capture.env.
fn reader(name: &str) -> u32 {
    let env = std::fs::read_to_string(fixture(name).join("../capture.env")).expect("capture.env");
    env.split_whitespace()
        .find_map(|kv| kv.strip_prefix("reader="))
        .and_then(|v| v.parse().ok())
        .expect("reader= in capture.env")
}

fn render(name: &str, file: VFile) -> String {
    let views = Views::new(&fixture(name), Options::default()).expect("fixture views");
    let caller = views
        .caller(reader(name))
        .expect("caller resolves in fixture");
    views.render(file, &caller).expect("renders")
}

fn host(name: &str, file: &str) -> String {
    std::fs::read_to_string(fixture(name).join(file)).expect("host file")
}

fn kb(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

const REWRITTEN: &[&str] = &[
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "SwapTotal",
    "SwapFree",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "KReclaimable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "AnonHugePages",
];

/// Rule (section 4): pass every other line through unchanged, in order.
fn assert_passthrough(host: &str, ours: &str) {
    let h: Vec<&str> = host.lines().collect();
    let o: Vec<&str> = ours.lines().collect();
    assert_eq!(h.len(), o.len(), "same number of lines as the host file");
    for (hl, ol) in h.iter().zip(&o) {
        let key = hl.split(':').next().unwrap_or_default();
        assert_eq!(
            key,
            ol.split(':').next().unwrap_or_default(),
            "same key order"
        );
        if !REWRITTEN.contains(&key) {
            assert_eq!(hl, ol, "non-virtualized line passes through byte for byte");
        } else {
            // Layout: the kernel's 16-column label and 8-wide number.
            assert_eq!(
                hl.find(|c: char| c.is_ascii_digit()).map(|_| hl.len()),
                Some(hl.len())
            );
            assert!(ol.ends_with(" kB"), "{ol:?} keeps its unit");
        }
    }
}

#[test]
fn v1_meminfo_follows_the_nested_limit_and_memory_stat() {
    let m = render("v1", VFile::Meminfo);
    let v = kb(&m);
    // Effective limit = min(app 268435456, parent 536870912) = 256 MiB.
    assert_eq!(v["MemTotal"], 262144);
    // MemFree = limit - memory.usage_in_bytes (80949248 B = 79052 kB).
    assert_eq!(v["MemFree"], 262144 - 79052);
    // MemAvailable = MemFree + file LRU (total_active_file 0 +
    // total_inactive_file 25182208 B = 24592 kB); v1 has no slab breakdown.
    assert_eq!(v["MemAvailable"], 183092 + 24592);
    // Cached = total_cache 25182208 B, AnonPages = total_rss 55418880 B.
    assert_eq!(v["Cached"], 24592);
    assert_eq!(v["AnonPages"], 54120);
    assert_eq!(v["Buffers"], 0);
    // The host has no swap (SwapTotal 0): the container has none either.
    assert_eq!((v["SwapTotal"], v["SwapFree"]), (0, 0));
    assert_passthrough(&host("v1", "proc/meminfo"), &m);
    assert_eq!(
        m.lines().next(),
        Some("MemTotal:         262144 kB"),
        "kernel layout"
    );
}

#[test]
fn v2_meminfo_reports_the_v2_breakdown_and_swap() {
    let m = render("v2", VFile::Meminfo);
    let v = kb(&m);
    // memory.max: app 268435456, parent 536870912 -> 256 MiB.
    assert_eq!(v["MemTotal"], 262144);
    // memory.current 54587392 B = 53308 kB.
    assert_eq!(v["MemFree"], 262144 - 53308);
    // + active_file 2686976 + inactive_file 27615232 (= 29592 kB)
    // + slab_reclaimable 132848 B (129 kB, rounded down).
    assert_eq!(v["MemAvailable"], 208836 + 29592 + 129);
    // v2 memory.stat keys that lxcfs leaves at host values or 0.
    assert_eq!(v["Cached"], 30314496 / 1024);
    assert_eq!(v["Shmem"], 12);
    assert_eq!(v["SReclaimable"], 129);
    assert_eq!(v["SUnreclaim"], 52056 / 1024);
    assert_eq!(v["Slab"], 129 + 50);
    assert_eq!(v["KernelStack"], 32);
    assert_eq!(v["PageTables"], 188);
    assert_eq!(v["SwapCached"], 20);
    assert_eq!(v["AnonPages"], 23699456 / 1024);
    // Swap: memory.swap.max 64 MiB (below the host's 131068 kB zram),
    // memory.swap.current 32399360 B = 31640 kB.
    assert_eq!(v["SwapTotal"], 65536);
    assert_eq!(v["SwapFree"], 65536 - 31640);
    assert_passthrough(&host("v2", "proc/meminfo"), &m);
}

#[test]
fn callers_know_their_namespace_and_container_init() {
    // v1 capture: the reader shares the daemon's pid namespace (the host):
    // uptime is the host's, so no init start is needed.
    let views = Views::new(&fixture("v1"), Options::default()).expect("views");
    let c = views.caller(reader("v1")).expect("caller");
    assert!(c.host && c.init_start == 0);
    // v2 capture: the reader (141, NSpid "141 2") runs under pid 139, its
    // namespace's pid 1, whose parent 137 (unshare) is outside: the init's
    // start time is field 22 of proc/139/stat.
    let views = Views::new(&fixture("v2"), Options::default()).expect("views");
    let c = views.caller(reader("v2")).expect("caller");
    let init_stat = host("v2", "proc/139/stat");
    let start: u64 = init_stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .expect("field 22");
    assert!(!c.host);
    assert_eq!((c.init_start, c.ns_pid), (start, 2));
}

#[test]
fn swaps_shows_the_virtual_swap_only_when_there_is_one() {
    // v2: header plus one line in mm/swapfile.c layout: size and used in
    // KiB, each followed by an extra tab when under 10000000.
    let s = render("v2", VFile::Swaps);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0],
        host("v2", "proc/swaps").lines().next().unwrap_or_default()
    );
    assert_eq!(lines.len(), 2);
    let f: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(f[2..4], ["65536", "31640"]);
    assert!(lines[1].contains("\t65536\t\t31640\t\t"));
    // v1 fixture host has no swap: header only.
    assert_eq!(render("v1", VFile::Swaps).lines().count(), 1);
}

fn cpu_blocks(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn cpuinfo_keeps_only_the_cpuset_renumbered() {
    for name in ["v1", "v2"] {
        // Both captures put the container on host CPU 1 of 2, quota 0.5.
        let ours = cpu_blocks(&render(name, VFile::Cpuinfo));
        let hosts = cpu_blocks(&host(name, "proc/cpuinfo"));
        assert_eq!(ours.len(), 1, "{name}: one visible CPU");
        assert!(
            ours[0].starts_with("processor\t: 0\n"),
            "{name}: renumbered from 0"
        );
        // Every other line is host CPU 1's, except siblings/cpu cores = n.
        for (o, h) in ours[0].lines().zip(hosts[1].lines()).skip(1) {
            if o.starts_with("siblings") || o.starts_with("cpu cores") {
                assert!(o.ends_with(": 1"), "{name}: {o}");
            } else {
                assert_eq!(o, h, "{name}");
            }
        }
    }
}

#[test]
fn sysfs_cpu_ranges_say_one_cpu() {
    for name in ["v1", "v2"] {
        assert_eq!(render(name, VFile::CpuOnline), "0\n");
        assert_eq!(render(name, VFile::CpuPossible), "0\n");
        assert_eq!(render(name, VFile::CpuPresent), "0\n");
    }
}

#[test]
fn stat_has_the_container_cpu_time_and_the_host_rest() {
    // v1: exact time per CPU from cpuacct.usage_percpu (108477, 2100877208
    // ns), split by each CPU's cpuacct.usage_all ratio (CPU 1: 2082378284 :
    // 36000000) or, for CPU 0 with no ticks, cpuacct.stat's 206 : 3:
    // user 106919 + 2065174623 ns -> 206 ticks, system 1558 + 35702585 -> 3.
    // v2: cpu.stat user_usec 5366622 -> 536, system_usec 5450752 -> 545
    // (USER_HZ 100).
    for (name, user, system) in [("v1", 206, 3), ("v2", 536, 545)] {
        let s = render(name, VFile::Stat);
        let h = host(name, "proc/stat");
        let cpu: Vec<&str> = s.lines().filter(|l| l.starts_with("cpu")).collect();
        assert_eq!(cpu.len(), 2, "{name}: cpu and cpu0 only");
        for l in &cpu {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().expect("number"))
                .collect();
            assert_eq!(f.len(), 10, "{name}: the host's 10 columns");
            assert_eq!((f[0], f[1], f[2]), (user, 0, system), "{name}: {l}");
            assert_eq!(&f[4..], &[0; 6], "{name}: what the cgroup cannot tell is 0");
        }
        assert!(cpu[0].starts_with("cpu  "), "aggregate line has two spaces");
        // btime, intr, ctxt, processes, softirq: host lines, same order.
        let rest = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with("cpu") && !l.starts_with("procs_"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(rest(&s), rest(&h), "{name}");
    }
}

#[test]
fn diskstats_has_the_container_io_in_sectors() {
    // v1: blkio.throttle recursive files: Read 25165824 B, Write 16777216 B,
    // Discard 16777216 B on 254:0 -> 49152 / 32768 / 32768 sectors.
    let v1 = render("v1", VFile::Diskstats);
    let lines: Vec<&str> = v1.lines().collect();
    assert_eq!(lines.len(), 1, "only the device the container touched");
    let f: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(f[..3], ["254", "0", "vda"]);
    assert_eq!((f[5], f[9], f[16]), ("49152", "32768", "32768"));
    assert_eq!(
        (f[4], f[6], f[8], f[10]),
        ("0", "0", "0", "0"),
        "merges/times unknown -> 0"
    );
    assert!(
        lines[0].starts_with(" 254       0 vda "),
        "host's padded prefix kept"
    );
    // v2: io.stat 254:0 rbytes=26214400 wbytes=16777216 rios=25 wios=16 and
    // 253:0 wbytes=29360128 wios=14.
    let v2 = render("v2", VFile::Diskstats);
    let by_name: HashMap<&str, Vec<&str>> = v2
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2], f)
        })
        .collect();
    assert_eq!(by_name.len(), 2);
    let vda = &by_name["vda"];
    assert_eq!(
        (vda[3], vda[5], vda[7], vda[9]),
        ("25", "51200", "16", "32768")
    );
    let zram = &by_name["zram0"];
    assert_eq!((zram[3], zram[7], zram[9]), ("0", "14", "57344"));
    assert_eq!(
        vda.len(),
        host("v2", "proc/diskstats")
            .lines()
            .next()
            .map_or(0, |l| l.split_whitespace().count())
    );
}

#[test]
fn loadavg_starts_at_zero_with_the_container_task_count() {
    for name in ["v1", "v2"] {
        let l = render(name, VFile::Loadavg);
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f[..3], ["0.00", "0.00", "0.00"], "{name}: no sample yet");
        let (r, t) = f[3].split_once('/').expect("running/total");
        let r: usize = r.parse().expect("number");
        let t: usize = t.parse().expect("number");
        // The captures hold a handful of container tasks, not the host's hundreds;
        // the reader itself counts as running.
        assert!(r >= 1 && r <= t && t < 20, "{name}: {l}");
        let host_last = host(name, "proc/loadavg");
        let host_last = host_last.split_whitespace().nth(4).unwrap_or_default();
        if name == "v1" {
            // The v1 reader shares the daemon's pid namespace: the host's.
            assert_eq!(f[4], host_last);
        } else {
            // The v2 reader (host pid 141) is pid 2 of its namespace (NSpid
            // "141 2"): never the host's pid counter.
            assert_eq!(f[4], "2");
        }
    }
}

/// Copies a fixture tree (files and symlinks) so a test can damage it.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().expect("file type");
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).expect("link"), &dst)
                .expect("symlink");
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

#[test]
fn malformed_cgroup_file_names_the_file_and_falls_back_to_the_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture("v2"), tmp.path());
    let stat = tmp
        .path()
        .join("sys/fs/cgroup/proclens-fixture/app/memory.stat");
    std::fs::write(&stat, "anon twelve\n").expect("damage");
    let views = Views::new(tmp.path(), Options::default()).expect("views");
    let caller = views.caller(reader("v2")).expect("caller");
    let err = views
        .render(VFile::Meminfo, &caller)
        .expect_err("malformed memory.stat");
    assert!(
        err.to_string().contains("memory.stat"),
        "error names the file: {err}"
    );
    // Rule (section 4, fallbacks): the reader gets the host's file, whole.
    let bytes = views.read(VFile::Meminfo, reader("v2")).expect("fallback");
    assert_eq!(
        String::from_utf8(bytes.to_vec()).expect("utf8"),
        host("v2", "proc/meminfo")
    );
    assert_eq!(views.fallbacks(), 1);
    // A reader that vanished: same fallback, no crash.
    let bytes = views.read(VFile::Stat, 999_999).expect("fallback");
    assert_eq!(
        String::from_utf8(bytes.to_vec()).expect("utf8"),
        host("v2", "proc/stat")
    );
}

/// Fresh by definition (DESIGN 4): a read after a cgroup file changed
/// shows the change, with no wait, through the descriptors the daemon
/// keeps open; a broken file gives the host's file for that read only.
#[test]
fn every_read_shows_the_cgroup_files_as_they_are_now() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture("v2"), tmp.path());
    let pid = reader("v2");
    let views = Views::new(tmp.path(), Options::default()).expect("views");
    let first = String::from_utf8(views.read(VFile::Meminfo, pid).expect("read")).expect("utf8");
    let app = tmp.path().join("sys/fs/cgroup/proclens-fixture/app");
    let usage: u64 = std::fs::read_to_string(app.join("memory.current"))
        .expect("memory.current")
        .trim()
        .parse()
        .expect("a number");
    let free = |text: &str| kb(text)["MemFree"];
    // 64 MiB more in use: the very next read shows 64 MiB less free.
    std::fs::write(
        app.join("memory.current"),
        format!("{}\n", usage + (64 << 20)),
    )
    .expect("write");
    let after = String::from_utf8(views.read(VFile::Meminfo, pid).expect("read")).expect("utf8");
    assert_eq!(free(&first) - free(&after), 64 * 1024, "{after}");

    // A broken cgroup file: the host's file for that read, then the
    // repaired file shows at the next.
    let stat = app.join("memory.stat");
    let good = std::fs::read(&stat).expect("memory.stat");
    std::fs::write(&stat, "anon twelve\n").expect("damage");
    let broken = views.read(VFile::Meminfo, pid).expect("fallback");
    assert_eq!(
        String::from_utf8(broken).expect("utf8"),
        host("v2", "proc/meminfo")
    );
    std::fs::write(&stat, good).expect("repair");
    let repaired = String::from_utf8(views.read(VFile::Meminfo, pid).expect("read")).expect("utf8");
    assert_eq!(repaired, after);
}

// ---------------------------------------------------------------------------
// Hosts far bigger than the test machine (tests/fixtures/make-big.py): the
// captured v1 container on a 256-CPU, 4 TiB host with 300 disks.
// ---------------------------------------------------------------------------

#[test]
fn big_host_cpuset_of_twelve_cpus_in_two_ranges() {
    // cpuset.cpus "8-15,200-203", no quota: n = 12, in cpuset order.
    let cpuinfo = render("big", VFile::Cpuinfo);
    let blocks = cpu_blocks(&cpuinfo);
    assert_eq!(blocks.len(), 12);
    for (i, b) in blocks.iter().enumerate() {
        assert!(
            b.starts_with(&format!("processor\t: {i}\n")),
            "block {i} renumbered"
        );
        assert!(
            b.contains("siblings\t: 12\n") && b.contains("cpu cores\t: 12\n"),
            "block {i}"
        );
    }
    // Host CPU 200 became cpu8: its apicid line (200 in the fixture) is kept.
    assert!(blocks[8].contains("apicid\t\t: 200\n"), "{}", blocks[8]);
    assert_eq!(render("big", VFile::CpuOnline), "0-11\n");

    // stat: cpuacct.usage_all gives CPU k (1 + k) s user and (1 + k) * 10 ms
    // system. cpu0..7 are host CPUs 8..15, cpu8..11 host 200..203; time on
    // the other 244 CPUs is spread evenly over the 12 lines.
    let stat = render("big", VFile::Stat);
    let lines: Vec<Vec<u64>> = stat
        .lines()
        .filter(|l| l.starts_with("cpu"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|x| x.parse().expect("n"))
                .collect()
        })
        .collect();
    assert_eq!(lines.len(), 13, "cpu + 12 cpuN");
    let host_cpus: Vec<u64> = (8..16).chain(200..204).collect();
    let user_s = |k: u64| k + 1; // seconds of user time on host CPU k
    let total_user: u64 = (0..256).map(user_s).sum();
    let visible_user: u64 = host_cpus.iter().map(|k| user_s(*k)).sum();
    let rest_ticks_each = (total_user - visible_user) * 100 / 12;
    for (i, k) in host_cpus.iter().enumerate() {
        let user = lines[i + 1][0];
        let expected = user_s(*k) * 100 + rest_ticks_each;
        assert!(
            user.abs_diff(expected) <= 1,
            "cpu{i} (host {k}): {user} ticks, expected {expected}"
        );
    }
    assert_eq!(
        lines[0][0],
        lines[1..].iter().map(|l| l[0]).sum::<u64>(),
        "cpu = sum of cpuN"
    );
    assert_eq!(
        lines[0][0],
        total_user * 100,
        "all the cgroup's user time is shown"
    );
}

#[test]
fn big_host_without_memory_limit_shows_the_host_and_one_disk() {
    // Both levels are unlimited (PAGE_COUNTER_MAX): MemTotal is the host's 4 TiB.
    let m = kb(&render("big", VFile::Meminfo));
    assert_eq!(m["MemTotal"], 4 * 1024 * 1024 * 1024);
    assert_eq!(m["MemFree"], 4 * 1024 * 1024 * 1024 - 79052);
    // 300 host disks; the container touched vda only.
    let d = render("big", VFile::Diskstats);
    assert_eq!(d.lines().count(), 1);
    assert!(d.contains(" vda "));
}

/// Writes a copy of a fixture whose mountinfo lacks the lines matching `drop`.
fn without_mounts(name: &str, drop: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture(name), tmp.path());
    let mi = tmp.path().join("proc/self/mountinfo");
    let text = std::fs::read_to_string(&mi).expect("mountinfo");
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains(drop)).collect();
    std::fs::write(&mi, kept.join("\n") + "\n").expect("write");
    tmp
}

#[test]
fn v1_host_without_a_cpuset_hierarchy_shows_every_online_cpu() {
    // No cpuset controller: the cpuset is all online CPUs (2), and the 0.5
    // CPU quota caps the count at ceil(0.5) = 1.
    let tmp = without_mounts("v1", " - cgroup cgroup rw,cpuset");
    let views = Views::new(tmp.path(), Options::default()).expect("views");
    let c = views.caller(reader("v1")).expect("caller");
    assert_eq!(views.render(VFile::CpuOnline, &c).expect("online"), "0\n");
    let no_cap = Views::new(tmp.path(), Options { cfs: false }).expect("views");
    let c = no_cap.caller(reader("v1")).expect("caller");
    assert_eq!(
        no_cap.render(VFile::CpuOnline, &c).expect("online"),
        "0-1\n"
    );
}

#[test]
fn v1_host_without_a_memory_hierarchy_serves_the_host_meminfo() {
    // Rule (section 4): no memory controller -> the host file, unchanged.
    let tmp = without_mounts("v1", " - cgroup cgroup rw,memory");
    let views = Views::new(tmp.path(), Options::default()).expect("views");
    let c = views.caller(reader("v1")).expect("caller");
    assert_eq!(
        views.render(VFile::Meminfo, &c).expect("meminfo"),
        host("v1", "proc/meminfo")
    );
    assert_eq!(
        views.render(VFile::Swaps, &c).expect("swaps"),
        host("v1", "proc/swaps")
    );
}

#[test]
fn a_cgroup_removed_mid_read_names_the_missing_file() {
    // The container's memory cgroup vanished between caller resolution and
    // rendering (rmdir after its last task left).
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture("v2"), tmp.path());
    let views = Views::new(tmp.path(), Options::default()).expect("views");
    let c = views.caller(reader("v2")).expect("caller");
    std::fs::remove_dir_all(tmp.path().join("sys/fs/cgroup/proclens-fixture/app")).expect("rm");
    // The first file read there (its own memory.max, on the way up the
    // limits' chain) names the cgroup.
    let err = views.render(VFile::Meminfo, &c).expect_err("cgroup gone");
    assert!(
        err.to_string().contains("proclens-fixture/app/memory."),
        "{err}"
    );
    let err = views.render(VFile::Stat, &c).expect_err("cgroup gone");
    assert!(err.to_string().contains("proclens-fixture/app"), "{err}");
}

#[test]
fn the_root_cgroup_is_the_host() {
    // A reader in the root cgroup gets the host's memory and disk numbers;
    // on v2 the root has no memory.current or io.stat to read.
    for name in ["v1", "v2"] {
        let views = Views::new(&fixture(name), Options::default()).expect("views");
        let c = views.caller_in_cgroup("/").expect("root caller");
        assert_eq!(
            views.render(VFile::Meminfo, &c).expect("meminfo"),
            host(name, "proc/meminfo"),
            "{name}"
        );
        assert_eq!(
            views.render(VFile::Diskstats, &c).expect("diskstats"),
            host(name, "proc/diskstats"),
            "{name}"
        );
        assert_eq!(
            views.render(VFile::Loadavg, &c).expect("loadavg"),
            host(name, "proc/loadavg"),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Issue 16: pressure, vmstat and steal, on the psi-v1 (hybrid, 6.18) and
// psi-v2 (pure v2, 6.1) captures of tests/fixtures/capture-psi.sh.
// ---------------------------------------------------------------------------

/// The container's cgroup in each capture: (fixture, unified cgroup dir,
/// memory dir, I/O counters file, cpu dir).
const PSI: [(&str, &str, &str, &str, &str); 2] = [
    (
        "psi-v1",
        "sys/fs/cgroup/unified/proclens-psi",
        "sys/fs/cgroup/memory/proclens-psi",
        "sys/fs/cgroup/blkio/proclens-psi/blkio.throttle.io_service_bytes_recursive",
        "sys/fs/cgroup/cpu/proclens-psi",
    ),
    (
        "psi-v2",
        "sys/fs/cgroup/proclens-psi",
        "sys/fs/cgroup/proclens-psi",
        "sys/fs/cgroup/proclens-psi/io.stat",
        "sys/fs/cgroup/proclens-psi",
    ),
];

fn pairs(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("name value");
            (k.to_owned(), v.trim().parse().expect("a number"))
        })
        .collect()
}

#[test]
fn pressure_files_are_the_containers_unified_cgroups() {
    for (name, unified, ..) in PSI {
        for (f, file) in [
            (VFile::PressureCpu, "cpu.pressure"),
            (VFile::PressureMemory, "memory.pressure"),
            (VFile::PressureIo, "io.pressure"),
        ] {
            let ours = render(name, f);
            assert_eq!(
                ours,
                host(name, &format!("{unified}/{file}")),
                "{name} {file}"
            );
            assert_ne!(
                ours,
                host(name, &f.host_path()),
                "{name}: not the host's {file}"
            );
        }
    }
}

#[test]
fn vmstat_is_the_containers_memory_stat_and_block_io() {
    for (name, _, memory, io, _) in PSI {
        let ours = render(name, VFile::Vmstat);
        let host_lines = pairs(&host(name, "proc/vmstat"));
        let v: HashMap<String, u64> = pairs(&ours).into_iter().collect();
        // Every host line, in the host's order.
        let keys: Vec<&str> = ours
            .lines()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        let host_keys: Vec<&str> = host_lines.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, host_keys, "{name}");
        let stat = host(name, &format!("{memory}/memory.stat"));
        let m: HashMap<&str, u64> = stat
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k, v.trim().parse().ok()?))
            })
            .collect();
        // v1 names its hierarchical counts total_*.
        let key = |k: &str| -> u64 {
            *m.get(format!("total_{k}").as_str())
                .or_else(|| m.get(k))
                .unwrap_or_else(|| panic!("{name}: no {k} in memory.stat"))
        };
        assert_eq!(v["pgfault"], key("pgfault"), "{name}");
        assert_eq!(v["pgmajfault"], key("pgmajfault"), "{name}");
        let file = if name == "psi-v1" {
            key("cache")
        } else {
            key("file")
        };
        assert_eq!(v["nr_file_pages"], file / 4096, "{name}");
        // bi/bo: the capture's reads and its 16 MiB direct write, in KiB.
        let io = host(name, io);
        let sum = |read: bool| -> u64 {
            io.lines()
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    match (f.as_slice(), read) {
                        ([_, op, n], true) if *op == "Read" => n.parse().expect("bytes"),
                        ([_, op, n], false) if *op == "Write" => n.parse().expect("bytes"),
                        _ => f
                            .iter()
                            .find_map(|kv| {
                                kv.strip_prefix(if read { "rbytes=" } else { "wbytes=" })
                            })
                            .map_or(0, |n| n.parse().expect("bytes")),
                    }
                })
                .sum()
        };
        assert_eq!(v["pgpgout"], 16 * 1024, "{name}: the 16 MiB direct write");
        assert_eq!(v["pgpgout"], sum(false) / 1024, "{name}");
        assert_eq!(v["pgpgin"], sum(true) / 1024, "{name}");
        assert!(v["pgpgin"] >= 96 * 1024, "{name}: the page cache reads");
        // nr_free_pages is meminfo's MemFree, in pages.
        let mi = kb(&render(name, VFile::Meminfo));
        assert_eq!(v["nr_free_pages"], mi["MemFree"] / 4, "{name}");
        // What the cgroup cannot tell is 0, not the host's.
        let h: HashMap<&str, u64> = host_lines.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        for k in ["pgfree", "numa_hit", "nr_dirty_threshold"] {
            assert!(h[k] > 0, "{name}: the host's {k} is 0, nothing to compare");
            assert_eq!(v[k], 0, "{name}: {k}");
        }
    }
}

/// Rule (issue 16): the steal column is the time the container's tasks
/// waited for a CPU (their schedstat run delay) less the time its own quota
/// held it back (cpu.stat), up to what its allowance (its life at the
/// capture, by the capture's own uptime, times its quota) leaves unused:
/// taken out of idle, never out of user or system.
#[test]
fn stat_steal_is_the_tasks_wait_less_their_throttling() {
    for (name, _, _, _, cpu) in PSI {
        let root = fixture(name);
        let env = std::fs::read_to_string(root.join("../capture.env")).expect("capture.env");
        let tasks: Vec<u32> = env
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("tasks="))
            .expect("tasks=")
            .split(',')
            .map(|t| t.parse().expect("a tid"))
            .collect();
        let waited: u64 = tasks
            .iter()
            .map(|t| {
                host(name, &format!("proc/{t}/task/{t}/schedstat"))
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("run delay")
            })
            .sum();
        let cpu_stat = host(name, &format!("{cpu}/cpu.stat"));
        let throttled = cpu_stat
            .lines()
            .find_map(|l| {
                l.strip_prefix("throttled_time ")
                    .map(|v| v.trim().parse::<u64>().expect("ns"))
                    .or_else(|| {
                        l.strip_prefix("throttled_usec ")
                            .map(|v| v.trim().parse::<u64>().expect("us") * 1000)
                    })
            })
            .expect("throttled time");
        assert!(
            waited > throttled + 1_000_000_000,
            "{name}: the two loops waited {waited} ns, throttled {throttled} ns: nothing to see"
        );
        let stat = render(name, VFile::Stat);
        let cpu_line: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .expect("cpu line")
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().expect("ticks"))
            .collect();
        // The allowance in ticks (USER_HZ 100): the init's life by the
        // capture's clock, times the quota (one visible CPU, cpuset 1).
        let init: u32 = env
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("init=")?.parse().ok())
            .expect("init=");
        let start: f64 = host(name, &format!("proc/{init}/stat"))
            .rsplit(')')
            .next()
            .and_then(|f| f.split_whitespace().nth(19)?.parse().ok())
            .expect("start time");
        let uptime: f64 = host(name, "proc/uptime")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .expect("uptime");
        let num = |f: &str| host(name, &format!("{cpu}/{f}")).trim().to_owned();
        let quota = if name == "psi-v1" {
            num("cpu.cfs_quota_us").parse::<f64>().expect("quota")
                / num("cpu.cfs_period_us").parse::<f64>().expect("period")
        } else {
            let max = num("cpu.max");
            let (q, p) = max.split_once(' ').expect("cpu.max");
            q.parse::<f64>().expect("quota") / p.parse::<f64>().expect("period")
        };
        assert!(quota > 0.0 && quota < 1.0, "{name}: quota {quota}");
        let allowance = ((uptime * 100.0 - start) * quota) as u64;
        let (used, idle, steal) = (cpu_line[0] + cpu_line[2], cpu_line[3], cpu_line[7]);
        assert!(
            (used + idle + steal).abs_diff(allowance) <= 2,
            "{name}: used {used} + idle {idle} + steal {steal} ticks, allowance {allowance}:\n{stat}"
        );
        let stall = (waited - throttled) / 10_000_000;
        assert!(
            steal.abs_diff(stall.min(allowance.saturating_sub(used))) <= 2,
            "{name}: steal {steal} ticks, stall {stall}, unused {}:\n{stat}",
            allowance.saturating_sub(used)
        );
        assert!(steal > 100, "{name}: steal {steal} ticks: nothing to see");
    }
}
