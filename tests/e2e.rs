//! End-to-end tests: a real `proclens mount`, real cgroup "containers"
//! (fresh cgroups + pid/mount namespaces with the daemon's files bound over
//! `/proc/...` and `/sys/devices/system/cpu`), and the real tools people run
//! inside containers (free, top, getconf, dd...).
//!
//! The same tests run on cgroup v1 (this host: `cargo test --test e2e`) and
//! on pure cgroup v2 (a Debian kernel under qemu: `tests/vm/run.sh`, which
//! `scripts/test.sh` runs after the host tests); the harness picks the
//! version from `/proc/self/mountinfo` and writes the matching control
//! files. They fail (never skip) when not root, without /dev/fuse, without
//! usable cgroups or a needed tool. All tests are serialized
//! (`common::serial()`): the machine has 2 CPUs and several tests measure
//! CPU time and load.
//!
//! Expected values come from the limits the test sets or from the host's
//! own files and tools, never from the daemon.
//!
//! `PROCLENS_E2E_DAEMON=lxcfs` runs the container tests against lxcfs to
//! check the harness itself; lxcfs is expected to fail some of them.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// The standard container's limit, as a test expectation.
fn standard_memory(c: &Container<'_>) -> u64 {
    c.limits
        .memory_bytes
        .expect("standard container has a memory limit")
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

#[test]
fn free_and_top_show_the_memory_limit() {
    let _serial = serial();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let limit = standard_memory(&c);

    let free = c.sh("free -b");
    assert_eq!(
        free_mem_total(&free),
        limit,
        "`free -b` inside a container with memory.limit_in_bytes={limit} should report it as Mem total:\n{free}"
    );

    // top prints memory in MiB with one decimal: "MiB Mem :    256.0 total, ...".
    let top = c.sh("top -bn1");
    let mem_line = top
        .lines()
        .find(|l| l.starts_with("MiB Mem"))
        .unwrap_or_else(|| panic!("no `MiB Mem` line in top's header:\n{top}"));
    let expected = format!("{:.1} total", limit as f64 / MIB as f64);
    assert!(
        mem_line.contains(&expected),
        "top inside the container should say `{expected}`, got: {mem_line}"
    );

    // The host's own view is untouched (the test process is on the host and
    // never reads through the mount).
    let host = host_tool(&["free", "-b"]);
    let host_total = free_mem_total(&host);
    assert!(
        host_total > limit,
        "the host's `free -b` total ({host_total}) should exceed the container limit ({limit}); \
         otherwise this test cannot tell them apart:\n{host}"
    );
}

// ---------------------------------------------------------------------------
// CPUs
// ---------------------------------------------------------------------------

/// `cpuN` names (N all digits) among whitespace-separated words at line starts.
fn cpu_n_names<'a>(words: impl Iterator<Item = &'a str>) -> Vec<String> {
    words
        .filter(|w| {
            w.strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn one_cpu_cpuset_shows_one_renumbered_cpu() {
    let _serial = serial();
    let host_cpus = host_online_cpus();
    assert!(
        host_cpus.len() >= 2,
        "this test needs a host with at least 2 online CPUs to tell a 1-CPU container from the host (host: {host_cpus:?})"
    );
    let daemon = Daemon::start();
    let limits = Limits::standard();
    // The standard container is pinned to the host's *last* CPU, so seeing
    // cpu0 below means the daemon renumbered, not passed the host through.
    let pinned = limits
        .cpus
        .clone()
        .expect("standard container has a cpuset");
    let c = Container::new(&daemon, limits);

    let cpuinfo = c.sh("cat /proc/cpuinfo");
    let processors: Vec<&str> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .collect();
    assert_eq!(
        processors.len(),
        1,
        "/proc/cpuinfo in a container with cpuset.cpus={pinned} should have exactly one processor block:\n{cpuinfo}"
    );
    let number = processors[0].split_once(':').map(|(_, n)| n.trim());
    assert_eq!(
        number,
        Some("0"),
        "the one processor should be renumbered 0: {:?}",
        processors[0]
    );

    // glibc 2.36's sysconf(_SC_NPROCESSORS_ONLN) reads
    // /sys/devices/system/cpu/online (checked with strace), so this goes
    // through the bind mount, not sched_getaffinity.
    let getconf = c.sh("getconf _NPROCESSORS_ONLN");
    assert_eq!(
        getconf.trim(),
        "1",
        "getconf _NPROCESSORS_ONLN inside the container"
    );

    let stat = c.sh("cat /proc/stat");
    let cpus = cpu_n_names(stat.lines().filter_map(|l| l.split_whitespace().next()));
    assert_eq!(
        cpus,
        ["cpu0"],
        "/proc/stat should have exactly one per-CPU line, cpu0:\n{stat}"
    );
    assert!(
        stat.lines()
            .any(|l| l.split_whitespace().next() == Some("cpu")),
        "/proc/stat lost its aggregate `cpu` line:\n{stat}"
    );

    let ls = c.sh("ls -1 /sys/devices/system/cpu");
    let dirs = cpu_n_names(ls.lines().map(str::trim));
    assert_eq!(
        dirs,
        ["cpu0"],
        "`ls /sys/devices/system/cpu` should show cpu0 as the only cpuN:\n{ls}"
    );

    let online = c.sh("cat /sys/devices/system/cpu/online");
    assert_eq!(
        online.trim(),
        "0",
        "/sys/devices/system/cpu/online inside the container"
    );
}

/// DESIGN.md section 4: `possible` and `present` say `0-(n-1)` as well
/// (some tools size their per-CPU tables from `possible`).
#[test]
fn sysfs_possible_and_present_match_the_cpuset() {
    let _serial = serial();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    for file in ["possible", "present"] {
        let text = c.sh(&format!("cat /sys/devices/system/cpu/{file}"));
        assert_eq!(
            text.trim(),
            "0",
            "/sys/devices/system/cpu/{file} in a 1-CPU container"
        );
    }
}

// ---------------------------------------------------------------------------
// Uptime
// ---------------------------------------------------------------------------

/// The host must have been up clearly longer than a fresh container, or a
/// daemon passing the host's uptime through would pass. A freshly booted
/// test VM waits (at most `MIN` seconds) rather than fails.
fn host_uptime_long_enough() -> f64 {
    const MIN: f64 = 30.0;
    let host_up = uptime_secs(&read("/proc/uptime"));
    if host_up < MIN {
        std::thread::sleep(Duration::from_secs_f64(MIN - host_up));
    }
    let host_up = uptime_secs(&read("/proc/uptime"));
    assert!(host_up >= MIN, "host uptime {host_up} s after waiting");
    host_up
}

#[test]
fn uptime_is_the_containers_age() {
    let _serial = serial();
    let host_up = host_uptime_long_enough();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());

    // `cat` is a child of the namespace's pid 1 (sh), which started ~3 s
    // before the read: the container's uptime is that process's age.
    let text = c.sh("sleep 3; cat /proc/uptime");
    let up = uptime_secs(&text);
    assert!(
        up < 30.0,
        "container uptime {up} s (from {text:?}) should be under 30 s; the host's is {host_up} s"
    );
    assert!(
        up < host_up - 10.0,
        "container uptime {up} s should be well below the host's {host_up} s"
    );
    assert!(
        up >= 2.5,
        "container uptime {up} s: its pid 1 started ~3 s before the read, so it should be at least 2.5 s"
    );

    // The idle field is summed over the visible CPUs (one here), so it
    // cannot exceed uptime x 1.
    let idle: f64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no idle field in {text:?}"));
    assert!(
        idle <= up + 0.5,
        "container idle {idle} s exceeds uptime {up} s x 1 visible CPU (from {text:?})"
    );
}

/// Beyond the brief: a process that *entered* a running container (like
/// `docker exec` or `nsenter`) has no ancestor inside the container's pid
/// namespace, yet `uptime` run that way must still show the container's
/// age, i.e. the age of the namespace's pid 1, not ~0.
#[test]
fn uptime_in_an_entered_process_is_the_containers_age() {
    let _serial = serial();
    host_uptime_long_enough();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let init = c.spawn(&["sleep", "600"]);
    std::thread::sleep(Duration::from_secs(4));
    let out = c.exec(&init, &["cat", "/proc/uptime"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cat /proc/uptime via nsenter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = uptime_secs(&text);
    assert!(
        (3.0..60.0).contains(&up),
        "uptime read by an nsenter'ed process (like `docker exec`) should be the age of the \
         container's pid 1 (~4 s), got {text:?}"
    );
}

// ---------------------------------------------------------------------------
// Disk I/O
// ---------------------------------------------------------------------------

/// The container's 16 MiB O_DIRECT write shows in its diskstats as ~32768
/// sectors written, while a host process writes to the same disk at the
/// same time: the container must see its own writes only (v1
/// `blkio.throttle.io_service_bytes_recursive`, v2 `io.stat`).
#[test]
fn direct_write_shows_in_container_diskstats() {
    let _serial = serial();
    let daemon = Daemon::start();
    let limits = Limits::standard();
    let c = Container::new(&daemon, limits);
    assert_container_write_is_counted(&c, "standard container");
}

const SECTORS_WRITTEN: usize = 10;

/// Writes 16 MiB with O_DIRECT to /var/tmp from inside `c` while a host
/// writer rewrites another file on the same disk, and checks the
/// container's and the host's diskstats.
fn assert_container_write_is_counted(c: &Container<'_>, what: &str) {
    let tmp = Path::new("/var/tmp");
    let disk = disk_of(tmp);
    let target = tmp.join(format!("{}.dd", unique_name()));
    let _cleanup = RemoveOnDrop(target.clone());
    let expected_sectors = 16 * MIB / 512; // 32768

    let host_sectors = || {
        diskstats_field(&read("/proc/diskstats"), &disk.name, SECTORS_WRITTEN)
            .unwrap_or_else(|| panic!("host /proc/diskstats has no {} line", disk.name))
    };
    let host_before = host_sectors();
    let writer = HostWriter::start(tmp, 2);
    // O_DIRECT so the write is issued by dd itself (charged to its
    // cgroup) instead of later by a writeback kworker outside it. The read
    // right after it must show it: every read is fresh.
    let script = format!(
        "dd if=/dev/zero of={t} bs=1M count=16 oflag=direct 2>/dev/null && rm -f {t} && cat /proc/diskstats",
        t = target.display()
    );
    let inside = c.sh(&script);
    let host_wrote = writer.stop();
    let host_after = host_sectors();

    let written = diskstats_field(&inside, &disk.name, SECTORS_WRITTEN).unwrap_or_else(|| {
        panic!(
            "{what}: the container's /proc/diskstats has no line for {} after writing to it:\n{inside}",
            disk.name
        )
    });
    let low = expected_sectors * 97 / 100;
    let high = expected_sectors * 105 / 100;
    assert!(
        (low..=high).contains(&written),
        "{what}: the container wrote 16 MiB = {expected_sectors} sectors to {} with O_DIRECT while \
         the host wrote {} MiB to it; the container's diskstats says {written} sectors written \
         (accepted {low}..={high}):\n{inside}",
        disk.name,
        host_wrote / MIB
    );
    let host_expected = expected_sectors + host_wrote / 512;
    assert!(
        host_wrote >= 2 * MIB && host_after >= host_before + host_expected,
        "sanity: the host's {} sectors-written grew by {} during the test; the container and \
         the host writer wrote {host_expected} sectors",
        disk.name,
        host_after - host_before
    );
    assert!(
        host_after > written,
        "the host's {} sectors written ({host_after}) should exceed the container's ({written})",
        disk.name
    );
}

// ---------------------------------------------------------------------------
// Load average
// ---------------------------------------------------------------------------

/// pid 1 of a loadavg container: starts `argv[1]` busy loops, then prints
/// `<seconds since start> <contents of /proc/loadavg>` every 2.5 s. One
/// long-lived reader rather than a fresh container instance per sample:
/// each instance start (unshare, 8 mounts, cat) is runnable for tens of ms
/// and a 5 s sampling tick landing on it would lift the idle container's
/// load to 0.08.
const LOADAVG_READER: &str = r#"
import subprocess, sys, time
for _ in range(int(sys.argv[1])):
    subprocess.Popen(["sh", "-c", "while :; do :; done"])
t0 = time.monotonic()
while True:
    with open("/proc/loadavg") as f:
        line = f.read().strip()
    print("%.1f %s" % (time.monotonic() - t0, line), flush=True)
    time.sleep(2.5)
"#;

/// (seconds, load1, load5, load15) from the reader's lines.
fn parse_load_samples(lines: &[String]) -> Vec<(f64, f64, f64, f64)> {
    lines
        .iter()
        .map(|l| {
            let f: Vec<f64> = l
                .split_whitespace()
                .take(4)
                .map(|x| x.parse().unwrap_or(f64::NAN))
                .collect();
            assert!(
                f.len() == 4 && f.iter().all(|x| x.is_finite()),
                "unparsable loadavg sample {l:?}"
            );
            (f[0], f[1], f[2], f[3])
        })
        .collect()
}

fn drain_lines(s: &Spawned) -> Vec<String> {
    std::iter::from_fn(|| s.next_line(Duration::from_millis(10))).collect()
}

#[test]
fn loadavg_tracks_the_containers_runnable_tasks() {
    let _serial = serial();
    let daemon = Daemon::start();
    // Both containers keep the standard 50% quota on one CPU. A
    // CFS-throttled task still shows state R in /proc/<pid>/stat (checked on
    // this 6.18 kernel: 400/400 samples of two throttled busy loops were R),
    // and the daemon counts tasks in R or D, so A has 2 runnable tasks.
    let a = Container::new(&daemon, Limits::standard());
    let b = Container::new(&daemon, Limits::standard());
    let mut busy = a.spawn(&["python3", "-u", "-c", LOADAVG_READER, "2"]);
    let mut idle = b.spawn(&["python3", "-u", "-c", LOADAVG_READER, "0"]);

    // Kernel formula, 2 tasks, sampled every 5 s: load1 = 2(1 - (1884/2048)^k)
    // after k samples: ~0.79 at 30 s, ~0.97 at 40 s.
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(41));
    assert!(
        busy.is_running(),
        "busy container's reader died: {}",
        busy.stderr_text()
    );
    assert!(
        idle.is_running(),
        "idle container's reader died: {}",
        idle.stderr_text()
    );
    let a_lines = drain_lines(&busy);
    let b_lines = drain_lines(&idle);
    let a_samples = parse_load_samples(&a_lines);
    let b_samples = parse_load_samples(&b_lines);
    let report = format!(
        "busy container A:\n{}\nidle container B:\n{}",
        a_lines.join("\n"),
        b_lines.join("\n")
    );
    println!("{report}"); // visible with --nocapture
    assert!(
        a_samples.len() >= 12 && b_samples.len() >= 12,
        "expected a sample every 2.5 s for {:?}; got {} and {}:\n{report}",
        start.elapsed(),
        a_samples.len(),
        b_samples.len()
    );

    let last = a_samples.last().expect("samples");
    assert!(
        last.0 >= 35.0,
        "last sample of A at {} s, expected >= 35 s:\n{report}",
        last.0
    );
    assert!(
        last.1 > 0.5,
        "A runs 2 busy loops; after {:.0} s its 1-minute load should be > 0.5, got {}:\n{report}",
        last.0,
        last.1
    );
    for pair in a_samples.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1 - 0.02,
            "A's 1-minute load should keep rising while 2 tasks are runnable; it fell from {} to {} at {} s:\n{report}",
            pair[0].1,
            pair[1].1,
            pair[1].0
        );
    }
    let early = a_samples
        .iter()
        .find(|s| s.0 >= 10.0)
        .expect("a sample after 10 s");
    assert!(
        last.1 > early.1,
        "A's 1-minute load did not rise between {} s and {} s:\n{report}",
        early.0,
        last.0
    );
    // At most A's 2 loops plus its reader can ever be counted; more means
    // the host's or another container's tasks leaked in.
    assert!(
        a_samples.iter().all(|s| s.1 <= 2.5),
        "A's load exceeds what its own tasks can produce:\n{report}"
    );

    // B's only task is its reader. Tracking starts when it opens
    // /proc/loadavg, and it is in D state, waiting on the FUSE request,
    // until the read at offset 0 renders again. A 5 s tick landing in that
    // window counts it once, as the kernel would count a reader running at
    // its tick: 1 - 1884/2048 = 0.08 at most (seen under qemu TCG, where
    // the window is wide). Two hits would be 0.15; any task of A's or the
    // host's leaking in would be far more.
    for s in &b_samples {
        assert!(
            s.1 <= 0.08 && s.2 <= 0.02 && s.3 <= 0.01,
            "the idle container B's load average should stay at most one sample of its own \
             reader (0.08 0.02 0.01), got {} {} {} at {} s:\n{report}",
            s.1,
            s.2,
            s.3,
            s.0
        );
    }
}

// ---------------------------------------------------------------------------
// CPU usage in top
// ---------------------------------------------------------------------------

/// `top -b -n2 -d2` and the idle % of its second frame, which covers
/// exactly the 2 s between frames. The first frame's interval is top's own
/// start-up (procps-ng 4 showed 100% us there even in the idle container,
/// top itself being the only thing running), so it is not asserted on.
fn top_second_frame_idle(c: &Container<'_>, prelude: &str) -> (f64, String) {
    let out = c.sh(&format!("{prelude} sleep 2; top -b -n2 -d2"));
    println!("{out}"); // visible with --nocapture
    let idles = top_idle_percents(&out);
    assert_eq!(
        idles.len(),
        2,
        "expected two %Cpu(s) lines from top -n2:\n{out}"
    );
    (idles[1], out)
}

#[test]
fn top_shows_a_saturated_quota_as_busy_and_an_idle_container_as_idle() {
    let _serial = serial();
    let daemon = Daemon::start();

    // One busy loop against a 50% quota: the container uses all it may, so
    // per DESIGN.md its CPUs are ~100% busy even though the host CPU is half idle.
    let busy = Container::new(&daemon, Limits::standard());
    let (idle_pct, out) = top_second_frame_idle(&busy, "(while :; do :; done) &");
    assert!(
        idle_pct < 15.0,
        "top in a container saturating its 50% quota should show < 15% idle, got {idle_pct}%:\n{out}"
    );
    drop(busy);

    let quiet = Container::new(&daemon, Limits::standard());
    let (idle_pct, out) = top_second_frame_idle(&quiet, "");
    assert!(
        idle_pct > 85.0,
        "top in an idle container should show > 85% idle, got {idle_pct}%:\n{out}"
    );
}

// ---------------------------------------------------------------------------
// CPU quota (v1 cpu.cfs_quota_us, v2 cpu.max) and visible CPUs
// ---------------------------------------------------------------------------

/// The visible CPU count DESIGN.md section 3 asks for: the cpuset's size,
/// capped by ceil(quota / period).
fn expected_visible_cpus(cpuset: usize, cfs: Option<(u64, u64)>) -> usize {
    match cfs {
        Some((q, p)) => cpuset.min(q.div_ceil(p) as usize),
        None => cpuset,
    }
}

/// Checks every file that says how many CPUs there are, read in one
/// container instance: cpuinfo's processor blocks (numbered from 0), sysfs
/// `online`, `getconf _NPROCESSORS_ONLN` (glibc reads `online`), the
/// `cpuN` lines of /proc/stat and the `cpuN` directories in sysfs.
fn assert_visible_cpus(c: &Container<'_>, n: usize, what: &str) {
    let out = c.sh(
        "cat /proc/cpuinfo; echo @@; cat /sys/devices/system/cpu/online; echo @@; \
         getconf _NPROCESSORS_ONLN; echo @@; cat /proc/stat; echo @@; ls -1 /sys/devices/system/cpu",
    );
    let parts: Vec<&str> = out.split("@@\n").collect();
    assert_eq!(parts.len(), 5, "{what}: unexpected output:\n{out}");
    let (cpuinfo, online, getconf, stat, ls) = (parts[0], parts[1], parts[2], parts[3], parts[4]);
    let numbers: Vec<String> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
        .collect();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(
        numbers, want,
        "{what}: /proc/cpuinfo should have processors 0..{n}:\n{cpuinfo}"
    );
    let want_online = if n == 1 {
        "0".to_owned()
    } else {
        format!("0-{}", n - 1)
    };
    assert_eq!(
        online.trim(),
        want_online,
        "{what}: /sys/devices/system/cpu/online"
    );
    assert_eq!(
        getconf.trim(),
        n.to_string(),
        "{what}: getconf _NPROCESSORS_ONLN"
    );
    let want_names: Vec<String> = (0..n).map(|i| format!("cpu{i}")).collect();
    assert_eq!(
        cpu_n_names(stat.lines().filter_map(|l| l.split_whitespace().next())),
        want_names,
        "{what}: per-CPU lines of /proc/stat:\n{stat}"
    );
    assert_eq!(
        cpu_n_names(ls.lines().map(str::trim)),
        want_names,
        "{what}: cpuN directories in /sys/devices/system/cpu:\n{ls}"
    );
}

/// A fractional quota (50000/100000) on all CPUs: one CPU visible, and top
/// shows a container that uses all of its half CPU as ~100% busy.
#[test]
fn fractional_quota_shows_one_cpu_and_top_shows_it_saturated() {
    let _serial = serial();
    let host = host_online_cpus().len();
    assert!(host >= 2, "this test needs a host with 2 or more CPUs");
    let daemon = Daemon::start();
    let cfs = Some((50_000, 100_000));
    let c = Container::new(
        &daemon,
        Limits {
            cpus: None,
            cfs,
            ..Limits::standard()
        },
    );
    let n = expected_visible_cpus(host, cfs);
    assert_eq!(n, 1, "ceil(0.5) caps the {host} host CPUs at 1");
    assert_visible_cpus(&c, n, "quota 50000/100000 on all CPUs");
    let (idle_pct, out) = top_second_frame_idle(&c, "(while :; do :; done) &");
    assert!(
        idle_pct < 15.0,
        "top in a container saturating a 0.5-CPU quota spread over {host} CPUs should show \
         < 15% idle, got {idle_pct}%:\n{out}"
    );
}

/// A quota above one CPU (150000/100000) on 2 CPUs: both visible.
#[test]
fn quota_above_one_cpu_shows_two_cpus() {
    let _serial = serial();
    let host = host_online_cpus().len();
    assert!(host >= 2, "this test needs a host with 2 or more CPUs");
    let daemon = Daemon::start();
    let cfs = Some((150_000, 100_000));
    let c = Container::new(
        &daemon,
        Limits {
            cpus: None,
            cfs,
            ..Limits::standard()
        },
    );
    let n = expected_visible_cpus(host, cfs);
    assert_eq!(n, 2, "ceil(1.5) = 2 on a {host}-CPU host");
    assert_visible_cpus(&c, n, "quota 150000/100000 on all CPUs");
}

// ---------------------------------------------------------------------------
// Nested cgroups
// ---------------------------------------------------------------------------

/// A limit on the container's parent cgroup bounds it even when its own
/// limit is higher: the effective limit is the minimum over the hierarchy.
#[test]
fn nested_cgroups_show_the_hierarchy_minimum() {
    let _serial = serial();
    let host = host_online_cpus().len();
    assert!(host >= 2, "this test needs a host with 2 or more CPUs");
    let daemon = Daemon::start();
    let parent = Limits {
        memory_bytes: Some(192 * MIB),
        cfs: Some((50_000, 100_000)),
        ..Limits::none()
    };
    // v2 lets a child's cpu.max exceed its parent's (the parent still
    // bounds it); v1 refuses a child quota above the parent's with EINVAL
    // (kernel/sched/core.c tg_cfs_schedulable_down), so there the child
    // keeps "no quota of its own".
    let child_cfs = match cgroup_version() {
        CgroupVersion::V2 => Some((150_000, 100_000)),
        CgroupVersion::V1 => None,
    };
    let child = Limits {
        memory_bytes: Some(512 * MIB),
        cfs: child_cfs,
        ..Limits::none()
    };
    let c = Container::nested(&daemon, parent, child);

    let meminfo = c.sh("cat /proc/meminfo");
    assert_eq!(
        meminfo_kb(&meminfo, "MemTotal"),
        Some(192 * 1024),
        "parent memory limit 192 MiB, child 512 MiB, container in the child: MemTotal should \
         be the parent's 192 MiB:\n{meminfo}"
    );
    let free = c.sh("free -b");
    assert_eq!(
        free_mem_total(&free),
        192 * MIB,
        "`free -b` in the child of a 192 MiB parent:\n{free}"
    );
    // min(0.5, 1.5) = 0.5 CPU: one visible.
    assert_visible_cpus(
        &c,
        expected_visible_cpus(host, Some((50_000, 100_000))),
        "parent quota 0.5 CPU, child 1.5 (v2) / none (v1)",
    );

    let by_path = checked_stdout(
        host_command(proclens_bin()).args(["show", "meminfo", "--cgroup", c.cgroup_path()]),
        RUN_TIMEOUT,
    );
    assert_eq!(
        meminfo_kb(&by_path, "MemTotal"),
        Some(192 * 1024),
        "proclens show meminfo --cgroup {}:\n{by_path}",
        c.cgroup_path()
    );
}

/// A container whose limits are on its root cgroup X while its processes
/// run in the leaf X/app (systemd-managed or nested containers do this;
/// on v2 X cannot hold processes once it delegates controllers to app).
/// The reader's cgroup is X/app, which has no limits of its own: it must
/// see X's limits, and uptime, loadavg, stat and diskstats must still
/// describe the container.
#[test]
fn container_in_a_leaf_below_its_root_cgroup_sees_the_root_limits() {
    let _serial = serial();
    let host_up = host_uptime_long_enough();
    let daemon = Daemon::start();
    let root = Limits::standard();
    let limit = root.memory_bytes.expect("standard memory limit");
    let (quota, period) = root.cfs.expect("standard quota");
    let c = Container::nested(&daemon, root, Limits::none());

    let out = c.sh(
        "sleep 3; cat /proc/meminfo; echo @@; cat /proc/uptime; echo @@; cat /proc/loadavg; \
         echo @@; head -1 /proc/stat; cat /proc/uptime; sleep 2; head -1 /proc/stat; cat /proc/uptime; \
         echo @@; cat /proc/stat",
    );
    let host_loadavg = read("/proc/loadavg");
    let parts: Vec<&str> = out.split("@@\n").collect();
    assert_eq!(parts.len(), 5, "unexpected output:\n{out}");

    assert_eq!(
        meminfo_kb(parts[0], "MemTotal"),
        Some(limit / 1024),
        "MemTotal in X/app should be X's memory limit:\n{}",
        parts[0]
    );

    let up = uptime_secs(parts[1]);
    assert!(
        (2.5..30.0).contains(&up) && up < host_up - 10.0,
        "uptime in X/app should be the container's age (~3 s), got {:?}; host up {host_up} s",
        parts[1]
    );

    // "l1 l5 l15 running/total last": a fresh container has no load yet and
    // a handful of tasks (sh, cat), far fewer than the host.
    let f: Vec<&str> = parts[2].split_whitespace().collect();
    assert_eq!(f.len(), 5, "loadavg: {:?}", parts[2]);
    for v in &f[..3] {
        let load: f64 = v.parse().unwrap_or(f64::NAN);
        assert!(
            (0.0..0.5).contains(&load),
            "a fresh idle container's load should be ~0: {:?}",
            parts[2]
        );
    }
    let (running, total) = f[3].split_once('/').expect("running/total");
    let (running, total): (u32, u32) = (
        running.parse().expect("running"),
        total.parse().expect("total"),
    );
    let host_total: u32 = host_loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|rt| rt.split_once('/'))
        .and_then(|(_, t)| t.parse().ok())
        .expect("host loadavg total");
    assert!(
        (1..=total).contains(&running) && total <= 10 && total < host_total,
        "loadavg in X/app should count the container's own tasks (the reader is running): \
         {:?}; host {host_loadavg:?}",
        parts[2]
    );

    // The aggregate cpu line grows by the container's allowance: quota /
    // period CPUs of wall time (in USER_HZ = 100 ticks per second), not by
    // the host's CPU count.
    let lines: Vec<&str> = parts[3].lines().collect();
    assert_eq!(lines.len(), 4, "stat/uptime samples: {:?}", parts[3]);
    let ticks = |l: &str| -> u64 {
        l.split_whitespace()
            .skip(1)
            .map(|x| x.parse::<u64>().expect("number"))
            .sum()
    };
    let grew = ticks(lines[2]).saturating_sub(ticks(lines[0])) as f64 / 100.0;
    let wall = uptime_secs(lines[3]) - uptime_secs(lines[1]);
    let rate = grew / wall;
    let allowance = quota as f64 / period as f64;
    assert!(
        (allowance * 0.6..allowance * 1.4).contains(&rate),
        "the `cpu` line in X/app should grow by X's {allowance} CPU per second, it grew by {rate:.2} \
         ({grew} s over {wall:.2} s):\n{}",
        parts[3]
    );
    let stat = parts[4];
    assert_eq!(
        cpu_n_names(stat.lines().filter_map(|l| l.split_whitespace().next())),
        ["cpu0"],
        "X's cpuset is one CPU:\n{stat}"
    );
    let procs_running: u32 = stat
        .lines()
        .find_map(|l| l.strip_prefix("procs_running "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no procs_running in /proc/stat:\n{stat}"));
    assert!(
        (1..=10).contains(&procs_running),
        "procs_running in X/app: {procs_running}"
    );

    assert_container_write_is_counted(&c, "container in X/app");
}

// ---------------------------------------------------------------------------
// Swap (v1 memory.memsw.*, v2 memory.swap.*)
// ---------------------------------------------------------------------------

/// Holds N MiB of touched anonymous memory and sleeps.
const MEMORY_HOLDER: &str = r#"
import sys, time
held = bytearray(b"\x01") * (int(sys.argv[1]) << 20)
print("held", flush=True)
time.sleep(600)
"#;

/// A 64 MiB container with 32 MiB of swap holding more than 64 MiB: its
/// SwapTotal is its swap limit (never more than the host has), its swap
/// use is what the kernel charged to its cgroup, in meminfo, `free` and
/// /proc/swaps alike. The v2 VM runs with zram swap and
/// PROCLENS_E2E_REQUIRE_SWAP=1; a host without swap still checks that the
/// container shows none.
#[test]
fn swap_limit_and_usage_show_in_meminfo_free_and_swaps() {
    let _serial = serial();
    let host_swap_kb = meminfo_kb(&read("/proc/meminfo"), "SwapTotal").expect("host SwapTotal");
    if std::env::var("PROCLENS_E2E_REQUIRE_SWAP").as_deref() == Ok("1") {
        assert!(
            host_swap_kb >= 64 * 1024,
            "PROCLENS_E2E_REQUIRE_SWAP=1 but the host has {host_swap_kb} kB of swap (want 64 MiB+)"
        );
    }
    let daemon = Daemon::start();
    let (mem, swap) = (64 * MIB, 32 * MIB);
    let c = Container::new(
        &daemon,
        Limits {
            memory_bytes: Some(mem),
            cpus: None,
            cfs: None,
            ..Limits::standard()
        },
    );
    c.set_swap_limit(swap);
    let total_kb = (swap / 1024).min(host_swap_kb);
    // With room in swap, hold 8 MiB more than the limit (plus python's own
    // ~10 MiB): 18 MiB or so must go to swap. Without, stay well below it.
    let swapping = total_kb == swap / 1024;
    let hold = if swapping { 72 } else { 32 };
    let holder = c.spawn(&["python3", "-u", "-c", MEMORY_HOLDER, &hold.to_string()]);
    assert_eq!(
        holder.next_line(Duration::from_secs(120)).as_deref(),
        Some("held"),
        "the memory holder did not get its {hold} MiB: {}",
        holder.stderr_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = c.swap_usage();
    let out = c.exec(
        &holder,
        &[
            "sh",
            "-c",
            "cat /proc/meminfo; echo @@; cat /proc/swaps; echo @@; free -b",
        ],
    );
    let after = c.swap_usage();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "reading in the container failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parts: Vec<&str> = text.split("@@\n").collect();
    assert_eq!(parts.len(), 3, "unexpected output:\n{text}");
    let (meminfo, swaps, free) = (parts[0], parts[1], parts[2]);
    let report = format!(
        "host swap {host_swap_kb} kB, swap limit {} kB, charged swap {before}..{after} bytes\n{text}",
        swap / 1024
    );
    if swapping {
        assert!(
            before >= 8 * MIB,
            "setup: holding {hold} MiB under a 64 MiB limit should have put 8+ MiB in swap, \
             the cgroup says {before} bytes\n{report}"
        );
    }
    // What the kernel charged, read just before and after the container's
    // read, with 1 MiB of slack for the reading tools themselves.
    let used_ok = |kb: u64| {
        let (lo, hi) = (before.min(after) / 1024, before.max(after) / 1024);
        kb + 1024 >= lo && kb <= hi + 1024
    };

    assert_eq!(
        meminfo_kb(meminfo, "MemTotal"),
        Some(mem / 1024),
        "MemTotal\n{report}"
    );
    assert_eq!(
        meminfo_kb(meminfo, "SwapTotal"),
        Some(total_kb),
        "SwapTotal should be the swap limit clamped to the host's swap\n{report}"
    );
    let swap_free = meminfo_kb(meminfo, "SwapFree").expect("SwapFree");
    assert!(
        swap_free <= total_kb && used_ok(total_kb - swap_free),
        "SwapTotal - SwapFree = {} kB should be the swap charged to the cgroup\n{report}",
        total_kb - swap_free
    );

    let entries: Vec<Vec<&str>> = swaps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    if total_kb == 0 {
        assert!(
            entries.is_empty(),
            "no swap, no /proc/swaps entry\n{report}"
        );
    } else {
        assert_eq!(entries.len(), 1, "one swap entry\n{report}");
        let e = &entries[0];
        assert_eq!(
            e.get(2).and_then(|s| s.parse().ok()),
            Some(total_kb),
            "/proc/swaps size\n{report}"
        );
        let used: u64 = e.get(3).and_then(|s| s.parse().ok()).expect("used");
        assert!(used_ok(used), "/proc/swaps used {used} kB\n{report}");
    }

    let row: Vec<u64> = free
        .lines()
        .find_map(|l| l.strip_prefix("Swap:"))
        .map(|r| {
            r.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(row.len(), 3, "free's Swap: row\n{report}");
    assert_eq!(row[0], total_kb * 1024, "free's swap total\n{report}");
    assert!(
        used_ok(row[1] / 1024),
        "free's swap used {}\n{report}",
        row[1]
    );
}

// ---------------------------------------------------------------------------
// The tools, before and after mounting
// ---------------------------------------------------------------------------

/// Column `name` of the row for `dev` in `iostat -d` output.
fn iostat_column(out: &str, dev: &str, name: &str) -> Option<f64> {
    let header: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("Device"))?
        .split_whitespace()
        .collect();
    let i = header.iter().position(|h| *h == name)?;
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&dev))?
        .get(i)?
        .parse()
        .ok()
}

/// `free -m`, `top -bn1 | head -5` and `iostat -d` in one container, first
/// without the bind mounts (the host's values), then with them. With
/// PROCLENS_E2E_REPORT=<file> both are appended there verbatim (the VM
/// runner collects them).
#[test]
fn tools_before_and_after_mounting() {
    let _serial = serial();
    assert!(
        which("iostat").is_some(),
        "iostat (sysstat) not found in {TOOL_PATH}"
    );
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let limit = standard_memory(&c);
    let disk = disk_of(Path::new("/var/tmp"));
    let target = Path::new("/var/tmp").join(format!("{}.dd", unique_name()));
    let _cleanup = RemoveOnDrop(target.clone());
    c.sh(&format!(
        "dd if=/dev/zero of={t} bs=1M count=16 oflag=direct 2>/dev/null && rm -f {t}",
        t = target.display()
    ));
    let script = "free -m; echo; top -bn1 | head -5; echo; iostat -d";
    let before = c.sh_without_binds(script);
    let after = c.sh(script);
    let report = format!(
        "== cgroup {} container {} (memory 256M, cpuset {}, quota 50000/100000), after a 16 MiB \
         O_DIRECT write to {}\n== before (no bind mounts):\n{before}\n== after (proclens files \
         bind-mounted):\n{after}\n",
        c.version().name(),
        c.cgroup_path(),
        c.limits.cpus.as_deref().unwrap_or("all"),
        disk.name
    );
    println!("{report}");
    if let Ok(path) = std::env::var("PROCLENS_E2E_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        f.write_all(report.as_bytes()).expect("write report");
    }

    let host_total = free_mem_total(&host_tool(&["free", "-m"]));
    assert_eq!(
        free_mem_total(&before),
        host_total,
        "without the binds `free -m` shows the host\n{report}"
    );
    assert_eq!(
        free_mem_total(&after),
        limit / MIB,
        "with the binds `free -m` shows the limit\n{report}"
    );
    let expected = format!("{:.1} total", limit as f64 / MIB as f64);
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("MiB Mem") && l.contains(&expected)),
        "top's `MiB Mem` line should say {expected}\n{report}"
    );
    // sysstat 12's iostat reads /sys/block/<disk>/stat (not /proc/diskstats),
    // which the daemon serves per reader and the harness binds.
    let wrtn = iostat_column(&after, &disk.name, "kB_wrtn")
        .unwrap_or_else(|| panic!("no {} kB_wrtn in iostat -d\n{report}", disk.name));
    assert!(
        (wrtn - 16384.0).abs() <= 16384.0 * 0.01,
        "iostat -d in the container: {} kB_wrtn should be the 16384 kB it wrote (1%)\n{report}",
        disk.name
    );
    let host_wrtn = iostat_column(&before, &disk.name, "kB_wrtn")
        .unwrap_or_else(|| panic!("no {} kB_wrtn in iostat -d\n{report}", disk.name));
    assert!(
        host_wrtn > wrtn,
        "without the binds iostat shows the host's writes to {}, more than the container's\n{report}",
        disk.name
    );
}

// ---------------------------------------------------------------------------
// proclens show / diff
// ---------------------------------------------------------------------------

fn proclens(args: &[&str]) -> String {
    checked_stdout(host_command(proclens_bin()).args(args), RUN_TIMEOUT)
}

#[test]
fn show_and_diff_report_the_containers_view() {
    let _serial = serial();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let limit = standard_memory(&c);
    let s = c.spawn(&["sleep", "600"]);
    let pid = s.init_pid().to_string();

    let meminfo = proclens(&["show", "meminfo", "--pid", &pid]);
    let line = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap_or_else(|| {
            panic!("no MemTotal in `proclens show meminfo --pid {pid}`:\n{meminfo}")
        });
    assert_eq!(
        meminfo_kb(&meminfo, "MemTotal"),
        Some(limit / 1024),
        "show meminfo --pid: MemTotal should be the limit in kB: {line}"
    );
    assert!(
        line.trim_end().ends_with(" kB"),
        "MemTotal keeps meminfo's kB unit: {line:?}"
    );

    // The same cgroup named by path (as /proc/<pid>/cgroup shows it).
    let cgroup_path = c.cgroup_path().to_owned();
    let by_path = proclens(&["show", "meminfo", "--cgroup", &cgroup_path]);
    assert_eq!(
        meminfo_kb(&by_path, "MemTotal"),
        Some(limit / 1024),
        "show meminfo --cgroup {cgroup_path}:\n{by_path}"
    );

    let online = proclens(&["show", "cpu/online", "--pid", &pid]);
    assert_eq!(online.trim(), "0", "show cpu/online --pid {pid}");

    let diff = proclens(&["diff", "--pid", &pid]);
    let host_mem =
        meminfo_kb(&read("/proc/meminfo"), "MemTotal").expect("host MemTotal") as f64 * 1024.0;
    let mem_row = diff
        .lines()
        .find_map(|l| quantities_after_label(l, "memory total").map(|q| (l, q)))
        .unwrap_or_else(|| panic!("no `memory total` row in `proclens diff --pid {pid}`:\n{diff}"));
    let (line, q) = mem_row;
    assert!(
        q.len() >= 2,
        "memory total row should hold host and container values: {line:?}"
    );
    assert!(
        q[0].matches(host_mem),
        "memory total row: host value {} should be the host's MemTotal ({host_mem} bytes): {line:?}",
        q[0].text
    );
    assert!(
        q[1].matches(limit as f64),
        "memory total row: container value {} should be the limit ({limit} bytes = 256 MiB): {line:?}",
        q[1].text
    );

    let host_nproc: f64 = host_tool(&["nproc"])
        .trim()
        .parse()
        .expect("nproc prints a number");
    let cpu_row = diff
        .lines()
        .find_map(|l| {
            let label = l[..l.find(|c: char| c.is_ascii_digit()).unwrap_or(l.len())].trim();
            let lower = label.trim_end_matches(':').trim().to_lowercase();
            let is_count =
                lower.contains("cpu") && (lower.contains("count") || lower.ends_with("cpus"));
            if is_count {
                quantities_after_label(l, label).map(|q| (l, q))
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no CPU count row in `proclens diff --pid {pid}`:\n{diff}"));
    let (line, q) = cpu_row;
    assert!(
        q.len() >= 2,
        "CPU count row should hold host and container values: {line:?}"
    );
    assert_eq!(
        (q[0].candidates[0], q[1].candidates[0]),
        (host_nproc, 1.0),
        "CPU count row should show the host's nproc and 1: {line:?}"
    );
}

// ---------------------------------------------------------------------------
// proclens mount: CLI behaviour
// ---------------------------------------------------------------------------

#[test]
fn cli_version_and_mount_help() {
    let _serial = serial();
    let out = run_with_timeout(
        host_command(proclens_bin()).arg("--version"),
        Duration::from_secs(10),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "proclens --version failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "proclens --version should print {}: {stdout:?}",
        env!("CARGO_PKG_VERSION")
    );

    let out = run_with_timeout(
        host_command(proclens_bin()).args(["mount", "--help"]),
        Duration::from_secs(10),
    );
    let help = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        out.status.success(),
        "proclens mount --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in ["usage", "mountpoint", "-v"] {
        assert!(
            help.contains(word),
            "proclens mount --help should mention {word:?}:\n{help}"
        );
    }
}

#[test]
fn cli_signals_unmount_and_exit_zero() {
    let _serial = serial();
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut d = Daemon::start();
        let status = d
            .stop_with(sig)
            .unwrap_or_else(|| panic!("daemon did not exit within 10 s of {sig}"));
        assert!(
            status.success(),
            "daemon should exit 0 on {sig}, got {status}\nlog:\n{}",
            d.log_text()
        );
        assert_eq!(
            mounts_at(d.mountpoint()),
            0,
            "{} still mounted after {sig}",
            d.mountpoint().display()
        );
    }
}

#[test]
fn cli_second_mount_on_a_live_mountpoint_is_refused() {
    let _serial = serial();
    let daemon = Daemon::start();
    let mp = daemon.mountpoint();

    // Without -v, so stderr holds only the refusal.
    let out = try_run_with_timeout(&mut mount_command(mp, false), Duration::from_secs(15))
        .unwrap_or_else(|e| {
            panic!(
                "a second mount on live {} should exit at once with an error, \
                 but it was still running (serving a mount stacked on the first?): {e}",
                mp.display()
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second mount on live {} should fail, it exited {}",
        mp.display(),
        out.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "the refusal should be exactly one line on stderr, got:\n{stderr}"
    );

    assert_eq!(
        mounts_at(mp),
        1,
        "the refused daemon must not leave a mount stacked on {}",
        mp.display()
    );
    let still = run_with_timeout(
        host_command("cat").arg(mp.join("proc/meminfo")),
        Duration::from_secs(10),
    );
    assert!(
        still.status.success() && String::from_utf8_lossy(&still.stdout).contains("MemTotal:"),
        "the first daemon should still serve after the refused second mount: {}",
        String::from_utf8_lossy(&still.stderr)
    );
}

#[test]
fn cli_stale_mount_is_replaced() {
    let _serial = serial();
    let dir = tempfile::Builder::new()
        .prefix("proclens-e2e-")
        .tempdir()
        .expect("temp dir");
    let mut first = Daemon::start_in(dir.path());
    let mp = first.mountpoint().to_owned();
    first.kill_hard();

    // Setup check: a SIGKILLed FUSE daemon leaves its mount behind, dead.
    assert_eq!(
        mounts_at(&mp),
        1,
        "after SIGKILL the dead FUSE mount should still be at {}",
        mp.display()
    );
    let dead = run_with_timeout(
        host_command("cat").arg(mp.join("proc/meminfo")),
        Duration::from_secs(10),
    );
    assert!(
        !dead.status.success(),
        "reading a dead FUSE mount should fail"
    );

    // start_in waits until proc/meminfo reads successfully, i.e. it serves.
    let second = Daemon::start_in(dir.path());
    assert_eq!(
        mounts_at(&mp),
        1,
        "the new daemon should replace the stale mount at {}, not stack on it",
        mp.display()
    );
    let meminfo = run_with_timeout(
        host_command("cat").arg(mp.join("proc/meminfo")),
        Duration::from_secs(10),
    );
    assert!(
        meminfo.status.success() && String::from_utf8_lossy(&meminfo.stdout).contains("MemTotal:"),
        "the new daemon should serve reads: {}",
        String::from_utf8_lossy(&meminfo.stderr)
    );
    drop(second);
    drop(first);
}

// ---------------------------------------------------------------------------
// File semantics
// ---------------------------------------------------------------------------

fn count_processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
}

/// Two containers with the standard limits but for the CPUs: one on a
/// single CPU, one with every CPU and no quota, so that their cpuinfo, stat
/// and cpu/online differ in length.
fn one_cpu_and_all_cpus(daemon: &Daemon) -> (Container<'_>, Container<'_>) {
    let one = Container::new(daemon, Limits::standard());
    let all = Container::new(
        daemon,
        Limits {
            cpus: None,
            cfs: None,
            ..Limits::standard()
        },
    );
    (one, all)
}

/// busybox `cat` copies with sendfile(2), which reads FUSE files through the
/// page cache and stops at the inode's size even with direct I/O; bind-mounted
/// files are opened without a LOOKUP that would refresh it. A reader with a
/// longer file after a reader with a shorter one must still get all of it.
#[test]
fn sendfile_readers_get_their_whole_file_after_a_shorter_reader() {
    let _serial = serial();
    let host_cpus = host_online_cpus().len();
    assert!(host_cpus >= 2, "this test needs a host with 2 or more CPUs");
    let daemon = Daemon::start();
    let (one, all) = one_cpu_and_all_cpus(&daemon);
    // Long-lived containers, entered for each read (like `docker exec`): no
    // new bind mount, so no LOOKUP refreshes the size between readers.
    let one_init = one.spawn(&["sleep", "120"]);
    let all_init = all.spawn(&["sleep", "120"]);
    let cat = |c: &Container<'_>, s: &Spawned, tool: &[&str]| {
        let out = c.exec(s, tool);
        assert!(
            out.status.success(),
            "{tool:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    for round in 0..3 {
        let short = cat(&one, &one_init, &["busybox", "cat", "/proc/cpuinfo"]);
        assert_eq!(
            count_processors(&short),
            1,
            "round {round}: one-CPU container:\n{short}"
        );
        let long = cat(&all, &all_init, &["busybox", "cat", "/proc/cpuinfo"]);
        let by_read = cat(&all, &all_init, &["cat", "/proc/cpuinfo"]);
        assert_eq!(
            count_processors(&long),
            host_cpus,
            "round {round}: sendfile reader truncated:\n{long}"
        );
        assert_eq!(
            long, by_read,
            "round {round}: sendfile and read(2) see the same file"
        );
        assert!(
            long.ends_with("\n\n"),
            "round {round}: whole file, blank line at the end"
        );
    }
}

/// Opens each file, fstat(2)s it, reads it to the end and fstat(2)s it
/// again, `ROUNDS` times; prints the number of mismatches, then the first few.
const SIZE_CHECKER: &str = r#"
import os, sys
rounds, files = int(sys.argv[1]), sys.argv[2:]
bad = []
for r in range(rounds):
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        before = os.fstat(fd).st_size
        data = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        after = os.fstat(fd).st_size
        os.close(fd)
        if before != len(data) or after != len(data):
            bad.append(f"{p} round {r}: fstat {before} then {after}, read {len(data)}")
print(len(bad))
print("\n".join(bad[:10]))
"#;

/// An open file's size is the length of what that open reads, before and
/// after reading it, while another container with longer files reads the
/// same inodes at the same time (its opens raise the shared i_size).
#[test]
fn an_open_files_size_is_what_that_open_reads() {
    let _serial = serial();
    assert!(
        host_online_cpus().len() >= 2,
        "this test needs a host with 2 or more CPUs"
    );
    let daemon = Daemon::start();
    let (one, all) = one_cpu_and_all_cpus(&daemon);
    let files = [
        "/proc/meminfo",
        "/proc/cpuinfo",
        "/proc/stat",
        "/proc/loadavg",
        "/proc/uptime",
        "/proc/diskstats",
        "/proc/swaps",
        "/proc/vmstat",
        "/sys/devices/system/cpu/online",
    ];
    let mut argv = vec!["python3", "-c", SIZE_CHECKER, "300"];
    argv.extend(files);
    let outs = std::thread::scope(|s| {
        let checkers: Vec<_> = [&one, &all]
            .into_iter()
            .map(|c| s.spawn(|| c.run_within(&argv, Duration::from_secs(300))))
            .collect();
        checkers
            .into_iter()
            .map(|t| t.join().expect("checker thread"))
            .collect::<Vec<_>>()
    });
    for (name, out) in ["one CPU", "all CPUs"].iter().zip(outs) {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {text}");
        assert_eq!(
            text.lines().next(),
            Some("0"),
            "{name}: sizes that are not the open's length:\n{text}"
        );
    }
}

/// Counters of the `cpu` and `cpuN` lines of one /proc/stat snapshot.
fn cpu_lines(snapshot: &str) -> Vec<(String, Vec<u64>)> {
    snapshot
        .lines()
        .filter(|l| l.starts_with("cpu"))
        .map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next().unwrap_or_default().to_owned();
            (name, f.map(|x| x.parse().expect("number")).collect())
        })
        .collect()
}

/// DESIGN 4: counters that tools difference over time never go backwards
/// for a container while it lives, even when its quota and cpuset change.
#[test]
fn stat_never_goes_backwards_while_quota_and_cpuset_change() {
    let _serial = serial();
    let cpus = host_online_cpus();
    assert!(
        cpus.len() >= 2,
        "this test needs a host with 2 or more CPUs"
    );
    let all: Vec<String> = cpus.iter().map(u32::to_string).collect();
    let last = all.last().cloned().expect("a CPU");
    let daemon = Daemon::start();
    let c = Container::new(
        &daemon,
        Limits {
            cpus: Some(all.join(",")),
            ..Limits::standard()
        },
    );
    // One busy loop and a reader of /proc/stat every millisecond.
    let reader = r#"
import subprocess, time
busy = subprocess.Popen(["sh", "-c", "while :; do :; done"])
for i in range(2500):
    with open("/proc/stat") as f:
        print(f.read().split("intr")[0].strip().replace("\n", ";"))
    time.sleep(0.001)
busy.kill()
"#;
    let spawned = c.spawn(&["python3", "-u", "-c", reader]);
    let mut snapshots = Vec::new();
    let mut changes = 0;
    let start = Instant::now();
    while let Some(line) = spawned.next_line(Duration::from_secs(20)) {
        snapshots.push(line);
        if snapshots.len() % 100 == 0 {
            let q = [25_000, 150_000, 50_000, 200_000][changes % 4];
            let s = if changes % 3 == 0 {
                last.clone()
            } else {
                all.join(",")
            };
            c.set_cpu_quota(q, 100_000);
            c.set_cpus(&s);
            changes += 1;
        }
    }
    assert!(
        snapshots.len() >= 2400,
        "reader stopped early after {:?}: {}",
        start.elapsed(),
        spawned.stderr_text()
    );
    let mut widths = std::collections::BTreeSet::new();
    for pair in snapshots.windows(2) {
        let (a, b) = (
            cpu_lines(&pair[0].replace(';', "\n")),
            cpu_lines(&pair[1].replace(';', "\n")),
        );
        widths.insert(b.len());
        for (name, now) in &b {
            if let Some((_, before)) = a.iter().find(|(n, _)| n == name) {
                for (i, (x, y)) in before.iter().zip(now).enumerate() {
                    assert!(
                        y >= x,
                        "{name} column {i} went backwards: {x} -> {y}\nbefore: {}\nafter:  {}",
                        pair[0],
                        pair[1]
                    );
                }
            }
        }
    }
    // The visible CPU count really changed under the reader (1 and 2 CPUs,
    // plus the aggregate line).
    assert!(
        widths.len() >= 2,
        "the cpuset/quota changes never showed: {widths:?}"
    );
}

/// Read-only, unknown names, reads past the end.
#[test]
fn the_mount_is_read_only_and_strict_about_names() {
    use std::os::unix::fs::FileExt;
    let _serial = serial();
    let daemon = Daemon::start();
    let mp = daemon.mountpoint();
    let meminfo = mp.join("proc/meminfo");
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&meminfo)
        .expect_err("write open");
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)),
        "opening for write: {err}"
    );
    let err = std::fs::File::create(mp.join("proc/new")).expect_err("create");
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)),
        "create: {err}"
    );
    let err = std::fs::set_permissions(
        &meminfo,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect_err("chmod");
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::EPERM)),
        "chmod: {err}"
    );
    for name in ["proc/nope", "sys/devices/system/cpu/cpu4096", "sys/nope"] {
        let err = std::fs::metadata(mp.join(name)).expect_err(name);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{name}: {err}");
    }
    let f = std::fs::File::open(&meminfo).expect("open");
    let mut buf = [0u8; 64];
    assert_eq!(f.read_at(&mut buf, 1 << 20).expect("read past the end"), 0);
    let n = f.read_at(&mut buf, 0).expect("read at 0");
    assert!(buf[..n].starts_with(b"MemTotal:"), "content from offset 0");
}

/// DESIGN 2.4: a cgroup move shows within about a second.
#[test]
fn a_process_moved_to_another_cgroup_sees_the_new_limit() {
    let _serial = serial();
    let daemon = Daemon::start();
    let small = Container::new(
        &daemon,
        Limits {
            memory_bytes: Some(128 * MIB),
            ..Limits::standard()
        },
    );
    let big = Container::new(&daemon, Limits::standard());
    let reader = r#"
import time
while True:
    with open("/proc/meminfo") as f:
        print(f.readline().split()[1])
    time.sleep(0.1)
"#;
    let r = big.spawn(&["python3", "-u", "-c", reader]);
    let first: u64 = r
        .next_line(Duration::from_secs(10))
        .expect("a line")
        .parse()
        .expect("kB");
    assert_eq!(first, 256 * 1024);
    std::fs::write(
        small.cgroup_dir("memory").join("cgroup.procs"),
        r.init_pid().to_string(),
    )
    .expect("move");
    let moved = Instant::now();
    loop {
        let kb: u64 = r
            .next_line(Duration::from_secs(5))
            .expect("a line")
            .parse()
            .expect("kB");
        if kb == 128 * 1024 {
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_millis(1600),
            "still {kb} kB {:?} after the move",
            moved.elapsed()
        );
    }
}
