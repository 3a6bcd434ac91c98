//! Fidelity: the real tools people run inside containers (procps `free`,
//! `top`, `uptime`, `vmstat`; sysstat `iostat`, `mpstat`; `htop`; busybox
//! `top`; `lscpu`; Python `psutil`) show the container's values, and the
//! numbers agree with what the kernel counted for the container's cgroup.
//!
//! Expected values come from the limits each test sets or from the kernel's
//! own cgroup counters (CPU usage, memory usage), read by this process on the
//! host; never from the daemon's output. Every measured error is printed
//! (`cargo test --test fidelity -- --nocapture`).
//!
//! Written against the harness's public API only and version-neutral: the
//! cgroup counters are read through [`cpu_usage`] and [`memory_usage`],
//! which take whichever of the v1 and v2 files exists.
//!
//! A missing tool (or psutil) fails the test that needs it, with the apt
//! package to install; nothing is skipped.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------
// Helpers: tools, cgroup counters, limits
// ---------------------------------------------------------------------------

/// Debian's interpreter, which has python3-psutil (a pyenv `python3` on a
/// developer's PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// Fails (never skips) when a tool is missing, naming the Debian package.
fn require(tools: &[(&str, &str)]) {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(t, _)| which(t).is_none())
        .map(|(t, pkg)| format!("{t} (apt-get install -y {pkg})"))
        .collect();
    assert!(
        missing.is_empty(),
        "tools needed by this fidelity test are missing from {TOOL_PATH}: {}",
        missing.join(", ")
    );
}

/// `/usr/bin/python3` with psutil importable, or a failure saying how to get it.
fn require_psutil() {
    let out = run_with_timeout(
        host_command(PYTHON).args(["-c", "import psutil; print(psutil.__version__)"]),
        RUN_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{PYTHON} cannot import psutil (apt-get install -y python3 python3-psutil): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Value of `key` in a flat-keyed cgroup file ("key value" per line).
fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Where the kernel counts the container's CPU time: v2 `cpu.stat`
/// usage_usec (in the one directory `cgroup_dir` returns), or v1
/// `cpuacct.usage` in nanoseconds. v1's `cpu.stat` has no usage_usec
/// (nr_periods, nr_throttled, throttled_time...), so its content decides.
#[derive(Debug, Clone)]
enum UsageFile {
    V2CpuStat(PathBuf),
    V1CpuacctUsage(PathBuf),
}

fn usage_file(c: &Container<'_>) -> UsageFile {
    let stat = c.cgroup_dir("cpu").join("cpu.stat");
    match fs::read_to_string(&stat) {
        Ok(t) if flat_key(&t, "usage_usec").is_some() => UsageFile::V2CpuStat(stat),
        _ => UsageFile::V1CpuacctUsage(c.cgroup_dir("cpuacct").join("cpuacct.usage")),
    }
}

/// CPU time the kernel charged to the container's cgroup so far.
fn cpu_usage(c: &Container<'_>) -> Duration {
    match usage_file(c) {
        UsageFile::V2CpuStat(p) => Duration::from_micros(
            flat_key(&read(&p), "usage_usec")
                .unwrap_or_else(|| panic!("no usage_usec in {}", p.display())),
        ),
        UsageFile::V1CpuacctUsage(p) => {
            let text = read(&p);
            Duration::from_nanos(
                text.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", p.display())),
            )
        }
    }
}

/// Memory charged to the container's cgroup: v2 `memory.current`, v1
/// `memory.usage_in_bytes`.
fn memory_usage(c: &Container<'_>) -> u64 {
    let dir = c.cgroup_dir("memory");
    let path = ["memory.current", "memory.usage_in_bytes"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} has neither memory.current nor memory.usage_in_bytes",
                dir.display()
            )
        });
    let text = read(&path);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

/// Number of CPUs in the container's cpuset (the host's when unset).
fn cpuset_size(l: &Limits) -> usize {
    match &l.cpus {
        Some(list) => parse_cpu_list(list).len(),
        None => host_online_cpus().len(),
    }
}

/// CPUs' worth of time the container may use per second of wall time:
/// min(quota/period, cpuset size).
fn allowance(l: &Limits) -> f64 {
    let cpus = cpuset_size(l) as f64;
    match l.cfs {
        Some((quota, period)) => (quota as f64 / period as f64).min(cpus),
        None => cpus,
    }
}

/// Visible CPU count per DESIGN.md: the cpuset size capped at
/// ceil(quota/period).
fn visible_cpus(l: &Limits) -> usize {
    let cpus = cpuset_size(l);
    match l.cfs {
        Some((quota, period)) => cpus.min(quota.div_ceil(period) as usize),
        None => cpus,
    }
}

/// The last two online CPUs as a cpuset list, e.g. "0,1".
fn two_cpus() -> String {
    let cpus = host_online_cpus();
    assert!(
        cpus.len() >= 2,
        "this test needs a host with 2 or more online CPUs, has {cpus:?}"
    );
    let v: Vec<String> = cpus
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(u32::to_string)
        .collect();
    v.join(",")
}

/// The container's memory limit in bytes.
fn limit_bytes(c: &Container<'_>) -> u64 {
    c.limits
        .memory_bytes
        .expect("the container has a memory limit")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------
// Helpers: the disk the container writes to
// ---------------------------------------------------------------------------

/// (major, minor) of the whole disk holding `path`, if it is on a block
/// device (a partition maps to its parent disk).
fn whole_disk_of(path: &Path) -> Option<(u64, u64)> {
    let dev = fs::metadata(path).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let mut sys = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    if sys.join("partition").exists() {
        sys.pop();
    }
    let devno = fs::read_to_string(sys.join("dev")).ok()?;
    let (ma, mi) = devno.trim().split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

/// The disk the container's I/O is accounted on (its blkio/io rule) and a
/// writable directory on it: `/var/tmp` when it is there, else the first
/// mount of that disk.
fn io_target(c: &Container<'_>) -> (BlockDev, PathBuf) {
    let disk = c
        .limits
        .blkio_disk
        .clone()
        .expect("the container has a block I/O rule (Limits::standard sets one)");
    let on_disk = |p: &Path| whole_disk_of(p) == Some((disk.major, disk.minor));
    let dir = std::iter::once(PathBuf::from("/var/tmp"))
        .chain(mountinfo().into_iter().map(|m| m.mount_point))
        .find(|p| p.is_dir() && on_disk(p))
        .unwrap_or_else(|| {
            panic!(
                "no mounted directory on {} ({}:{})",
                disk.name, disk.major, disk.minor
            )
        });
    (disk, dir)
}

// ---------------------------------------------------------------------------
// Helpers: parsing tool output
// ---------------------------------------------------------------------------

/// The rows of a whitespace table whose header line contains `marker`,
/// keyed by column name: every following non-empty line up to a blank one.
fn table_after(out: &str, marker: &str) -> Vec<BTreeMap<String, String>> {
    let mut rows = Vec::new();
    let mut lines = out.lines();
    while let Some(line) = lines.next() {
        if !line.contains(marker) {
            continue;
        }
        let header: Vec<&str> = line.split_whitespace().collect();
        for row in lines.by_ref() {
            if row.trim().is_empty() {
                break;
            }
            let vals: Vec<&str> = row.split_whitespace().collect();
            rows.push(
                header
                    .iter()
                    .zip(vals)
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect(),
            );
        }
    }
    rows
}

fn num(row: &BTreeMap<String, String>, col: &str, ctx: &str) -> f64 {
    row.get(col)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric column {col:?} in {row:?}:\n{ctx}"))
}

/// The `top - ...` frames of `top -b` output.
fn top_frames(out: &str) -> Vec<String> {
    let mut frames: Vec<String> = Vec::new();
    for line in out.lines() {
        if line.starts_with("top - ") {
            frames.push(String::new());
        }
        if let Some(f) = frames.last_mut() {
            f.push_str(line);
            f.push('\n');
        }
    }
    frames
}

/// The three load averages after "load average:" (procps) or
/// "Load average:" (busybox).
fn load_fields(line: &str) -> [f64; 3] {
    let lower = line.to_lowercase();
    let at = lower
        .find("load average:")
        .unwrap_or_else(|| panic!("no `load average:` in {line:?}"));
    let v: Vec<f64> = line[at + "load average:".len()..]
        .split([',', ' ', '\n'])
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| {
            s.parse()
                .unwrap_or_else(|e| panic!("load field {s:?} in {line:?}: {e}"))
        })
        .collect();
    [v[0], v[1], v[2]]
}

// ---------------------------------------------------------------------------
// procps: free, uptime, vmstat (top is with the CPU measurements below)
// ---------------------------------------------------------------------------

#[test]
fn procps_free_shows_the_limit_and_the_cgroups_usage() {
    let _serial = serial();
    require(&[("free", "procps")]);
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let limit = limit_bytes(&c);
    // A long-lived instance entered for the read, so the memory charged to
    // the cgroup around the read is steady (only `free` itself comes and goes).
    let init = c.spawn(&["sleep", "600"]);
    let before = memory_usage(&c);
    let out = c.exec(&init, &["free", "-b"]);
    let after = memory_usage(&c);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "free -b failed: {out:?}");
    println!("{text}");
    // `free`'s header has no label column: values are taken by position.
    let cols = ["total", "used", "free", "shared", "buff/cache", "available"];
    let line = text
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .unwrap_or_else(|| panic!("no Mem: row in free -b:\n{text}"));
    let vals: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().expect("free -b prints integers"))
        .collect();
    assert_eq!(vals.len(), cols.len(), "Mem: columns:\n{text}");
    let get = |name: &str| vals[cols.iter().position(|c| *c == name).expect("column")];
    assert_eq!(
        get("total"),
        limit,
        "`free -b` Mem total should be the memory limit {limit}:\n{text}"
    );
    // MemFree = limit - usage. `free` itself is charged while it runs, so
    // allow 4 MiB around the cgroup's usage measured just before and after.
    let free = get("free");
    let lo = limit.saturating_sub(after.max(before) + 4 * MIB);
    let hi = limit - after.min(before) + 4 * MIB;
    println!(
        "free: {free} B; limit - cgroup usage: {} .. {} B (error {:+.2} MiB)",
        limit - before,
        limit - after,
        (free as f64 - (limit - before) as f64) / MIB as f64
    );
    assert!(
        (lo..=hi).contains(&free),
        "`free -b` free {free} should be limit - cgroup usage ({} before, {} after the read), within 4 MiB:\n{text}",
        limit - before,
        limit - after
    );
    assert!(
        get("available") <= limit && get("available") >= free,
        "available should lie between free and total:\n{text}"
    );
}

/// `uptime` (minutes) and `uptime -s` (the boot instant, now - /proc/uptime,
/// to the second) in a container started 3 s ago. `-s` tells the
/// container from the host even on a VM booted moments ago.
#[test]
fn procps_uptime_in_a_fresh_container() {
    let _serial = serial();
    require(&[("uptime", "procps"), ("date", "coreutils")]);
    let host_up = uptime_secs(&read("/proc/uptime"));
    if host_up < 20.0 {
        // Not a skip: wait until the host's boot is clearly older than the container.
        std::thread::sleep(Duration::from_secs_f64(20.0 - host_up));
    }
    let host_up = uptime_secs(&read("/proc/uptime"));
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let out = c.sh(
        "sleep 3; uptime; s=$(uptime -s); echo \"since=$s since_epoch=$(date -d \"$s\" +%s) now_epoch=$(date +%s)\"",
    );
    println!("{out}");
    let field = |key: &str| -> i64 {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
    };
    let age = field("now_epoch=") - field("since_epoch=");
    println!("uptime -s: container age {age} s (host up {host_up:.0} s)");
    assert!(
        (2..=10).contains(&age),
        "`uptime -s` in a container started ~3 s ago should give a start ~3 s ago (second resolution), \
         got {age} s ago; the host booted {host_up:.0} s ago:\n{out}"
    );
    assert!(
        out.contains(" up 0 min,"),
        "`uptime` in a container started 3 s ago should say `up 0 min`:\n{out}"
    );
    // A fresh idle container's load is at most what one sample with one
    // active task leaves: tracking starts when the bind mount first looks the
    // file up, while the container's setup still runs (under the VM's TCG a
    // task paging in a binary over 9p sits in D state for a while). The
    // discriminating load checks (the host's load > 1 meanwhile) are in
    // `loadavg_follows_the_kernel_formula`.
    let load = load_fields(out.lines().next().unwrap_or_default());
    let one_sample = [0.08, 0.02, 0.01];
    assert!(
        load.iter().zip(one_sample).all(|(got, max)| *got <= max),
        "fresh idle container's load average should be at most {one_sample:?} (one sample \
         of one active task):\n{out}"
    );
}

/// `vmstat 1 2`: memory columns (KiB) and the run queue `r` (procs_running
/// of /proc/stat, which counts the reader itself: procps 4 prints it as is).
#[test]
fn procps_vmstat_memory_and_run_queue() {
    let _serial = serial();
    require(&[("vmstat", "procps")]);
    let daemon = Daemon::start();
    // Two busy loops in `busy`, unthrottled on two CPUs: always runnable,
    // so the host's own procs_running counts them at every instant (a
    // CFS-throttled task is dequeued and would drop out of it).
    let busy = Container::new(
        &daemon,
        Limits {
            cpus: Some(two_cpus()),
            cfs: None,
            ..Limits::standard()
        },
    );
    let idle = Container::new(&daemon, Limits::standard());
    let _loops = busy.spawn(&["sh", "-c", "(while :; do :; done) & while :; do :; done"]);
    let init = idle.spawn(&["sleep", "600"]);
    std::thread::sleep(Duration::from_millis(500));

    let vm = |c: &Container<'_>, s: Option<&Spawned>| -> (String, u64, u64) {
        let before = memory_usage(c);
        let out = match s {
            Some(s) => c.exec(s, &["vmstat", "1", "2"]),
            None => c.run(&["vmstat", "1", "2"]),
        };
        let after = memory_usage(c);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "vmstat 1 2 failed: {out:?}");
        (text, before, after)
    };
    let host_running = || -> u64 {
        read("/proc/stat")
            .lines()
            .find_map(|l| l.strip_prefix("procs_running "))
            .and_then(|v| v.trim().parse().ok())
            .expect("procs_running in the host's /proc/stat")
    };
    let host_before = host_running();
    let (idle_out, before, after) = vm(&idle, Some(&init));
    let host_after = host_running();
    let (busy_out, _, _) = vm(&busy, None);
    println!("idle container:\n{idle_out}\nbusy container (2 loops):\n{busy_out}");

    let rows = table_after(&idle_out, " swpd ");
    assert_eq!(rows.len(), 2, "two vmstat samples:\n{idle_out}");
    let limit_k = (limit_bytes(&idle) / 1024) as f64;
    for r in &rows {
        let (free, buff, cache) = (
            num(r, "free", &idle_out),
            num(r, "buff", &idle_out),
            num(r, "cache", &idle_out),
        );
        let used = limit_k - free - buff - cache;
        let expected_used = (before.min(after) / 1024) as f64;
        println!(
            "vmstat: free {free} + buff {buff} + cache {cache} + used {used} = {limit_k} KiB; \
             cgroup usage {expected_used} KiB (error of free {:+.0} KiB)",
            free - (limit_k - expected_used)
        );
        assert!(
            used >= 0.0,
            "vmstat free+buff+cache ({}) exceeds the 256 MiB limit ({limit_k} KiB):\n{idle_out}",
            free + buff + cache
        );
        let lo = limit_k - (before.max(after) / 1024) as f64 - 4096.0;
        let hi = limit_k - (before.min(after) / 1024) as f64 + 4096.0;
        assert!(
            (lo..=hi).contains(&free),
            "vmstat free {free} KiB should be the limit minus the cgroup's usage ({} .. {} KiB), within 4 MiB:\n{idle_out}",
            limit_k - (before / 1024) as f64,
            limit_k - (after / 1024) as f64
        );
        let r_idle = num(r, "r", &idle_out);
        assert!(
            r_idle <= 1.0,
            "the idle container runs only vmstat, so r should be 0 or 1, got {r_idle} \
             (host procs_running {host_before}..{host_after}, which includes the other container's 2 loops):\n{idle_out}"
        );
    }
    assert!(
        host_before.min(host_after) >= 2,
        "setup: the host's procs_running ({host_before}, {host_after}) should count the busy container's 2 loops, \
         or the idle container's r column proves nothing"
    );
    let rows = table_after(&busy_out, " swpd ");
    assert_eq!(rows.len(), 2, "two vmstat samples:\n{busy_out}");
    for r in &rows {
        let r_busy = num(r, "r", &busy_out);
        assert!(
            (2.0..=3.0).contains(&r_busy),
            "the busy container has 2 busy loops (+ vmstat itself), so r should be 2 or 3, got {r_busy}:\n{busy_out}"
        );
    }

    // vmstat -s: "K total memory", and used + free + buffer + swap cache
    // (procps 4's `cached`) add up to it.
    let s = String::from_utf8_lossy(&idle.exec(&init, &["vmstat", "-s"]).stdout).into_owned();
    let k = |label: &str| -> u64 {
        s.lines()
            .find_map(|l| l.trim().strip_suffix(label))
            .and_then(|v| v.trim().strip_suffix('K'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `K {label}` in vmstat -s:\n{s}"))
    };
    let total = k("total memory");
    assert_eq!(
        total,
        limit_bytes(&idle) / 1024,
        "vmstat -s total memory:\n{s}"
    );
    let sum = k("used memory") + k("free memory") + k("buffer memory") + k("swap cache");
    assert!(
        sum.abs_diff(total) <= 4,
        "vmstat -s: used + free + buffer + swap cache = {sum} K, total {total} K:\n{s}"
    );
}

// ---------------------------------------------------------------------------
// Disk I/O: iostat and psutil
// ---------------------------------------------------------------------------

const WRITE_BYTES: u64 = 16 * MIB;

/// `dd` of 16 MiB with O_DIRECT (so dd itself issues the I/O and it is
/// charged to its cgroup, not to a writeback worker's), then removes the file.
fn direct_write_script(dir: &Path) -> (String, RemoveOnDrop) {
    let target = dir.join(format!("{}.dd", unique_name()));
    let t = shell_quote(&target.to_string_lossy());
    (
        format!("dd if=/dev/zero of={t} bs=1M count=16 oflag=direct 2>/dev/null && rm -f {t}"),
        RemoveOnDrop(target),
    )
}

fn within_one_percent(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.01
}

/// sysstat 12 `iostat -d` reads `/sys/block/<disk>/stat` (strace: it never
/// opens /proc/diskstats), so this checks whether that file shows the
/// container's writes.
#[test]
fn sysstat_iostat_counts_the_containers_writes() {
    let _serial = serial();
    require(&[("iostat", "sysstat"), ("dd", "coreutils")]);
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let (disk, dir) = io_target(&c);
    let (write, _cleanup) = direct_write_script(&dir);
    let out = c.sh(&format!("{write} && iostat -d -k {}", disk.name));
    println!("{out}");
    let rows = table_after(&out, "kB_wrtn");
    let row = rows
        .iter()
        .find(|r| r.get("Device").is_some_and(|d| d == &disk.name))
        .unwrap_or_else(|| panic!("no {} row in iostat -d -k:\n{out}", disk.name));
    let kb = num(row, "kB_wrtn", &out);
    let want = (WRITE_BYTES / 1024) as f64;
    println!(
        "iostat kB_wrtn {kb} vs {want} written: error {:+.2}%",
        (kb - want) / want * 100.0
    );
    assert!(
        within_one_percent(kb, want),
        "the container wrote {want} kB to {} with O_DIRECT; `iostat -d -k` inside says kB_wrtn {kb} \
         (must be within 1%). sysstat 12 reads /sys/block/{}/stat, not /proc/diskstats:\n{out}",
        disk.name,
        disk.name
    );
    assert!(
        out.contains("(1 CPU)"),
        "iostat's header should count the container's 1 CPU:\n{out}"
    );
}

const PSUTIL_DISK: &str = r#"
import psutil, subprocess, sys
disk, script = sys.argv[1], sys.argv[2]
a = psutil.disk_io_counters(perdisk=True).get(disk)
subprocess.run(["sh", "-c", script], check=True)
b = psutil.disk_io_counters(perdisk=True)[disk]
a_bytes = a.write_bytes if a else 0
a_count = a.write_count if a else 0
print(b.write_bytes - a_bytes, b.write_count - a_count, a_bytes)
"#;

#[test]
fn psutil_disk_io_counters_count_the_containers_writes() {
    let _serial = serial();
    require_psutil();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let (disk, dir) = io_target(&c);
    let (write, _cleanup) = direct_write_script(&dir);
    let host_before = diskstats_field(&read("/proc/diskstats"), &disk.name, 10)
        .unwrap_or_else(|| panic!("no {} in the host's /proc/diskstats", disk.name));
    let out = run_with_timeout(
        &mut c.command(&[PYTHON, "-c", PSUTIL_DISK, &disk.name, &write]),
        RUN_TIMEOUT,
    );
    let host_after = diskstats_field(&read("/proc/diskstats"), &disk.name, 10).expect("host line");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "psutil disk script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("integers"))
        .collect();
    let (bytes, count, base) = (f[0] as f64, f[1], f[2]);
    let want = WRITE_BYTES as f64;
    println!(
        "psutil {} write_bytes delta {bytes} (count {count}, before {base}) vs {want}: error {:+.2}%",
        disk.name,
        (bytes - want) / want * 100.0
    );
    assert!(
        within_one_percent(bytes, want),
        "psutil.disk_io_counters(perdisk=True)[{:?}].write_bytes grew by {bytes} over a 16 MiB direct write \
         (must be within 1% of {want})",
        disk.name
    );
    assert!(
        (host_after - host_before) * 512 >= WRITE_BYTES,
        "sanity: the host's {} saw fewer than 16 MiB written meanwhile",
        disk.name
    );
    assert!(
        (base as f64) < (host_before * 512) as f64,
        "psutil's starting write_bytes {base} should be the container's (~0), not the host's {}",
        host_before * 512
    );
}

// ---------------------------------------------------------------------------
// CPUs: mpstat, iostat -c, lscpu, busybox top, psutil
// ---------------------------------------------------------------------------

/// Expected busy % from the cgroup: the CPU time it used over `wall`,
/// relative to its allowance.
fn expected_busy(used: Duration, wall: Duration, l: &Limits) -> f64 {
    used.as_secs_f64() / (wall.as_secs_f64() * allowance(l)) * 100.0
}

/// The cgroup's busy % (of its allowance) over every window of 1.0-1.6 s
/// in `samples` of (time, usage): the range a tool's one-second interval
/// somewhere among them could have seen.
#[derive(Debug)]
struct BusyRange {
    min: f64,
    max: f64,
}

impl BusyRange {
    /// Whether a tool's `busy` is the cgroup's over one of the windows:
    /// within the range, widened by 5 points for the tool's ticks (one
    /// USER_HZ tick of a 50% allowance is 2 points of a second).
    fn admits(&self, busy: f64) -> bool {
        (self.min - 5.0..=self.max.min(100.0) + 5.0).contains(&busy)
    }
}

impl std::fmt::Display for BusyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}-{:.1}% over the 1.0-1.6 s windows of its run",
            self.min, self.max
        )
    }
}

fn busy_range(samples: &[(Instant, Duration)], l: &Limits) -> BusyRange {
    let mut range = BusyRange {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };
    for (i, &(t0, u0)) in samples.iter().enumerate() {
        for &(t1, u1) in &samples[i + 1..] {
            let wall = t1 - t0;
            if (Duration::from_millis(1000)..=Duration::from_millis(1600)).contains(&wall) {
                let busy = expected_busy(u1 - u0, wall, l);
                range.min = range.min.min(busy);
                range.max = range.max.max(busy);
            }
        }
    }
    assert!(
        range.min.is_finite(),
        "the tool ran for less than a second: no window to compare with"
    );
    range
}

#[test]
fn sysstat_mpstat_and_iostat_show_one_saturated_cpu() {
    let _serial = serial();
    require(&[("mpstat", "sysstat"), ("iostat", "sysstat")]);
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    // The tool's interval is some 1 s inside the bracket around its run,
    // and which second it is cannot be seen from outside. So the cgroup's
    // usage is sampled every 10 ms through the run, and the tool must agree
    // with the cgroup's rate over one of the windows it could have measured
    // (1.0-1.6 s long, anywhere in the bracket). On a quiet host every
    // window is ~100% and the range is narrow; where the host takes the CPU
    // away for part of a second, the range widens exactly as far as it did.
    let init = c.spawn(&["sh", "-c", "while :; do :; done"]);
    std::thread::sleep(Duration::from_secs(1));
    let measure = |argv: &[&str]| -> (String, BusyRange) {
        let done = std::sync::atomic::AtomicBool::new(false);
        let (out, samples) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let mut v = vec![(Instant::now(), cpu_usage(&c))];
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    v.push((Instant::now(), cpu_usage(&c)));
                }
                v
            });
            std::thread::sleep(Duration::from_millis(20));
            let out = c.exec(&init, argv);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            (out, sampler.join().expect("sampler"))
        });
        assert!(out.status.success(), "{argv:?} failed: {out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            busy_range(&samples, &c.limits),
        )
    };

    let (mp, want) = measure(&["mpstat", "-P", "ALL", "1", "1"]);
    println!("{mp}");
    let avg: Vec<&str> = mp.lines().filter(|l| l.starts_with("Average:")).collect();
    let rows = table_after(&avg.join("\n"), "%idle");
    let cpus: Vec<&str> = rows
        .iter()
        .map(|r| r.get("CPU").map(String::as_str).unwrap_or("?"))
        .collect();
    assert_eq!(
        cpus,
        ["all", "0"],
        "mpstat -P ALL in a 1-CPU container should list `all` and CPU 0 only:\n{mp}"
    );
    assert!(
        mp.contains("(1 CPU)"),
        "mpstat header should say (1 CPU):\n{mp}"
    );
    // Busy is user and system: the time the container waited for the host
    // is %steal, neither busy nor idle.
    let busy = 100.0 - num(&rows[0], "%idle", &mp) - num(&rows[0], "%steal", &mp);
    println!("mpstat busy {busy:.1}% vs cgroup {want}");
    assert!(
        want.admits(busy),
        "mpstat busy {busy:.1}% vs {want} counted by the cgroup:\n{mp}"
    );

    let (io, want) = measure(&["iostat", "-c", "1", "2"]);
    println!("{io}");
    // Each report is a header row starting with "avg-cpu:" (which shifts
    // the names one column right of their values) and one row of values.
    let lines: Vec<&str> = io.lines().collect();
    let column = |name: &str| -> f64 {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("avg-cpu:"))
            .filter_map(|(i, h)| {
                let col = h.split_whitespace().position(|w| w == name)? - 1;
                lines
                    .get(i + 1)?
                    .split_whitespace()
                    .nth(col)?
                    .parse::<f64>()
                    .ok()
            })
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} in iostat's second report:\n{io}"))
    };
    let busy = 100.0 - column("%idle") - column("%steal");
    println!("iostat -c busy {busy:.1}% vs cgroup {want}");
    assert!(
        want.admits(busy),
        "iostat -c busy {busy:.1}% vs {want} counted by the cgroup:\n{io}"
    );
}

#[test]
fn lscpu_counts_the_containers_cpus() {
    let _serial = serial();
    require(&[("lscpu", "util-linux")]);
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let out = c.sh("lscpu");
    let field = |name: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name:?} in lscpu:\n{out}"))
    };
    assert_eq!(field("CPU(s):"), "1", "lscpu CPU(s):\n{out}");
    assert_eq!(
        field("On-line CPU(s) list:"),
        "0",
        "lscpu On-line CPU(s) list:\n{out}"
    );
    println!(
        "lscpu: CPU(s) {}, on-line {}, NUMA line: {:?}",
        field("CPU(s):"),
        field("On-line CPU(s) list:"),
        out.lines().find(|l| l.starts_with("NUMA node0"))
    );
}

#[test]
fn busybox_top_memory_and_cpu_lines() {
    let _serial = serial();
    require(&[("busybox", "busybox-static")]);
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let out = c.sh("busybox top -bn1; echo ---; busybox free; busybox uptime");
    println!("{out}");
    let mem = out
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .unwrap_or_else(|| panic!("no Mem: line in busybox top:\n{out}"));
    // "Mem: 1000K used, 261144K free, 0K shrd, 0K buff, 36K cached"
    let k = |label: &str| -> u64 {
        mem.split(',')
            .find_map(|f| {
                f.trim()
                    .trim_start_matches("Mem:")
                    .trim()
                    .strip_suffix(label)
            })
            .and_then(|v| v.trim().strip_suffix('K'))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `K {label}` in {mem:?}"))
    };
    let (used, free) = (k(" used"), k(" free"));
    assert_eq!(
        used + free,
        limit_bytes(&c) / 1024,
        "busybox top: used + free should be the 256 MiB limit in K: {mem}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("CPU:") && l.contains("idle")),
        "busybox top should print its CPU: line:\n{out}"
    );
}

const PSUTIL_BASICS: &str = r#"
import psutil
print(psutil.virtual_memory().total, psutil.cpu_count(), psutil.cpu_count(logical=False))
"#;

#[test]
fn psutil_virtual_memory_and_cpu_count() {
    let _serial = serial();
    require_psutil();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let out = c.sh(&format!("{PYTHON} -c {}", shell_quote(PSUTIL_BASICS)));
    println!("psutil: {out}");
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        f.first().copied(),
        Some(limit_bytes(&c).to_string().as_str()),
        "psutil.virtual_memory().total should be the limit: {out}"
    );
    assert_eq!(f.get(1).copied(), Some("1"), "psutil.cpu_count(): {out}");
}

/// Two cpu_times() samples 3 s apart, each taken between two reads of the
/// cgroup's own CPU counter (argv[2], argv[3] = "usec" for v2 cpu.stat or
/// "ns" for v1 cpuacct.usage), so the kernel's count is sampled at the same
/// instant as psutil's: a read from the host after the line arrives would
/// lag by up to a CFS period when the container is throttled.
const PSUTIL_TIMES: &str = r#"
import psutil, subprocess, sys, time
mode, path, unit = sys.argv[1:4]
def usage():
    with open(path) as f:
        text = f.read()
    if unit == "ns":
        return int(text) / 1e9
    return int(dict(l.split() for l in text.splitlines())["usage_usec"]) / 1e6
if mode == "busy":
    subprocess.Popen(["sh", "-c", "while :; do :; done"])
    time.sleep(1)
for i in range(2):
    u0, m0 = usage(), time.monotonic()
    t = psutil.cpu_times()
    u1, m1 = usage(), time.monotonic()
    fields = " ".join("%s=%.2f" % kv for kv in t._asdict().items())
    print("cgroup=%.4f halfwidth=%.4f mono=%.4f %s" % ((u0 + u1) / 2, (u1 - u0) / 2, (m0 + m1) / 2, fields), flush=True)
    if i == 0:
        time.sleep(3)
"#;

/// One sample: cpu_times() fields plus `cgroup` (s) and `mono` (s).
fn psutil_times(c: &Container<'_>, mode: &str) -> [BTreeMap<String, f64>; 2] {
    let (path, unit) = match usage_file(c) {
        UsageFile::V2CpuStat(p) => (p, "usec"),
        UsageFile::V1CpuacctUsage(p) => (p, "ns"),
    };
    let path = path.to_str().expect("utf-8 cgroup path").to_owned();
    let s = c.spawn(&[PYTHON, "-c", PSUTIL_TIMES, mode, &path, unit]);
    let mut v = Vec::new();
    while v.len() < 2 {
        let line = s
            .next_line(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("psutil cpu_times script: {}", s.stderr_text()));
        let m: BTreeMap<String, f64> = line
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect();
        assert!(
            m.contains_key("cgroup") && m.contains_key("idle"),
            "unparsable psutil sample {line:?}"
        );
        v.push(m);
    }
    let b = v.pop().expect("2");
    let a = v.pop().expect("2");
    [a, b]
}

#[test]
fn psutil_cpu_times_follow_the_cgroup() {
    let _serial = serial();
    require_psutil();
    let daemon = Daemon::start();
    let mut idle_rate = None;
    for mode in ["idle", "busy"] {
        let c = Container::new(&daemon, Limits::standard());
        let [a, b] = psutil_times(&c, mode);
        let d = |k: &str| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0);
        for (k, v) in a.iter().filter(|(k, _)| *k != "halfwidth") {
            assert!(
                b[k] >= *v,
                "{mode}: cpu_times().{k} went backwards: {v} -> {}",
                b[k]
            );
        }
        let wall = d("mono");
        let used = d("cgroup");
        let busy = d("user") + d("system") + d("nice");
        let total = busy + d("idle") + d("iowait") + d("irq") + d("softirq") + d("steal");
        let cap = allowance(&c.limits);
        println!(
            "psutil {mode}: over {wall:.2} s, user+system+nice {busy:.2} s vs cgroup {used:.3} s \
             (error {:+.3} s, bracket +-{:.3} s), idle {:.2} s, total {total:.2} s vs allowance x wall {:.3} s (error {:+.3} s)",
            busy - used,
            a["halfwidth"] + b["halfwidth"],
            d("idle"),
            wall * cap,
            total - wall * cap
        );
        // The cgroup's counter brackets each cpu_times() call (the busy
        // loop may run while psutil waits for the daemon), and cpu_times()
        // has USER_HZ (10 ms) resolution per field: 1% + 0.03 s + the
        // brackets' half-widths is all a faithful /proc/stat can be off by.
        let bracket = a["halfwidth"] + b["halfwidth"];
        assert!(
            (busy - used).abs() <= used * 0.01 + 0.03 + bracket,
            "{mode}: psutil user+system+nice grew {busy:.2} s while the cgroup's own counter grew \
             {used:.3} s over the same {wall:.2} s (allowed: 1% + 0.03 s + {bracket:.3} s). On cgroup v1, \
             cpuacct.usage_all's user/system are tick-sampled and run ahead of cpuacct.usage \
             for a CFS-throttled cgroup; cpuacct.stat and v2 cpu.stat scale them to the exact total"
        );
        // A saturated quota can run a little over its allowance within a
        // window that is not aligned to CFS periods; idle then stays 0.
        assert!(
            (total - wall * cap).abs() <= wall * cap * 0.05 + 0.03 || total - busy < 0.015,
            "{mode}: user+system+idle... grew {total:.2} s over {wall:.2} s; the container's allowance \
             ({cap} CPU) makes that {:.3} s",
            wall * cap
        );
        let rate = d("idle") / wall;
        match mode {
            "idle" => {
                assert!(
                    d("idle") >= total * 0.9,
                    "idle container: idle should be ~all of the time, got {:.2} of {total:.2} s",
                    d("idle")
                );
                idle_rate = Some(rate);
            }
            _ => {
                let idle = idle_rate.expect("idle container measured first");
                assert!(
                    rate < idle && d("idle") < busy,
                    "busy container: idle grew {rate:.2} s/s vs {idle:.2} s/s in the idle container, \
                     and should be less than user+system ({busy:.2} s)"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// top: busy % against the cgroup's own count, four scenarios
// ---------------------------------------------------------------------------

/// One CPU-usage scenario for `top`.
struct CpuScenario {
    name: &'static str,
    limits: Limits,
    loops: usize,
}

/// What `top -b -n2 -d3` showed in one scenario, and what the cgroup counted
/// between the arrivals of its two frames (top flushes each frame as soon as
/// it has read /proc/stat and the task list, so the arrivals bracket the
/// same 3 s interval to within a few ms).
struct TopRun {
    out: String,
    online: String,
    busy: f64,
    expected: f64,
}

fn top_run(daemon: &Daemon, limits: Limits, loops: usize) -> TopRun {
    let c = Container::new(daemon, limits);
    let script = format!(
        "echo online=$(cat /sys/devices/system/cpu/online); {}sleep 1; top -b -n2 -d3",
        "(while :; do :; done) & ".repeat(loops)
    );
    let s = c.spawn(&["sh", "-c", &script]);
    let mut lines = Vec::new();
    let mut frames = Vec::new();
    while let Some(line) = s.next_line(Duration::from_secs(20)) {
        if line.starts_with("top - ") {
            frames.push((Instant::now(), cpu_usage(&c)));
        }
        lines.push(line);
    }
    let out = lines.join("\n");
    assert_eq!(
        frames.len(),
        2,
        "top -b -n2 should print two frames: {}\n{out}",
        s.stderr_text()
    );
    let online = lines
        .iter()
        .find_map(|l| l.strip_prefix("online="))
        .unwrap_or_default()
        .to_owned();
    let idles = top_idle_percents(&out);
    let steals = top_percents(&out, "st");
    assert_eq!(idles.len(), 2, "two %Cpu(s) lines:\n{out}");
    assert_eq!(steals.len(), 2, "two %Cpu(s) lines:\n{out}");
    let expected = expected_busy(
        frames[1].1 - frames[0].1,
        frames[1].0 - frames[0].0,
        &c.limits,
    );
    TopRun {
        out,
        online,
        // us + sy: what the container waited for the host is st.
        busy: 100.0 - idles[1] - steals[1],
        expected,
    }
}

#[test]
fn top_busy_percent_matches_the_cgroup_in_four_scenarios() {
    let _serial = serial();
    require(&[("top", "procps")]);
    let daemon = Daemon::start();
    let two = two_cpus();
    let std = Limits::standard();
    let scenarios = [
        CpuScenario {
            name: "fractional quota 0.5 CPU, saturated",
            limits: std.clone(),
            loops: 1,
        },
        CpuScenario {
            name: "whole-CPU quota on a 2-CPU cpuset, saturated",
            limits: Limits {
                cpus: Some(two.clone()),
                cfs: Some((100_000, 100_000)),
                ..std.clone()
            },
            loops: 1,
        },
        CpuScenario {
            name: "2-CPU quota, one busy loop (half its allowance)",
            limits: Limits {
                cpus: Some(two.clone()),
                cfs: Some((200_000, 100_000)),
                ..std.clone()
            },
            loops: 1,
        },
        CpuScenario {
            name: "idle",
            limits: std.clone(),
            loops: 0,
        },
    ];
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for sc in scenarios {
        let n = visible_cpus(&sc.limits);
        let cap = allowance(&sc.limits);
        let r = top_run(&daemon, sc.limits, sc.loops);
        println!("--- {} ---\n{}", sc.name, r.out);
        let want = r.expected.min(100.0);
        let err = r.busy - want;
        report.push(format!(
            "{:<50} top busy {:5.1}%  cgroup {:5.1}% (raw {:5.1}%)  error {:+5.1} points",
            sc.name, r.busy, want, r.expected, err
        ));
        if err.abs() > 10.0 {
            failures.push(format!(
                "{}: top's second frame says {:.1}% busy, the cgroup used {:.1}% of its {cap} CPU allowance",
                sc.name, r.busy, r.expected
            ));
        }
        let online = if n == 1 {
            "0".to_owned()
        } else {
            format!("0-{}", n - 1)
        };
        assert_eq!(
            r.online, online,
            "{}: {n} visible CPU(s) expected from the limits",
            sc.name
        );
        let frames = top_frames(&r.out);
        let second = frames.get(1).expect("two frames");
        assert!(
            second.contains("MiB Mem :    256.0 total"),
            "{}: top's second frame should say `MiB Mem :    256.0 total`:\n{second}",
            sc.name
        );
        assert!(
            second
                .lines()
                .next()
                .is_some_and(|l| l.contains(" up 0 min,")),
            "{}: top's header should show the container's uptime (`up 0 min`):\n{second}",
            sc.name
        );
    }
    println!(
        "top -b -n2 -d3, second frame vs cgroup:\n{}",
        report.join("\n")
    );
    assert!(
        failures.is_empty(),
        "busy % off by more than 10 points:\n{}\n{}",
        failures.join("\n"),
        report.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Load average against the kernel formula
// ---------------------------------------------------------------------------

/// pid 1 of a load container: starts argv[1] busy loops, then reads
/// /proc/loadavg every 0.5 s, printing `<seconds since the first read> <line>`.
/// The first read registers the container with the daemon's sampler.
const LOAD_READER: &str = r#"
import subprocess, sys, time
for _ in range(int(sys.argv[1])):
    subprocess.Popen(["sh", "-c", "while :; do :; done"])
t0 = None
while True:
    with open("/proc/loadavg") as f:
        line = f.read().strip()
    now = time.monotonic()
    if t0 is None:
        t0 = now
    print("%.3f %s" % (now - t0, line), flush=True)
    time.sleep(0.5)
"#;

/// kernel/sched/loadavg.c: EXP_1, EXP_5, EXP_15 over FIXED_1 = 2048.
const EXPS: [f64; 3] = [1884.0 / 2048.0, 2014.0 / 2048.0, 2037.0 / 2048.0];

/// The three averages of `n` always-runnable tasks after `k` 5-s ticks from 0.
fn formula(n: usize, k: u64) -> [f64; 3] {
    EXPS.map(|e| n as f64 * (1.0 - e.powi(k as i32)))
}

/// The tick counts possible `lo..=hi` seconds after registration: the
/// daemon's 5 s sampler has its own phase, so ticks seen = floor(t/5) or
/// one more.
fn tick_candidates(lo: f64, hi: f64) -> std::ops::RangeInclusive<u64> {
    (lo / 5.0).floor() as u64..=(hi / 5.0).floor() as u64 + 1
}

/// Best (smallest worst-field) error of `seen` against the formula over
/// the candidate tick counts: (k, [errors]).
fn best_fit(n: usize, seen: [f64; 3], ks: std::ops::RangeInclusive<u64>) -> (u64, [f64; 3]) {
    ks.map(|k| {
        let f = formula(n, k);
        (k, [seen[0] - f[0], seen[1] - f[1], seen[2] - f[2]])
    })
    .min_by(|a, b| {
        let worst = |e: &[f64; 3]| e.iter().fold(0f64, |m, x| m.max(x.abs()));
        worst(&a.1).total_cmp(&worst(&b.1))
    })
    .expect("at least one candidate")
}

struct LoadContainer<'d> {
    n: usize,
    c: Container<'d>,
    s: Spawned,
    /// (host instant received, seconds since first read, averages)
    samples: Vec<(Instant, f64, [f64; 3])>,
}

#[test]
fn loadavg_follows_the_kernel_formula() {
    let _serial = serial();
    require(&[("uptime", "procps")]);
    assert!(
        which("python3").is_some(),
        "python3 (apt-get install -y python3) is needed for the load readers"
    );
    let two = two_cpus();
    let daemon = Daemon::start();
    // N = 2 and N = 1 busy loops with no quota on a 2-CPU cpuset (always
    // runnable), and N = 0 with the standard limits, all at once.
    let mut conts: Vec<LoadContainer<'_>> = [2usize, 1, 0]
        .into_iter()
        .map(|n| {
            let limits = if n == 0 {
                Limits::standard()
            } else {
                Limits {
                    cpus: Some(two.clone()),
                    cfs: None,
                    ..Limits::standard()
                }
            };
            let c = Container::new(&daemon, limits);
            let s = c.spawn(&["python3", "-u", "-c", LOAD_READER, &n.to_string()]);
            LoadContainer {
                n,
                c,
                s,
                samples: Vec::new(),
            }
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(90);
    while conts
        .iter()
        .any(|lc| lc.samples.last().is_none_or(|s| s.1 < 60.0))
    {
        assert!(
            Instant::now() < deadline,
            "load readers did not reach 60 s within 90 s"
        );
        for lc in &mut conts {
            while let Some(line) = lc.s.next_line(Duration::from_millis(20)) {
                let f: Vec<f64> = line
                    .split_whitespace()
                    .take(4)
                    .map(|x| x.parse().unwrap_or(f64::NAN))
                    .collect();
                assert!(
                    f.len() == 4 && f.iter().all(|x| x.is_finite()),
                    "unparsable load sample {line:?}"
                );
                lc.samples.push((Instant::now(), f[0], [f[1], f[2], f[3]]));
            }
            assert!(
                lc.s.is_running(),
                "load reader (N={}) died: {}",
                lc.n,
                lc.s.stderr_text()
            );
        }
    }

    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut check = |what: String, n: usize, seen: [f64; 3], ks: std::ops::RangeInclusive<u64>| {
        let (k, err) = best_fit(n, seen, ks.clone());
        let f = formula(n, k);
        let line = format!(
            "{what}: seen {:.2} {:.2} {:.2}, formula (k={k} of {ks:?}) {:.3} {:.3} {:.3}, error {:+.3} {:+.3} {:+.3}",
            seen[0], seen[1], seen[2], f[0], f[1], f[2], err[0], err[1], err[2]
        );
        if err.iter().any(|e| e.abs() > 0.15) {
            failures.push(line.clone());
        }
        report.push(line);
    };
    for lc in &conts {
        for at in [30.0, 60.0] {
            let (_, t, seen) = *lc
                .samples
                .iter()
                .find(|s| s.1 >= at)
                .expect("a sample past the checkpoint");
            check(
                format!("N={} /proc/loadavg at {t:5.1} s", lc.n),
                lc.n,
                seen,
                tick_candidates(t, t),
            );
        }
    }

    // procps `uptime` in each container, now (~61 s): its load fields and
    // `up 1 min`, while the host's own load counts all 3 loops.
    for lc in &conts {
        let first = lc.samples.first().expect("samples");
        let t0 = first.0 - Duration::from_secs_f64(first.1);
        let lo = t0.elapsed().as_secs_f64();
        let out = lc.c.exec(&lc.s, &["uptime"]);
        let hi = t0.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "uptime failed: {out:?}");
        println!("N={} uptime: {}", lc.n, text.trim());
        assert!(
            text.contains(" up 1 min,"),
            "N={}: `uptime` in a container started ~61 s ago should say `up 1 min`: {text}",
            lc.n
        );
        check(
            format!("N={} uptime          at {lo:5.1} s", lc.n),
            lc.n,
            load_fields(&text),
            tick_candidates(lo, hi),
        );
    }
    let host = load_fields(&format!("load average: {}", read("/proc/loadavg")));
    println!("host /proc/loadavg now: {host:?}");
    println!("load averages vs N(1 - exp^k):\n{}", report.join("\n"));
    assert!(
        host[0] > 1.0,
        "setup: the host's 1-minute load ({}) should count the 3 busy loops, or the N=0 \
         container's 0.00 proves nothing",
        host[0]
    );
    assert!(
        failures.is_empty(),
        "load averages off the kernel formula by more than 0.15:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// htop, driven in tmux inside the container
// ---------------------------------------------------------------------------

/// "256M", "0.25G", "262144K" -> MiB.
fn htop_mib(text: &str) -> Option<f64> {
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "K" => v / 1024.0,
        "M" => v,
        "G" => v * 1024.0,
        "T" => v * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// Whether `pidfd` refers to a process that has exited.
fn pidfd_exited(pidfd: i32, wait: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, wait.as_millis() as i32) };
    n == 1 && p.revents & libc::POLLIN != 0
}

#[test]
fn htop_in_tmux_shows_one_cpu_and_the_memory_limit() {
    let _serial = serial();
    require(&[("tmux", "tmux"), ("htop", "htop")]);
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let cgroup_dirs: Vec<PathBuf> = ["memory", "cpu", "pids"]
        .iter()
        .map(|ctrl| c.cgroup_dir(ctrl))
        .collect();
    // A long-lived pid 1; tmux started through `exec` daemonizes *inside*
    // the container's pid namespace and cgroups (a server started from a
    // one-shot `c.sh` would die with that instance's pid 1).
    // pid 1 is a busy loop, so the container saturates its 50% quota and
    // htop's one CPU meter should say ~100%.
    let init = c.spawn(&["sh", "-c", "while :; do :; done"]);
    let dir = tempfile::Builder::new()
        .prefix("proclens-fidelity-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let sock = dir.path().join("tmux.sock");
    let sock = sock.to_str().expect("utf-8 path");
    let out = c.exec(
        &init,
        &[
            "tmux",
            "-S",
            sock,
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            "htop",
        ],
    );
    assert!(
        out.status.success(),
        "tmux new-session in the container failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let capture = || {
        let out = c.exec(&init, &["tmux", "-S", sock, "capture-pane", "-p"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut screen = capture();
    while !(screen.contains("Mem[") && screen.contains("Uptime:")) {
        assert!(
            Instant::now() < deadline,
            "htop's meters never appeared in tmux:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
        screen = capture();
    }
    // Let htop refresh at least once more (every 1.5 s) so its CPU % covers
    // a real interval, and count what the cgroup used meanwhile. htop's
    // meter counts steal too (its "virt" part, as in a VM): what the loop
    // waited for the host, from the container's own /proc/stat.
    let cpu_line = || -> Vec<u64> {
        let out = c.exec(&init, &["head", "-1", "/proc/stat"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().expect("a tick count"))
            .collect()
    };
    let s0 = cpu_line();
    let (u0, t0) = (cpu_usage(&c), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    screen = capture();
    let busy_cgroup = expected_busy(cpu_usage(&c) - u0, t0.elapsed(), &c.limits);
    let s1 = cpu_line();
    let total: u64 = s1.iter().take(8).sum::<u64>() - s0.iter().take(8).sum::<u64>();
    let steal = (s1[7] - s0[7]) as f64 / total.max(1) as f64 * 100.0;
    let want = (busy_cgroup + steal).min(100.0);
    println!("the cgroup used {busy_cgroup:.1}% of its allowance, {steal:.1}% was steal");
    println!("{screen}");
    let header: Vec<&str> = screen
        .lines()
        .take_while(|l| !(l.contains("PID") && l.contains("USER")))
        .collect();
    // One meter per CPU, captioned with its number ("0[" ... on the host:
    // "    0[|   0.7%]" and "    1[ ..."), except that htop 3 captions the
    // only CPU of a 1-CPU machine "CPU[". ("Avg[" would be the average.)
    let cpu_meters: Vec<&str> = header
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter(|w| {
            w.split_once('[').is_some_and(|(n, _)| {
                n == "CPU" || (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .collect();
    assert_eq!(
        cpu_meters.len(),
        1,
        "htop should draw exactly one CPU meter in a 1-CPU container, found {cpu_meters:?}:\n{screen}"
    );
    assert!(
        ["CPU[", "0[", "1["]
            .iter()
            .any(|p| cpu_meters[0].starts_with(p)),
        "htop's one CPU meter should be `CPU[` (htop 3, one CPU), `0[` or `1[`: {}",
        cpu_meters[0]
    );
    let meter = |caption: &str| -> String {
        header
            .iter()
            .find_map(|l| l.split_once(caption).map(|(_, r)| r))
            .and_then(|r| r.split(']').next())
            .unwrap_or_else(|| panic!("no {caption} meter:\n{screen}"))
            .to_owned()
    };
    let cpu_text = meter(
        cpu_meters[0]
            .split('[')
            .next()
            .map(|c| format!("{c}["))
            .as_deref()
            .unwrap_or("CPU["),
    );
    let busy: f64 = cpu_text
        .split_whitespace()
        .last()
        .map(|v| v.trim_start_matches('|').trim_end_matches('%'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in htop's CPU meter {cpu_text:?}"));
    println!(
        "htop CPU meter {busy:.1}% vs cgroup {want:.1}%: error {:+.1} points",
        busy - want
    );
    assert!(
        (busy - want).abs() <= 10.0,
        "htop's CPU meter says {busy:.1}%, the cgroup used {want:.1}% of its allowance (within 10 points): {cpu_text:?}"
    );
    let mem = header
        .iter()
        .find_map(|l| l.split_once("Mem[").map(|(_, r)| r))
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("no Mem meter:\n{screen}"));
    let total = mem
        .split_whitespace()
        .last()
        .and_then(|v| v.split('/').nth(1))
        .and_then(htop_mib)
        .unwrap_or_else(|| panic!("no used/total in htop's Mem meter {mem:?}"));
    assert!(
        (total - 256.0).abs() < 0.05,
        "htop's Mem meter total should be 256M (the limit): {mem:?}"
    );
    let uptime = header
        .iter()
        .find_map(|l| l.split_once("Uptime:").map(|(_, r)| r.trim().to_owned()))
        .expect("Uptime meter");
    let secs: u64 = uptime
        .split(':')
        .map(|x| x.trim().parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|v| v.len() == 3)
        .map(|v| v[0] * 3600 + v[1] * 60 + v[2])
        .unwrap_or_else(|| {
            panic!("htop uptime {uptime:?} is not HH:MM:SS (days would mean the host's)")
        });
    assert!(
        secs < 60,
        "htop's Uptime meter should be the container's age (seconds), got {uptime}"
    );
    println!("htop: CPU meters {cpu_meters:?}, Mem {mem:?}, uptime {uptime}");

    // The tmux server and htop run in the container's cgroups; the guards
    // must take them down.
    let ours: Vec<(i32, String)> = c
        .tasks()
        .into_iter()
        .filter_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some((pid, comm.trim().to_owned()))
        })
        .filter(|(_, comm)| comm.starts_with("tmux") || comm == "htop")
        .collect();
    assert!(
        ours.iter().any(|(_, c)| c == "htop") && ours.iter().any(|(_, c)| c.starts_with("tmux")),
        "the tmux server and htop should be tasks of the container's cgroup: {ours:?}"
    );
    let pidfds: Vec<(i32, String, i32)> = ours
        .iter()
        .map(|(pid, comm)| {
            // SAFETY: plain syscall with integer arguments.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, *pid, 0) } as i32;
            assert!(fd >= 0, "pidfd_open({pid} {comm})");
            (*pid, comm.clone(), fd)
        })
        .collect();
    // Killing the container's pid 1 tears its pid namespace down, tmux and
    // htop included; removing the cgroups (Container's Drop) kills whatever
    // is left in them. Report which one did it, require that they are gone.
    drop(init);
    let by_init: Vec<bool> = pidfds
        .iter()
        .map(|(_, _, fd)| pidfd_exited(*fd, Duration::from_secs(2)))
        .collect();
    println!("tmux/htop gone once pid 1 died: {by_init:?} ({ours:?})");
    drop(c);
    for (pid, comm, fd) in pidfds {
        let gone = pidfd_exited(fd, Duration::from_secs(5));
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
        assert!(gone, "{comm} (pid {pid}) survived the container's teardown");
    }
    for d in cgroup_dirs {
        assert!(
            !d.exists(),
            "{} still exists after the container dropped",
            d.display()
        );
    }
}
