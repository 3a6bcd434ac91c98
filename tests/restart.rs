//! Containers keep their /proc view across a daemon crash, a reload and an
//! upgrade (issue 5), and a panic in one rendering is contained.
//!
//! Every test runs a reader inside a container that opens, reads and closes
//! `/proc/meminfo` every 2 ms (and `/proc/stat`, fresh and through a
//! descriptor it keeps open as `top` does, and `/proc/loadavg`), timing each
//! read, while the daemon is killed or reloaded. A read that hung would
//! keep the reader from ever reporting, which fails the test.
//!
//! Run as root: `cargo test --test restart -- --nocapture` prints the
//! measurements.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The reader. argv: stop file, expected MemTotal in kB. Prints one line
/// of `key=value` when the stop file appears.
const READER: &str = r#"
import os, sys, time
stop, want = sys.argv[1], sys.argv[2]
reads = fails = 0
first_fail = last_fail = last_ok = 0.0
fail_msgs = []
maxlat = 0.0
back = []
kept = os.open("/proc/stat", os.O_RDONLY)
prev = {}
loads = []
def cpus(text):
    return {l.split()[0]: [int(x) for x in l.split()[1:]] for l in text.splitlines() if l.startswith("cpu")}
def check(name, text):
    now = cpus(text)
    old = prev.get(name)
    if old:
        for k, v in now.items():
            if k in old and any(a < b for a, b in zip(v, old[k])):
                back.append(f"{name} {k} {old[k]} -> {v}")
    prev[name] = now
def timed(f):
    global reads, fails, first_fail, last_fail, last_ok, maxlat
    t = time.monotonic()
    try:
        f()
        reads += 1
        last_ok = t
    except Exception as e:
        fails += 1
        first_fail = first_fail or t
        last_fail = t
        fail_msgs.append(f.__name__ + ":" + repr(e))
        del fail_msgs[:-3]
    maxlat = max(maxlat, time.monotonic() - t)
def meminfo():
    with open("/proc/meminfo") as f:
        first = f.readline().split()
    if first[:2] != ["MemTotal:", want]:
        raise Exception(f"wrong MemTotal {first}")
def stat_fresh():
    with open("/proc/stat") as f:
        check("fresh", f.read())
def stat_kept():
    # A file open on a connection that died stays dead (a crash, not a
    # reload): reopen it next time, as a tool that retries would.
    global kept
    if kept < 0:
        kept = os.open("/proc/stat", os.O_RDONLY)
    try:
        data = os.pread(kept, 65536, 0).decode()
    except OSError:
        os.close(kept)
        kept = -1
        raise
    check("kept", data)
def loadavg():
    with open("/proc/loadavg") as f:
        loads.append(float(f.read().split()[0]))
i = 0
while not os.path.exists(stop):
    timed(meminfo)
    if i % 10 == 0:
        timed(stat_fresh)
        timed(stat_kept)
        timed(loadavg)
    i += 1
    time.sleep(0.002)
load_back = sum(1 for a, b in zip(loads, loads[1:]) if b < a)
print(f"done reads={reads} fails={fails} first_fail={first_fail:.6f} last_fail={last_fail:.6f} last_ok={last_ok:.6f} "
      f"maxlat_ms={maxlat*1000:.1f} backwards={len(back)} load_first={loads[0] if loads else -1} "
      f"load_last={loads[-1] if loads else -1} load_backwards={load_back} "
      f"why={'|'.join(fail_msgs + back[:3]).replace(' ', '_') or '-'}", flush=True)
"#;

/// CLOCK_MONOTONIC in seconds, the clock of Python's time.monotonic().
fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// A running reader and the file that stops it.
struct Reader {
    spawned: Spawned,
    stop: RemoveOnDrop,
}

impl Reader {
    fn start(c: &Container<'_>, dir: &Path) -> Reader {
        let stop = dir.join(format!("{}.stop", unique_name()));
        let _ = fs::remove_file(&stop);
        let want = (c.limits.memory_bytes.expect("a memory limit") / 1024).to_string();
        let stop_arg = stop.to_string_lossy().into_owned();
        let spawned = c.spawn(&["/usr/bin/python3", "-c", READER, &stop_arg, &want]);
        // Let it read a while before anything happens.
        thread::sleep(Duration::from_millis(300));
        Reader {
            spawned,
            stop: RemoveOnDrop(stop),
        }
    }

    /// Stops the reader and returns its report. A reader that does not
    /// report within 20 s is stuck in a read: the test fails.
    fn finish(self) -> BTreeMap<String, String> {
        fs::write(&self.stop.0, "").expect("create the stop file");
        let line = self
            .spawned
            .next_line(Duration::from_secs(20))
            .unwrap_or_else(|| {
                panic!(
                    "the reader did not finish within 20 s of being told to: a read hung\nstderr: {}",
                    self.spawned.stderr_text()
                )
            });
        let report: BTreeMap<String, String> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(line.starts_with("done"), "reader said {line:?}");
        report
    }
}

fn num(r: &BTreeMap<String, String>, k: &str) -> f64 {
    r.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("reader report lacks {k}: {r:?}"))
}

/// Copies the built daemon to `<dir>/bin/proclens` through a new file and
/// a rename (a running binary cannot be overwritten in place), appending
/// `marker` so that each install is a different file with different bytes.
fn install(dir: &Path, marker: &str) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("mkdir bin");
    let mut bytes = fs::read(proclens_bin()).expect("read the built daemon");
    bytes.extend_from_slice(format!("\nproclens-test-build {marker}\n").as_bytes());
    install_bytes(&bin.join("proclens"), &bytes)
}

fn install_bytes(path: &Path, bytes: &[u8]) -> PathBuf {
    let tmp = path.with_extension("new");
    fs::write(&tmp, bytes).expect("write the new binary");
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    fs::rename(&tmp, path).expect("rename over the installed binary");
    path.to_owned()
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// Waits until the daemon's log holds `n` lines containing `what`.
fn wait_log(d: &Daemon, what: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while count(&d.log_text(), what) < n {
        assert!(
            Instant::now() < deadline,
            "no {n}th {what:?} in the daemon log within {timeout:?}:\n{}",
            d.log_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The supervisor's children: the serving worker and any still draining.
fn workers(d: &Daemon) -> Vec<u32> {
    let pid = d.pid().expect("daemon running");
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("proclens-e2e-")
        .tempdir()
        .expect("temp dir")
}

#[test]
fn sigkill_then_restart_reattaches_containers_and_no_read_hangs() {
    let _serial = serial();
    let dir = temp_dir();
    let first = Daemon::start_in(dir.path());
    let c = Container::new(&first, Limits::standard());
    let c2 = Container::new(&first, Limits::standard());
    let reader = Reader::start(&c, dir.path());
    let reader2 = Reader::start(&c2, dir.path());

    // Entries live 1 s in the kernel. Let the containers' lookups of
    // proc/meminfo expire, then look up proc/cpuinfo, which renews the
    // entry of proc: after the crash, a lookup of proc/meminfo then finds
    // only meminfo's entry to revalidate, fails, and the kernel drops that
    // dentry; the containers' binds of it show in mountinfo as
    // `/proc/meminfo//deleted`, and must be re-attached all the same.
    thread::sleep(Duration::from_millis(1100));
    fs::metadata(dir.path().join("mnt/proc/cpuinfo")).expect("cpuinfo");
    // SIGKILL (the containers borrow `first`, so not through kill_hard):
    // our own unreaped child, whose pid cannot have been recycled.
    let pid = first.pid().expect("running");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "daemon survived SIGKILL");
        thread::sleep(Duration::from_millis(5));
    }
    // The gap: reads fail (fast) while no daemon runs.
    thread::sleep(Duration::from_millis(500));
    let dead = fs::metadata(dir.path().join("mnt/proc/meminfo"));
    assert_eq!(
        dead.as_ref().err().and_then(|e| e.raw_os_error()),
        Some(libc::ENOTCONN),
        "{dead:?}"
    );
    let shown = fs::read_to_string(format!("/proc/{}/mountinfo", reader.spawned.init_pid()))
        .expect("the container's mountinfo");
    assert!(
        shown
            .lines()
            .any(|l| l.split(' ').nth(3) == Some("/proc/meminfo//deleted")),
        "the dead bind's root is not shown as deleted:\n{shown}"
    );
    let restart = monotonic();
    let t = Instant::now();
    let second = Daemon::start_in(dir.path());
    let host_ready = t.elapsed();
    // Long enough that a container not recovered within 2 s shows it.
    thread::sleep(Duration::from_secs(3));
    let r = reader.finish();
    let r2 = reader2.finish();
    println!("after SIGKILL: host mount point serving again {host_ready:?} after the restart");
    for (name, r) in [("container 1", &r), ("container 2", &r2)] {
        let recovered = num(r, "last_fail") - restart;
        let gap = num(r, "last_fail") - num(r, "first_fail");
        println!(
            "{name}: {} reads, {} failed over {:.0} ms, recovered {:.0} ms after the restart, longest read {} ms",
            r["reads"],
            r["fails"],
            gap * 1000.0,
            recovered * 1000.0,
            r["maxlat_ms"]
        );
        assert!(
            num(r, "fails") > 0.0,
            "{name}: no read failed while no daemon ran: the test did not test anything: {r:?}"
        );
        assert!(
            num(r, "last_ok") > num(r, "last_fail") + 0.5,
            "{name}: reads still failed at the end, 3 s after the restart: {r:?}\n{}",
            second.log_text()
        );
        assert!(
            recovered < 2.0,
            "{name}: reads still failed {recovered:.2} s after the new daemon started: {r:?}\n{}",
            second.log_text()
        );
        assert!(
            num(r, "maxlat_ms") < 1000.0,
            "{name}: a read took {} ms: reads of a dead mount must fail fast",
            r["maxlat_ms"]
        );
    }
    // And a fresh read in the container, long after, is the container's.
    let out = c.sh("head -1 /proc/meminfo");
    assert_eq!(out.trim(), "MemTotal:         262144 kB");
    assert!(
        second
            .log_text()
            .contains("re-attached mounts left by a daemon that died"),
        "{}",
        second.log_text()
    );
    drop((c, c2));
    drop(second);
    drop(first);
}

#[test]
fn ten_upgrades_with_zero_failed_reads_and_no_counter_going_backwards() {
    let _serial = serial();
    let dir = temp_dir();
    let bin = install(dir.path(), "0");
    let d = Daemon::start_program(dir.path(), &bin, &[]);
    let sup = d.pid().expect("running");
    // No CPU quota: a quota would throttle the reader together with the
    // busy loop, and measure the throttling instead of the reloads.
    let c = Container::new(
        &d,
        Limits {
            cfs: None,
            ..Limits::standard()
        },
    );
    // Something runnable, so that the load average grows from 0; at nice
    // 19 it leaves the reader the CPU whenever it wants it.
    let _busy = c.spawn(&[
        "/usr/bin/python3",
        "-c",
        "import os\nos.nice(19)\nwhile True: pass",
    ]);
    let reader = Reader::start(&c, dir.path());
    // One load-average sample before the first reload.
    thread::sleep(Duration::from_secs(6));
    let mut took = Vec::new();
    for i in 1..=10 {
        let bin = install(dir.path(), &i.to_string());
        let t = Instant::now();
        kill(Pid::from_raw(sup as i32), Signal::SIGHUP).expect("SIGHUP");
        wait_log(&d, "reload complete", i, Duration::from_secs(60));
        took.push(t.elapsed());
        // The same pid now runs the new file.
        let exe = fs::metadata(format!("/proc/{sup}/exe")).expect("supervisor alive");
        let new = fs::metadata(&bin).expect("installed");
        assert_eq!(
            (exe.dev(), exe.ino()),
            (new.dev(), new.ino()),
            "after reload {i} pid {sup} does not run the newly installed file"
        );
        thread::sleep(Duration::from_millis(500));
    }
    let r = reader.finish();
    println!(
        "ten reloads took {:?}; reader: {} reads, {} failed, longest read {} ms, load {} -> {}",
        took, r["reads"], r["fails"], r["maxlat_ms"], r["load_first"], r["load_last"]
    );
    let log = d.log_text();
    assert_eq!(
        num(&r, "fails"),
        0.0,
        "reads failed across the reloads: {r:?}\n{log}"
    );
    assert!(
        num(&r, "maxlat_ms") < 500.0,
        "a read took {} ms during the reloads",
        r["maxlat_ms"]
    );
    assert_eq!(
        num(&r, "backwards"),
        0.0,
        "/proc/stat went backwards across the reloads: {r:?}"
    );
    assert_eq!(
        num(&r, "load_backwards"),
        0.0,
        "the load average dropped: {r:?}"
    );
    assert!(
        num(&r, "load_last") > 0.0,
        "the load average never grew (state lost?): {r:?}"
    );
    assert_eq!(
        count(&log, "took over the state of"),
        10,
        "every successor takes the state over:\n{log}"
    );
    // The reader kept /proc/stat open on the first worker's connection:
    // replaced workers drain and exit once it is closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers(&d).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "replaced workers still running 10 s after their last reader left: {:?}\n{log}",
            workers(&d)
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        c.sh("head -1 /proc/meminfo").trim(),
        "MemTotal:         262144 kB"
    );
}

#[test]
fn a_broken_new_binary_leaves_the_old_one_serving() {
    let _serial = serial();
    let dir = temp_dir();
    let bin = install(dir.path(), "good");
    let d = Daemon::start_program(dir.path(), &bin, &[]);
    let sup = d.pid().expect("running");
    let c = Container::new(&d, Limits::standard());
    let reader = Reader::start(&c, dir.path());
    let serving = workers(&d);

    install_bytes(&bin, b"#!/bin/sh\nexit 1\n");
    kill(Pid::from_raw(sup as i32), Signal::SIGHUP).expect("SIGHUP");
    wait_log(&d, "reload failed", 1, Duration::from_secs(60));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(workers(&d), serving, "the old worker must keep serving");

    // A good binary again: the next reload goes through.
    install(dir.path(), "good again");
    kill(Pid::from_raw(sup as i32), Signal::SIGHUP).expect("SIGHUP");
    wait_log(&d, "reload complete", 1, Duration::from_secs(60));
    thread::sleep(Duration::from_millis(300));
    let r = reader.finish();
    println!(
        "broken then good binary: {} reads, {} failed, longest {} ms",
        r["reads"], r["fails"], r["maxlat_ms"]
    );
    assert_eq!(num(&r, "fails"), 0.0, "{r:?}\n{}", d.log_text());
    assert_eq!(num(&r, "backwards"), 0.0, "{r:?}");
}

#[test]
fn a_panicking_rendering_gets_the_host_file_and_everyone_else_is_served() {
    let _serial = serial();
    let dir = temp_dir();
    // The trigger exists in debug builds only (src/container/testhook.rs).
    let d = Daemon::start_program(
        dir.path(),
        Path::new(proclens_bin()),
        &[("PROCLENS_TEST_PANIC", "plpanic")],
    );
    let c = Container::new(&d, Limits::standard());
    let panicker = dir.path().join("plpanic");
    fs::copy(which("cat").expect("cat"), &panicker).expect("copy cat");
    let script = format!(
        "{p} /proc/meminfo | head -1; head -1 /proc/meminfo; {p} /proc/uptime >/dev/null; head -1 /proc/meminfo",
        p = panicker.display()
    );
    let out = c.sh(&script);
    let lines: Vec<&str> = out.lines().collect();
    let host = read("/proc/meminfo");
    let host_first = host.lines().next().unwrap_or_default();
    assert_eq!(
        lines.first().copied(),
        Some(host_first),
        "the reader whose rendering panics gets the host's file (if it shows the container's \
         limit, the test-only trigger did not fire: is the daemon a release build?): {out}"
    );
    assert_eq!(
        lines.get(1).copied(),
        Some("MemTotal:         262144 kB"),
        "{out}"
    );
    assert_eq!(
        lines.get(2).copied(),
        Some("MemTotal:         262144 kB"),
        "{out}"
    );
    let log = d.log_text();
    assert!(
        log.contains("PROCLENS_TEST_PANIC"),
        "the panic is logged:\n{log}"
    );
    // The daemon (and its worker) still serve another container.
    let c2 = Container::new(&d, Limits::standard());
    assert_eq!(
        c2.sh("head -1 /proc/meminfo").trim(),
        "MemTotal:         262144 kB"
    );
    assert_eq!(
        workers(&d).len(),
        1,
        "the worker did not die and get replaced:\n{log}"
    );
    assert!(!log.contains("died"), "{log}");
}

/// Mount namespaces each with the nine binds, as a container has them,
/// held by sleeping processes of ours; Drop kills them.
struct Namespaces(Vec<Child>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

const BINDS: &str = r#"m=$1
for f in meminfo cpuinfo stat loadavg uptime diskstats swaps; do mount --bind "$m/proc/$f" "/proc/$f"; done
mount --bind "$m/sys/devices/system/cpu" /sys/devices/system/cpu
mount --bind "$m/sys/block" /sys/block
exec sleep 600
"#;

/// `PROCLENS_RESTART_NAMESPACES` (default 500) namespaces: after SIGKILL,
/// the time until every one of them reads its meminfo again.
#[test]
fn sigkill_with_many_mount_namespaces_recovers_them_all() {
    let _serial = serial();
    let n: usize = std::env::var("PROCLENS_RESTART_NAMESPACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = temp_dir();
    let mut first = Daemon::start_in(dir.path());
    let mut nss = Namespaces(Vec::new());
    for _ in 0..n {
        let child = host_command(which("unshare").expect("unshare"))
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                BINDS,
                "sh",
            ])
            .arg(first.mountpoint())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare");
        nss.0.push(child);
    }
    // Every namespace has its binds once its shell became sleep.
    let pids: Vec<u32> = nss.0.iter().map(Child::id).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for p in &pids {
        while fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() != b"sleep\x00600\x00" {
            assert!(Instant::now() < deadline, "namespace {p} not set up");
            thread::sleep(Duration::from_millis(5));
        }
    }
    first.kill_hard();
    let t = Instant::now();
    let second = Daemon::start_in(dir.path());
    let mut logged = None;
    while logged.is_none() && t.elapsed() < Duration::from_secs(60) {
        if second.log_text().contains("re-attached mounts") {
            logged = Some(t.elapsed());
        }
        thread::sleep(Duration::from_millis(5));
    }
    // Read through each namespace's own bind (its /proc/meminfo), from a
    // child process so that a hung read cannot hang the test.
    let mut pending = pids.clone();
    while !pending.is_empty() {
        let paths: Vec<String> = pending
            .iter()
            .map(|p| format!("/proc/{p}/root/proc/meminfo"))
            .collect();
        let out = run_with_timeout(
            Command::new("/bin/sh")
                .arg("-c")
                .arg("for f; do head -c 9 \"$f\" >/dev/null 2>&1 || echo \"$f\"; done")
                .arg("sh")
                .args(&paths),
            Duration::from_secs(30),
        );
        let failing: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.trim_start_matches("/proc/")
                    .split('/')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        pending = failing;
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} namespaces still fail 60 s after the restart\n{}",
            pending.len(),
            second.log_text()
        );
    }
    let all = t.elapsed();
    let line = second
        .log_text()
        .lines()
        .find(|l| l.contains("re-attached mounts"))
        .unwrap_or_default()
        .to_owned();
    println!(
        "{n} namespaces x 9 binds: the daemon reported them done {logged:?} after the restart, all checked readable {all:?} after it; daemon: {line}"
    );
    assert!(line.contains(&format!("in {n} namespaces")), "{line}");
    drop(nss);
    drop(second);
    drop(first);
}
