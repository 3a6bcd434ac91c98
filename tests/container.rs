//! The container is the unit (issue 13, DESIGN 2.3): every process of one
//! container sees one machine, however the engine lays its cgroups out.
//!
//! - A system container as LXC or Incus lays it out: limits on `S`, init in
//!   `S/init.scope`, a service in `S/svc` holding 200 MiB, one busy loop
//!   and a direct write, and a shell in `S/session` running the tools; with
//!   a cgroup namespace rooted at `S` (rule 1) and without one (rule 2, the
//!   init's cgroup). The shell sees the service's memory, CPU, load and
//!   I/O, and `proclens show`/`diff` name `S` and why.
//! - A pod sharing one pid namespace: init is a pause process in a sibling
//!   cgroup, so a member sees its own limit and usage (rule 3).
//! - A container whose members sit in children with lower limits of their
//!   own: every member sees the container's limit.
//!
//! Run as root: `cargo test --test container`.

mod common;

use common::*;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The service: writes 4 MiB with O_DIRECT to argv[1], holds 200 MiB of
/// touched memory, says so by creating argv[2], and spins.
const SERVICE: &str = r#"
import mmap, os, sys
target, ready = sys.argv[1], sys.argv[2]
buf = mmap.mmap(-1, 1 << 20)
buf.write(b"s" * (1 << 20))
fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
for i in range(4):
    os.pwrite(fd, buf, i << 20)
os.close(fd)
held = b"\x01" * (200 << 20)
open(ready, "w").close()
while True:
    pass
"#;

/// The shell's session: waits for the service, starts the load average's
/// history, and after 11 s runs the tools. `$1` is the memory usage file
/// of `S` and `$2` its CPU usage file (read through the host's cgroupfs,
/// for the truth at that instant).
const SESSION: &str = r#"
while [ ! -e "$READY" ]; do sleep 0.1; done
echo @@load0; date +%s.%N
cat /proc/loadavg > /dev/null
sleep 11
echo @@loadavg; cat /proc/loadavg
echo @@load1; date +%s.%N
echo @@free; free -m
echo @@usage; cat "$1"
echo @@cpu0; date +%s.%N; cat "$2"
echo @@top; top -b -n2 -d2 | grep '^%Cpu'
echo @@cpu1; date +%s.%N; cat "$2"
echo @@uptime; cat /proc/uptime
echo @@diskstats; cat /proc/diskstats
echo @@meminfo; cat /proc/meminfo
echo @@end
"#;

/// pid 1: moves itself to `S/init.scope`, starts the service in `S/svc`
/// and the session in `S/session` (each moves itself before it execs).
const INIT: &str = r#"
for f in $INIT_PROCS; do echo 0 > "$f"; done
( for f in $SVC_PROCS; do echo 0 > "$f"; done; exec python3 -c "$SERVICE" "$TARGET" "$READY" ) &
( for f in $SESSION_PROCS; do echo 0 > "$f"; done; exec sh -c "$SESSION" sh "$USAGE" "$CPU" )
"#;

/// The block of `out` after the line `@@name`.
fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let start = out
        .find(&format!("@@{name}\n"))
        .unwrap_or_else(|| panic!("no @@{name} in:\n{out}"))
        + name.len()
        + 3;
    let rest = &out[start..];
    &rest[..rest.find("@@").unwrap_or(rest.len())]
}

fn joined(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `S`'s CPU time file: cpuacct.usage (ns) on v1, cpu.stat on v2.
fn cpu_usage_file(c: &Container<'_>) -> std::path::PathBuf {
    match c.version() {
        CgroupVersion::V1 => c.root_cgroup_dir("cpuacct").join("cpuacct.usage"),
        CgroupVersion::V2 => c.root_cgroup_dir("cpu").join("cpu.stat"),
    }
}

/// Seconds since the epoch, as `date +%s.%N` prints them.
fn epoch_secs(text: &str) -> f64 {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("date {text:?}: {e}"))
}

/// The CPU seconds in the text of [`cpu_usage_file`].
fn cpu_seconds(text: &str) -> f64 {
    match text.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
        Some(us) => us.trim().parse::<f64>().expect("usage_usec") / 1e6,
        None => text.trim().parse::<f64>().expect("cpuacct.usage") / 1e9,
    }
}

/// [`cpu_usage_file`] read every 10 ms until `done`: (seconds since the
/// epoch, CPU seconds used).
fn sample_cpu(file: &Path, done: &AtomicBool) -> Vec<(f64, f64)> {
    let mut v = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        v.push((now, cpu_seconds(&read(file))));
        std::thread::sleep(Duration::from_millis(10));
    }
    v
}

/// The lowest and highest share of `cpus` CPUs (%) that `samples` show
/// used over any window of `lengths` seconds between `from` and `to`.
fn busy_range(
    samples: &[(f64, f64)],
    (from, to): (f64, f64),
    lengths: std::ops::RangeInclusive<f64>,
    cpus: f64,
) -> Option<(f64, f64)> {
    let inside: Vec<_> = samples
        .iter()
        .filter(|(t, _)| (from..=to).contains(t))
        .collect();
    let mut range: Option<(f64, f64)> = None;
    for (i, (t0, u0)) in inside.iter().enumerate() {
        for (t1, u1) in &inside[i + 1..] {
            if lengths.contains(&(t1 - t0)) {
                let busy = (u1 - u0) / ((t1 - t0) * cpus) * 100.0;
                let (lo, hi) = range.unwrap_or((busy, busy));
                range = Some((lo.min(busy), hi.max(busy)));
            }
        }
    }
    range
}

fn memory_usage_file(c: &Container<'_>) -> std::path::PathBuf {
    let dir = c.root_cgroup_dir("memory");
    match c.version() {
        CgroupVersion::V1 => dir.join("memory.usage_in_bytes"),
        CgroupVersion::V2 => dir.join("memory.current"),
    }
}

/// The first task of cgroup `rel`'s memory directory, from the host.
fn first_task(c: &Container<'_>, rel: &str) -> u32 {
    let procs = c.procs_files(rel).into_iter().next().expect("a hierarchy");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = read(&procs).lines().next().and_then(|l| l.parse().ok()) {
            return p;
        }
        assert!(Instant::now() < deadline, "nothing ever ran in {rel}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proclens(args: &[&str]) -> (String, String) {
    let out = run_with_timeout(host_command(proclens_bin()).args(args), RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "proclens {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn system_container(cgroupns: bool) {
    let _serial = serial();
    let daemon = Daemon::start();
    let disk = disk_of(Path::new("/var/tmp"));
    let limits = Limits {
        memory_bytes: Some(512 * MIB),
        cpus: None,
        cfs: None,
        blkio_disk: Some(disk.clone()),
        pids_max: Some(512),
    };
    let c = Container::new(&daemon, limits);
    let s = c.cgroup_path().to_owned();
    for child in ["init.scope", "svc", "session"] {
        c.add_child(child, &Limits::none());
    }
    let target = Path::new("/var/tmp").join(format!("{}.svc", unique_name()));
    let ready = Path::new("/var/tmp").join(format!("{}.ready", unique_name()));
    let _cleanup = (RemoveOnDrop(target.clone()), RemoveOnDrop(ready.clone()));

    let mut cmd = c.command_at(&s, cgroupns, &["sh", "-c", INIT]);
    cmd.env(
        "INIT_PROCS",
        joined(&c.procs_files(&format!("{s}/init.scope"))),
    )
    .env("SVC_PROCS", joined(&c.procs_files(&format!("{s}/svc"))))
    .env(
        "SESSION_PROCS",
        joined(&c.procs_files(&format!("{s}/session"))),
    )
    .env("SERVICE", SERVICE)
    .env("SESSION", SESSION)
    .env("TARGET", &target)
    .env("READY", &ready)
    .env("USAGE", memory_usage_file(&c))
    .env("CPU", cpu_usage_file(&c))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start the system container");

    // Meanwhile, from the host: what `proclens show` and `diff` say of the
    // shell's container.
    let shell = first_task(&c, &format!("{s}/session")).to_string();
    let (_, why) = proclens(&["show", "meminfo", "--pid", &shell]);
    let (diff, _) = proclens(&["diff", "--pid", &shell]);
    let reason = if cgroupns {
        "the root of its cgroup namespace"
    } else {
        "the cgroup of its pid namespace's init"
    };
    for text in [&why, &diff] {
        assert!(
            text.contains(&format!("container {s} ({reason})"))
                || text.contains(&format!("container: {s} ({reason})")),
            "proclens names {s} and why ({reason}):\n{text}"
        );
    }

    // S's CPU time, read from the host all through the session, to find
    // what it used over the interval top measured.
    let done = AtomicBool::new(false);
    let cpu_file = cpu_usage_file(&c);
    let (out, cpu) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_cpu(&cpu_file, &done));
        let out = wait_output(child, Duration::from_secs(120));
        done.store(true, Ordering::Relaxed);
        (out, sampler.join().expect("CPU sampler"))
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("@@end"),
        "the session did not finish: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    let what = if cgroupns {
        "with a cgroup namespace"
    } else {
        "without a cgroup namespace"
    };

    // Memory: the limit of S, and the service's 200 MiB as used.
    let meminfo = section(&text, "meminfo");
    assert_eq!(
        meminfo_kb(meminfo, "MemTotal"),
        Some(512 * 1024),
        "{what}:\n{meminfo}"
    );
    let free = section(&text, "free");
    let used: u64 = free
        .lines()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|r| r.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no Mem: used in\n{free}"));
    let usage_mib = section(&text, "usage")
        .trim()
        .parse::<u64>()
        .expect("usage")
        / MIB;
    assert!(
        (195..=usage_mib + 8).contains(&used),
        "{what}: free -m in the session says {used} MiB used; the service holds 200 MiB and S uses {usage_mib} MiB:\n{free}"
    );

    // CPU: what S used over top's interval, against the machine the
    // session sees (all the host's CPUs): one busy loop on two CPUs is
    // about half of it, less when the host gives the loop less. top's
    // interval is 2 s and its own work, somewhere between the two dates
    // around it, and which it is cannot be seen from outside: top must
    // agree with S over one of the windows it could have measured.
    let idle = *top_idle_percents(section(&text, "top"))
        .last()
        .unwrap_or_else(|| panic!("no %Cpu line:\n{text}"));
    // What the loop waited for the host's other tasks is steal, not busy.
    let steal = *top_percents(section(&text, "top"), "st")
        .last()
        .unwrap_or_else(|| panic!("no st in %Cpu line:\n{text}"));
    let date = |name: &str| epoch_secs(section(&text, name).lines().next().unwrap_or(""));
    let bracket = (date("cpu0"), date("cpu1"));
    let cpus = host_online_cpus().len() as f64;
    let (low, high) = busy_range(&cpu, bracket, 1.9..=3.0, cpus).unwrap_or_else(|| {
        panic!(
            "{what}: no 1.9-3.0 s window of S's usage within top's run ({:.1} s)",
            bracket.1 - bracket.0
        )
    });
    assert!(
        high > 100.0 / cpus * 0.5,
        "{what}: the service's busy loop barely ran (at most {high:.1}% of the machine): nothing to compare"
    );
    // Within 5 points of the range, for the two samples' timing.
    let top_busy = 100.0 - idle - steal;
    assert!(
        (low - 5.0..=high + 5.0).contains(&top_busy),
        "{what}: top in the session shows {idle}% idle and {steal}% steal; S used \
         {low:.1}-{high:.1}% of the {cpus} CPUs over the windows top could have measured"
    );

    // Load: the history begins at the session's first read and the second
    // read comes at least 11 s later. In between the daemon samples every
    // 5 s, and each sample sees the busy loop, and at most one more task
    // (the session's own command, or a slow guest's straggler) in R or D.
    // The session alone would be 0.
    let load: f64 = section(&text, "loadavg")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("load");
    let span = epoch_secs(section(&text, "load1")) - epoch_secs(section(&text, "load0"));
    let (fewest, most) = (1, (span / 5.0).floor() as i32 + 1);
    let (low, high) = (one_minute_load(fewest, 1.0), one_minute_load(most, 2.0));
    assert!(
        (low - 0.01..=high + 0.01).contains(&load),
        "{what}: the 1-minute load {span:.1} s after the first read, with one busy task, \
         is {load} (from {fewest} sample of 1 task, {low:.2}, to {most} of 2, {high:.2}):\n{text}"
    );

    // Uptime: the container's, since its init started.
    let up = uptime_secs(section(&text, "uptime"));
    assert!((11.0..120.0).contains(&up), "{what}: uptime {up}");

    // I/O: the service's 4 MiB direct write (8192 sectors).
    let written =
        diskstats_field(section(&text, "diskstats"), &disk.name, 10).unwrap_or_else(|| {
            panic!(
                "{what}: no {} line in the session's diskstats:\n{text}",
                disk.name
            )
        });
    assert!(
        (8192..8192 * 105 / 100).contains(&written),
        "{what}: the service wrote 8192 sectors; the session sees {written}"
    );
}

/// The kernel's 1-minute load average (kernel/sched/loadavg.c, EXP_1 =
/// 1884/2048 per 5 s sample) after `samples` samples of `tasks` tasks,
/// starting from 0.
fn one_minute_load(samples: i32, tasks: f64) -> f64 {
    tasks * (1.0 - (1884.0f64 / 2048.0).powi(samples))
}

/// `child`'s output, killing it if it runs past `timeout`.
fn wait_output(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_system_container_with_a_cgroup_namespace_is_one_machine() {
    system_container(true);
}

#[test]
fn a_system_container_without_a_cgroup_namespace_is_one_machine() {
    system_container(false);
}

/// pid 1 is the pause process, in `P/pause` with 100 MiB held; the member
/// moves itself to `P/app` (256 MiB) and reads.
const POD: &str = r#"
python3 -c 'import time; b = b"\x01" * (100 << 20); open("'"$READY"'", "w").close(); time.sleep(600)' &
while [ ! -e "$READY" ]; do sleep 0.1; done
( for f in $APP_PROCS; do echo 0 > "$f"; done; exec cat /proc/meminfo )
"#;

#[test]
fn a_pod_member_beside_a_pause_init_sees_its_own_limit_and_usage() {
    let _serial = serial();
    let daemon = Daemon::start();
    let pod = Container::new(
        &daemon,
        Limits {
            memory_bytes: Some(1024 * MIB),
            ..Limits::none()
        },
    );
    let p = pod.cgroup_path().to_owned();
    let pause = pod.add_child("pause", &Limits::none());
    let app = pod.add_child(
        "app",
        &Limits {
            memory_bytes: Some(256 * MIB),
            ..Limits::none()
        },
    );
    let ready = Path::new("/var/tmp").join(format!("{}.ready", unique_name()));
    let _cleanup = RemoveOnDrop(ready.clone());
    let mut cmd = pod.command_at(&pause, false, &["sh", "-c", POD]);
    cmd.env("APP_PROCS", joined(&pod.procs_files(&app)))
        .env("READY", &ready);
    let out = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        meminfo_kb(&text, "MemTotal"),
        Some(256 * 1024),
        "the member in {app} sees its own 256 MiB, not the pod {p}'s 1 GiB:\n{text}"
    );
    let free = meminfo_kb(&text, "MemFree").expect("MemFree");
    assert!(
        free > 200 * 1024,
        "the member's MemFree {free} kB counts the pause process's 100 MiB (pod {p}):\n{text}"
    );
}

/// pid 1 in `S/init.scope`; the member moves itself to `S/worker`, whose
/// own limit is lower, and reads.
const NESTED: &str = r#"
( for f in $WORKER_PROCS; do echo 0 > "$f"; done; exec cat /proc/meminfo )
"#;

#[test]
fn members_in_children_with_lower_limits_see_the_containers_limit() {
    let _serial = serial();
    let daemon = Daemon::start();
    let c = Container::new(
        &daemon,
        Limits {
            memory_bytes: Some(512 * MIB),
            ..Limits::none()
        },
    );
    let init = c.add_child("init.scope", &Limits::none());
    let worker = c.add_child(
        "worker",
        &Limits {
            memory_bytes: Some(128 * MIB),
            ..Limits::none()
        },
    );
    let mut cmd = c.command_at(&init, false, &["sh", "-c", NESTED]);
    cmd.env("WORKER_PROCS", joined(&c.procs_files(&worker)));
    let out = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        meminfo_kb(&text, "MemTotal"),
        Some(512 * 1024),
        "a member in {worker} (128 MiB of its own) sees the container's 512 MiB:\n{text}"
    );
}
