//! What each container must show, against the limits and the kernel's
//! counters read on the host.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{free_mem_total, host_online_cpus, meminfo_kb, read};
use crate::engine::{Running, Spec};
use crate::kernel::{self, start_time, Cgroup};

pub const WRITE_MIB: u64 = 16;

/// One started case.
pub struct Case<'a> {
    pub name: &'static str,
    /// The cgroup parent its engine was given.
    pub parent: String,
    pub c: Box<dyn Running + 'a>,
    /// Host instants around the exec that started the busy loops, and
    /// the load averages it read just before.
    pub loops: Option<(Instant, Instant, [f64; 3])>,
    /// How many proclens files it binds: the nine runc takes from a
    /// config, or every one (the OCI hook, LXC).
    pub binds: usize,
    /// Whether its sysinfo(2) is the daemon's (proclens-runc's seccomp
    /// edit) or the kernel's.
    pub sysinfo: bool,
}

impl Case<'_> {
    fn cgroup(&self) -> Cgroup {
        Cgroup::of(self.c.init_pid(), &self.parent)
    }
}

/// The probe every container runs: `=== name` starts each section.
const PROBE: &str = "echo '=== free -b'; free -b; echo '=== free -m'; free -m; \
    echo '=== top'; top -bn1 | head -n 5; \
    echo '=== /proc/uptime'; cat /proc/uptime; echo '=== uptime'; uptime; \
    echo '=== getconf'; getconf _NPROCESSORS_ONLN; \
    echo '=== online'; cat /sys/devices/system/cpu/online; \
    echo '=== fuse mounts'; grep -c ' - fuse' /proc/self/mountinfo || true; \
    echo '=== cp'; cp /proc/meminfo /tmp/proclens-meminfo && head -n 1 /tmp/proclens-meminfo; \
    rm -f /tmp/proclens-meminfo; \
    echo '=== busybox free'; busybox free -b";

/// `MemTotal:  N kB` -> N.
fn mem_total_kb(line: &str) -> Option<u64> {
    meminfo_kb(line, "MemTotal")
}

fn sections(out: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("=== ") {
            cur = Some(name.to_owned());
            map.insert(name.to_owned(), String::new());
        } else if let Some(c) = &cur {
            let body: &mut String = map.get_mut(c).expect("section");
            body.push_str(line);
            body.push('\n');
        }
    }
    map
}

fn section<'a>(s: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    s.get(name)
        .unwrap_or_else(|| panic!("no section {name} in {s:?}"))
}

/// `MiB Mem :    256.0 total, ...` from top's header.
fn top_mem_total_mib(top: &str) -> f64 {
    top.lines()
        .find_map(|l| l.strip_prefix("MiB Mem :"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no `MiB Mem :` total in top's header:\n{top}"))
}

/// procps `uptime`: `... up 0 min, ...` -> minutes (under an hour).
fn uptime_minutes(text: &str) -> Option<u64> {
    let rest = text.split(" up ").nth(1)?;
    let (n, unit) = rest.split_once(' ')?;
    unit.starts_with("min").then(|| n.parse().ok())?
}

/// The host's view, to show each check can tell the two apart.
pub struct HostView {
    mem_total: u64,
    online: String,
    cpus: usize,
}

impl HostView {
    pub fn now() -> HostView {
        let meminfo = read("/proc/meminfo");
        HostView {
            mem_total: meminfo_kb(&meminfo, "MemTotal").expect("MemTotal") * 1024,
            online: read("/sys/devices/system/cpu/online").trim().to_owned(),
            cpus: host_online_cpus().len(),
        }
    }
}

/// Phase 1 of a case: the tools inside against the limits and the
/// kernel's counters. Returns the probe's output, for the log.
pub fn check_tools(case: &Case<'_>, spec: &Spec, host: &HostView) -> String {
    let cg = case.cgroup();
    let init = case.c.init_pid();
    let started = start_time(init);
    let before = kernel::host_uptime();
    let out = case.c.sh(PROBE);
    let after = kernel::host_uptime();
    let s = sections(&out);

    let limit = cg
        .memory_limit()
        .expect("the container's cgroup has a memory limit");
    assert_eq!(
        limit, spec.memory,
        "the engine set the memory limit the test asked for"
    );
    assert_ne!(
        host.mem_total, limit,
        "setup: the host's memory must differ from the limit"
    );
    let free = free_mem_total(section(&s, "free -b"));
    assert_eq!(
        free, limit,
        "free -b total vs the cgroup's memory limit:\n{out}"
    );
    let top = top_mem_total_mib(section(&s, "top"));
    assert_eq!(
        top,
        (limit / 1024 / 1024) as f64,
        "top's MiB Mem total:\n{out}"
    );

    let up = crate::common::uptime_secs(section(&s, "/proc/uptime"));
    let (lo, hi) = (before - started - 0.05, after - started + 0.05);
    assert!(
        (lo..=hi).contains(&up),
        "/proc/uptime inside says {up:.2} s; the container's init started {:.2} s after boot, \
         so it must be {lo:.2}..{hi:.2} (the host's own is {after:.2}):\n{out}",
        started
    );
    let minutes = uptime_minutes(section(&s, "uptime"));
    assert!(
        minutes == Some((up / 60.0) as u64) || minutes == Some((up / 60.0) as u64 + 1),
        "procps uptime should say `up {} min`:\n{out}",
        (up / 60.0) as u64
    );

    let n = cg.visible_cpus();
    assert!(
        host.cpus > n,
        "setup: the host ({} CPUs) must have more than the container ({n})",
        host.cpus
    );
    assert_eq!(n, 1, "the kernel: a one-CPU cpuset and half a CPU of quota");
    let getconf: usize = section(&s, "getconf")
        .trim()
        .parse()
        .expect("getconf prints a number");
    assert_eq!(getconf, n, "getconf _NPROCESSORS_ONLN:\n{out}");
    assert_eq!(
        section(&s, "online").trim(),
        "0",
        "cpu/online (the host's is {}):\n{out}",
        host.online
    );
    assert_eq!(
        section(&s, "fuse mounts").trim(),
        case.binds.to_string(),
        "one FUSE bind per proclens file:\n{out}"
    );
    // busybox free asks sysinfo(2): the daemon answers it for containers
    // proclens-runc gave the seccomp rule, the kernel for the others.
    let (want, whose) = if case.sysinfo {
        (limit, "the cgroup's memory limit (the daemon's answer)")
    } else {
        (host.mem_total, "the host's memory (the kernel's answer)")
    };
    assert_eq!(
        free_mem_total(section(&s, "busybox free")),
        want,
        "busybox free -b (sysinfo(2)) vs {whose}:\n{out}"
    );
    // cp(1) asks SEEK_DATA/SEEK_HOLE of a file whose st_blocks is 0: the
    // whole file must come through, and the daemon must not warn about it.
    assert_eq!(
        mem_total_kb(section(&s, "cp")),
        Some(limit / 1024),
        "MemTotal of a cp of /proc/meminfo:\n{out}"
    );
    out
}

/// A system container's service: a process in a child cgroup of the
/// container's (no limits of its own), as systemd or OpenRC inside LXC
/// makes one per service. Inside the container's cgroup namespace, whose
/// root is the container's cgroup, it must see the container's limits,
/// not the host's (its own cgroup has none).
pub fn check_child_service(case: &Case<'_>) -> String {
    let limit = case
        .cgroup()
        .memory_limit()
        .expect("the container's cgroup has a memory limit");
    let child = "proclens-svc";
    let out = kernel::nsexec_in_child(
        case.c.init_pid(),
        child,
        "echo '=== cgroup'; cat /proc/self/cgroup; \
         echo '=== meminfo'; head -n 1 /proc/meminfo; \
         echo '=== getconf'; getconf _NPROCESSORS_ONLN; \
         echo '=== online'; cat /sys/devices/system/cpu/online",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the service's script failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = sections(&text);
    assert!(
        section(&s, "cgroup")
            .lines()
            .any(|l| l.ends_with(&format!(":/{child}"))),
        "the service is not in the child cgroup, as its namespace shows it:\n{text}"
    );
    assert_eq!(
        mem_total_kb(section(&s, "meminfo")),
        Some(limit / 1024),
        "a service in a child cgroup sees the container's memory limit:\n{text}"
    );
    assert_eq!(section(&s, "getconf").trim(), "1", "{text}");
    assert_eq!(section(&s, "online").trim(), "0", "{text}");
    text
}

/// `iostat -d -k` output: the `kB_wrtn` column of `disk`'s row.
fn iostat_kb_written(out: &str, disk: &str) -> f64 {
    let mut header: Option<Vec<&str>> = None;
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"Device") || f.first() == Some(&"Device:") {
            header = Some(f);
        } else if let (Some(h), Some(&name)) = (&header, f.first()) {
            if name == disk {
                let col = h
                    .iter()
                    .position(|c| *c == "kB_wrtn")
                    .unwrap_or_else(|| panic!("no kB_wrtn column in iostat:\n{out}"));
                return f[col]
                    .parse()
                    .unwrap_or_else(|_| panic!("kB_wrtn of {disk}:\n{out}"));
            }
        }
    }
    panic!("no {disk} row in iostat -d -k:\n{out}");
}

/// Phase 1, I/O: a direct write inside, then `iostat`, against the
/// cgroup's own byte counter and the bytes written.
pub fn check_iostat(case: &Case<'_>, spec: &Spec) -> String {
    let disk = &spec.disk.name;
    let out = case.c.sh(&format!(
        "dd if=/dev/zero of=/tmp/proclens-dd bs=1M count={WRITE_MIB} oflag=direct 2>/dev/null \
         && rm -f /tmp/proclens-dd && iostat -d -k {disk}"
    ));
    let kb = iostat_kb_written(&out, disk);
    let counted = case.cgroup().written_bytes(&spec.disk) as f64 / 1024.0;
    let written = (WRITE_MIB * 1024) as f64;
    assert!(
        counted >= written,
        "the kernel counted {counted} kB written by the container's cgroup to {disk}, less than \
         the {written} kB dd wrote (is the throttle rule that makes v1 account it missing?)"
    );
    assert!(
        (kb - counted).abs() <= counted * 0.01 + 4.0,
        "iostat inside says kB_wrtn {kb} for {disk}; the container's cgroup counted {counted} kB:\n{out}"
    );
    assert!(
        kb <= written * 1.01 + 64.0,
        "iostat inside says kB_wrtn {kb}: more than the container's {written} kB (the host's?):\n{out}"
    );
    out
}

/// kernel/sched/loadavg.c: EXP_1, EXP_5, EXP_15 over FIXED_1 = 2048.
const EXPS: [f64; 3] = [1884.0 / 2048.0, 2014.0 / 2048.0, 2037.0 / 2048.0];

/// The averages after `k` 5-s samples of `n` always-runnable tasks,
/// starting from `from` (kernel/sched/loadavg.c, calc_load: each sample
/// moves the average by (1 - exp) towards n).
fn load_formula(from: [f64; 3], n: usize, k: u64) -> [f64; 3] {
    let mut out = [0.0; 3];
    for i in 0..3 {
        let e = EXPS[i].powi(k as i32);
        out[i] = from[i] * e + n as f64 * (1.0 - e);
    }
    out
}

pub fn load_fields(text: &str) -> [f64; 3] {
    let f: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    assert!(
        f.len() == 3 && f.iter().all(|x| x.is_finite()),
        "not a loadavg: {text:?}"
    );
    [f[0], f[1], f[2]]
}

/// `sh -c script` in the container through nsenter ([`kernel::nsexec`]),
/// asserting success; its stdout.
pub fn nsexec_ok(case: &Case<'_>, script: &str) -> String {
    let out = kernel::nsexec(case.c.init_pid(), script);
    assert!(
        out.status.success(),
        "`{script}` in {} (nsenter) failed with {}: {}",
        case.name,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The most tasks in R or D state that each watched cgroup (with its
/// descendants) held at once, polled every 20 ms from the host while the
/// busy loops run, and the commands of every one seen so: what the
/// daemon's samples may have counted besides the loops.
pub struct ActiveWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Active>>,
}

/// What [`ActiveWatch`] saw in one cgroup.
#[derive(Debug, Default, Clone)]
pub struct Active {
    pub most: usize,
    pub comms: std::collections::BTreeSet<String>,
}

impl ActiveWatch {
    /// Watches the cgroup of every case that runs busy loops, in order.
    pub fn start(cases: &[Case<'_>]) -> ActiveWatch {
        let cgroups: Vec<Cgroup> = cases
            .iter()
            .filter(|c| c.loops.is_some())
            .map(Case::cgroup)
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = vec![Active::default(); cgroups.len()];
            while !flag.load(Ordering::Relaxed) {
                for (a, cg) in seen.iter_mut().zip(&cgroups) {
                    let tasks = cg.tasks();
                    let active: Vec<_> = tasks
                        .iter()
                        .filter(|(_, s, _)| matches!(s, 'R' | 'D'))
                        .collect();
                    a.most = a.most.max(active.len());
                    a.comms.extend(active.iter().map(|(_, _, c)| c.clone()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        ActiveWatch { stop, thread }
    }

    /// What was seen, per case with busy loops, in the order given.
    pub fn finish(self) -> Vec<Active> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the task watcher")
    }
}

/// Phase 4: `/proc/loadavg` inside after the window, against the kernel's
/// formula over the samples the daemon's 5-s sampler can have taken
/// meanwhile (its phase is its own: floor(t/5) or one more), for at least
/// the two busy loops at every sample and at most the `most_active` tasks
/// in R or D state the host saw at once in the cgroup (a command the
/// engine or the shell runs in it counts while it runs).
pub fn check_load(case: &Case<'_>, active: &Active) -> String {
    let (lo0, hi0, from) = case.loops.expect("busy loops started");
    let tasks = case.cgroup().tasks();
    let running = tasks.iter().filter(|(_, s, _)| *s == 'R').count();
    let t = Instant::now();
    let out = nsexec_ok(case, "cat /proc/loadavg");
    let (lo, hi) = (
        t.duration_since(hi0).as_secs_f64(),
        t.elapsed().as_secs_f64() + t.duration_since(lo0).as_secs_f64(),
    );
    assert!(
        running >= 2,
        "the kernel shows {running} runnable tasks, not the two busy loops"
    );
    let seen = load_fields(&out);
    let ks = (lo / 5.0).floor() as u64..=(hi / 5.0).floor() as u64 + 1;
    let most = active.most.max(2);
    let least = load_formula(from, 2, *ks.start());
    let greatest = load_formula(from, most, *ks.end());
    let off = (0..3)
        .map(|i| (least[i] - seen[i]).max(seen[i] - greatest[i]).max(0.0))
        .fold(0.0, f64::max);
    let line = format!(
        "/proc/loadavg {} after {lo:.1}..{hi:.1} s of 2 busy loops (from {:.2} {:.2} {:.2}); \
         formula from 2 tasks at {} samples {:.2} {:.2} {:.2} to {most} (the most seen at \
         once, of {:?}) at {} samples {:.2} {:.2} {:.2}",
        out.trim(),
        from[0],
        from[1],
        from[2],
        ks.start(),
        least[0],
        least[1],
        least[2],
        active.comms,
        ks.end(),
        greatest[0],
        greatest[1],
        greatest[2]
    );
    assert!(
        off <= 0.15,
        "load average off the kernel's formula by {off:.3}: {line}\nits cgroup's tasks now \
         (tid, state, comm): {tasks:?}"
    );
    line
}

/// The skip paths: the container starts, and sees the kernel's files.
pub fn check_kernel_files(c: &dyn Running, host: &HostView, disk: &str) -> String {
    let out = c.sh(&format!("{PROBE}; echo '=== iostat'; iostat -d -k {disk}"));
    let s = sections(&out);
    assert_eq!(
        free_mem_total(section(&s, "free -b")),
        host.mem_total,
        "free -b shows the host's memory (the kernel's /proc/meminfo):\n{out}"
    );
    assert_eq!(
        section(&s, "online").trim(),
        host.online,
        "the kernel's cpu/online:\n{out}"
    );
    assert_eq!(
        section(&s, "fuse mounts").trim(),
        "0",
        "no proclens mount:\n{out}"
    );
    assert_eq!(
        mem_total_kb(section(&s, "cp")).map(|kb| kb * 1024),
        Some(host.mem_total),
        "MemTotal of a cp of /proc/meminfo:\n{out}"
    );
    assert_eq!(
        free_mem_total(section(&s, "busybox free")),
        host.mem_total,
        "busybox free -b (sysinfo(2)) shows the host's memory:\n{out}"
    );
    out
}
