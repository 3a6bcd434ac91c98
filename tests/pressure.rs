//! Past lxcfs (issue 16): inside a container, `/proc/pressure/*` are its
//! cgroup's pressure stalls (and take PSI triggers as the kernel's files
//! do), `/proc/vmstat` counts its own faults and block I/O, and the time
//! its tasks waited for a CPU the host gave to others shows as steal in
//! `/proc/stat`, not as idle.
//!
//! - A memory-starved container (a 48 MiB limit below its 128 MiB of page
//!   cache) shows `memory.pressure` stalls; an idle neighbour none.
//! - A trigger fires on a CPU-starved container, once per event, and
//!   never on an idle one; without a trigger a poll says POLLERR|POLLPRI;
//!   a reader without CAP_SYS_RESOURCE gets the kernel's own answers; a
//!   container may hold only so many; closing drops the trigger.
//! - `vmstat`'s `bo` and /proc/vmstat's `pgpgout` are the container's own
//!   direct writes beside a host writing all the while; `pgfault` its faults.
//! - Two busy loops in a 1.5-CPU container beside a host busy loop: `top`
//!   shows at most 12% idle, the wait as `st`, never more than the loops'
//!   own run delay.
//!
//! Each compares what the container reads against the kernel's own
//! counters of its cgroup, read from the host just before and just after.
//! On this host's cgroup v1 (the harness puts the container in the unified
//! hierarchy too, where the kernel accounts its stalls) and in the v2 VM.
//!
//! Run as root: `cargo test --test pressure`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `some` and `full` totals (µs) of a pressure file's text.
fn totals(text: &str) -> (u64, u64) {
    let total = |kind: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.rsplit_once("total="))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {kind} total in {text:?}"))
    };
    (total("some "), total("full "))
}

fn host_totals(path: &Path) -> (u64, u64) {
    totals(&read(path))
}

/// What the container reads at `/proc/pressure/<res>` (a fresh instance
/// of it, `cat` alone), bracketed by its cgroup's file read from the host
/// just before and just after.
fn read_bracketed(c: &Container<'_>, res: &str) -> (u64, u64, u64, String) {
    let file = c.pressure_dir().join(format!("{res}.pressure"));
    let (before, _) = host_totals(&file);
    let text = c.sh(&format!("cat /proc/pressure/{res}"));
    let (after, _) = host_totals(&file);
    let (ours, _) = totals(&text);
    (before, ours, after, text)
}

#[test]
fn a_memory_starved_container_shows_memory_pressure_and_its_idle_neighbour_none() {
    let _serial = serial();
    let daemon = Daemon::start();
    let starved = Container::new(
        &daemon,
        Limits {
            memory_bytes: Some(48 * MIB),
            ..Limits::none()
        },
    );
    let neighbour = Container::new(&daemon, Limits::none());
    // The starved container writes 128 MiB through the page cache and
    // reads it back twice: its working set is twice and more its limit,
    // so charging each page reclaims another (memory stalls), and the
    // reads refault what was reclaimed.
    let file = Path::new("/var/tmp").join(format!("{}.cache", unique_name()));
    let _cleanup = RemoveOnDrop(file.clone());
    starved.sh(&format!(
        "dd if=/dev/zero of={f} bs=1M count=128 status=none && \
         for i in 1 2; do dd if={f} of=/dev/null bs=1M status=none; done",
        f = file.display()
    ));

    let (before, ours, after, text) = read_bracketed(&starved, "memory");
    println!("starved container's /proc/pressure/memory:\n{text}");
    assert!(
        before <= ours && ours <= after,
        "the container read some total={ours} µs; its cgroup said {before} before and {after} after:\n{text}"
    );
    assert!(
        ours > 0,
        "a container reclaiming at its limit shows no memory stall:\n{text}"
    );
    assert!(
        text.starts_with("some avg10=") && text.contains("\nfull avg10="),
        "the kernel's layout:\n{text}"
    );

    let (nb, nours, na, ntext) = read_bracketed(&neighbour, "memory");
    println!("idle neighbour's /proc/pressure/memory:\n{ntext}");
    assert!(
        nb <= nours && nours <= na,
        "neighbour: {nb} <= {nours} <= {na}"
    );
    assert!(
        nours * 100 <= ours,
        "the idle neighbour shows {nours} µs of memory stalls beside the starved container's {ours}"
    );
    // Each file of the container's is its own: cpu and io too.
    for res in ["cpu", "io"] {
        let (b, o, a, t) = read_bracketed(&starved, res);
        assert!(b <= o && o <= a, "{res}: {b} <= {o} <= {a}:\n{t}");
    }
}

/// argv: resource, trigger, seconds to wait. Opens /proc/pressure/<res>
/// read-write, writes the trigger (with the NUL psi.rst's example writes),
/// polls for POLLPRI until the first event or the time is up, then at once
/// once more, and prints one line per fact.
const TRIGGER: &str = r#"
import os, select, sys, time
res, trig, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
fd = os.open("/proc/pressure/" + res, os.O_RDWR | os.O_NONBLOCK)
p = select.poll()
p.register(fd, select.POLLPRI)
ev = dict(p.poll(0)).get(fd, 0)
print("before", "err" if ev & select.POLLERR else "ok", "pri" if ev & select.POLLPRI else "-")
try:
    os.write(fd, trig.encode() + b"\0")
except OSError as e:
    print("write", e.errno)
    sys.exit(0)
print("write ok")
start = time.monotonic()
fired = None
while time.monotonic() - start < secs:
    ev = dict(p.poll(100)).get(fd, 0)
    if ev & select.POLLERR:
        print("error")
        sys.exit(0)
    if ev & select.POLLPRI:
        fired = time.monotonic() - start
        break
print("fired", "%.3f" % fired if fired is not None else "never")
if fired is not None:
    # Events come at most once per window: right after one, none.
    ev = dict(p.poll(0)).get(fd, 0)
    print("again", "pri" if ev & select.POLLPRI else "-")
sys.stdout.flush()
if len(sys.argv) > 4:
    open(sys.argv[4], "w").close()
    time.sleep(600)
"#;

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{out}"))
}

/// The serving worker (the supervisor's child) of `daemon`.
fn worker_of(daemon: &Daemon) -> u32 {
    let sup = daemon.pid().expect("running");
    read(format!("/proc/{sup}/task/{sup}/children"))
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no worker under supervisor {sup}"))
}

/// How many of `pid`'s descriptors are open for writing on `file` (the
/// daemon also keeps one open read-only for reads).
fn descriptors_on(pid: u32, file: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == file))
        .filter(|e| {
            // fdinfo's flags are octal; O_ACCMODE 3, O_RDWR 2.
            std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .ok()
            .and_then(|t| {
                let f = t.lines().find_map(|l| l.strip_prefix("flags:"))?;
                u32::from_str_radix(f.trim(), 8).ok()
            })
            .is_some_and(|f| f & 3 != 0)
        })
        .count()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_trigger_fires_on_a_cpu_starved_container_and_never_on_an_idle_one() {
    let _serial = serial();
    let daemon = Daemon::start();
    let worker = worker_of(&daemon);
    let last_cpu = *host_online_cpus().iter().next_back().expect("a CPU");
    // Two busy loops on one CPU: one of them always waits, 100% `some`.
    let starved = Container::new(
        &daemon,
        Limits {
            cpus: Some(last_cpu.to_string()),
            ..Limits::none()
        },
    );
    let idle = Container::new(&daemon, Limits::none());
    let _loops = starved.spawn(&["sh", "-c", "(while :; do :; done) & while :; do :; done"]);
    let cpu_file = starved.pressure_dir().join("cpu.pressure");
    wait_for("the loops' stalls show", Duration::from_secs(10), || {
        host_totals(&cpu_file).0 > 200_000
    });

    // 300 ms of stall within 2 s (a window any reader may set since Linux
    // 6.5; before, only one with CAP_SYS_RESOURCE may set any): fires
    // within a window or two. The kernel's own file must take it from this
    // reader, or there is nothing to compare.
    let trig = "some 300000 2000000";
    let kernels = starved.sh_without_binds(&format!("python3 -c '{TRIGGER}' cpu '{trig}' 0"));
    assert_eq!(
        line(&kernels, "write"),
        "ok",
        "this kernel's /proc/pressure/cpu refuses {trig:?} to the tests' root (no CAP_SYS_RESOURCE before Linux 6.5?):\n{kernels}"
    );
    let out = starved.sh(&format!("python3 -c '{TRIGGER}' cpu '{trig}' 10"));
    println!("starved:\n{out}");
    assert_eq!(
        line(&out, "before"),
        "err pri",
        "no trigger yet: POLLERR|POLLPRI"
    );
    assert_eq!(line(&out, "write"), "ok");
    let fired: f64 = line(&out, "fired")
        .parse()
        .unwrap_or_else(|_| panic!("no event in 10 s on a container stalled all the time:\n{out}"));
    assert_eq!(line(&out, "again"), "-", "one POLLPRI per event:\n{out}");
    println!("the trigger fired {fired:.3} s after it was written");

    // An idle container stalls on nothing: no event in 3 windows (the
    // host, with the starved loops and the other tests' builds, would).
    let out = idle.sh(&format!("python3 -c '{TRIGGER}' cpu '{trig}' 6"));
    println!("idle:\n{out}");
    assert_eq!(
        line(&out, "fired"),
        "never",
        "an idle container's trigger fired:\n{out}"
    );

    // While a trigger is held, the daemon holds the container's own
    // cgroup file (never another's); closing the reader's file drops it.
    let ready = Path::new("/var/tmp").join(format!("{}.armed", unique_name()));
    let _cleanup = RemoveOnDrop(ready.clone());
    let mut holder = starved.spawn(&[
        "python3",
        "-c",
        TRIGGER,
        "cpu",
        trig,
        "0",
        ready.to_str().expect("utf-8"),
    ]);
    wait_for("the holder's trigger", Duration::from_secs(30), || {
        ready.exists()
    });
    assert_eq!(
        descriptors_on(worker, &cpu_file),
        1,
        "one cgroup file per trigger"
    );
    let idle_file = idle.pressure_dir().join("cpu.pressure");
    assert_eq!(descriptors_on(worker, &idle_file), 0);
    assert!(holder.is_running());
    drop(holder);
    wait_for("the trigger's file closed", Duration::from_secs(10), || {
        descriptors_on(worker, &cpu_file) == 0
    });
}

/// Opens `/proc/pressure/cpu` read-write and writes `trig` as a process
/// of uid 1000 with no capabilities; prints `ok` or the errno.
const UNPRIVILEGED: &str = r#"
import os, sys
try:
    fd = os.open("/proc/pressure/cpu", os.O_RDWR)
except OSError as e:
    print("open", e.errno)
    sys.exit(0)
try:
    os.write(fd, sys.argv[1].encode() + b"\0")
    print("write ok")
except OSError as e:
    print("write", e.errno)
"#;

/// Writes a trigger twice to one open file; prints the second's answer.
const TWICE: &str = r#"
import os
fd = os.open("/proc/pressure/io", os.O_RDWR)
os.write(fd, b"some 100000 2000000\0")
try:
    os.write(fd, b"some 100000 2000000\0")
    print("second ok")
except OSError as e:
    print("second", e.errno)
"#;

/// Opens pressure files for writing until refused; prints how many and why.
const MANY: &str = r#"
import os
fds = []
try:
    while len(fds) < 64:
        fds.append(os.open("/proc/pressure/memory", os.O_RDWR))
except OSError as e:
    print(len(fds), e.errno)
"#;

#[test]
fn triggers_answer_as_the_kernels_own_file_and_are_limited_per_container() {
    let _serial = serial();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::none());
    // Without CAP_SYS_RESOURCE, as the kernel's file: before Linux 6.5 a
    // write-open is refused (EPERM); since, windows that are not a
    // multiple of 2 s are (EINVAL). Whatever this kernel says to such a
    // reader on its own /proc/pressure/cpu, ours says the same.
    for trig in [
        "some 150000 1000000",
        "some 150000 2000000",
        "full 1 2",
        "bogus",
    ] {
        let script = format!(
            "setpriv --reuid 1000 --regid 1000 --clear-groups --inh-caps=-all python3 -c '{UNPRIVILEGED}' '{trig}'"
        );
        let ours = c.sh(&script);
        let kernels = c.sh_without_binds(&script);
        println!("{trig:?}: through proclens {ours:?}, the kernel's {kernels:?}");
        assert_eq!(ours, kernels, "{trig:?} from an unprivileged reader");
    }
    // The tests' root (with CAP_SYS_RESOURCE where the machine gives it
    // one: then any window goes) gets the kernel's answers too.
    for trig in ["some 150000 1000000", "some 150000 2000000"] {
        let script = format!("python3 -c '{UNPRIVILEGED}' '{trig}'");
        let (ours, kernels) = (c.sh(&script), c.sh_without_binds(&script));
        println!("{trig:?} as root: through proclens {ours:?}, the kernel's {kernels:?}");
        assert_eq!(ours, kernels, "{trig:?} from root");
    }

    // One trigger per open file (EBUSY), as the kernel's.
    let twice = c.sh(&format!("python3 -c '{TWICE}'"));
    assert_eq!(twice.trim(), format!("second {}", libc::EBUSY));

    // Only pressure files take writes, and only triggers: nothing else is
    // changed on them either.
    let ro = c.sh("echo x > /proc/meminfo 2>/dev/null && echo written || echo refused");
    assert_eq!(ro.trim(), "refused");
    let p = daemon.mountpoint().join("proc/pressure/cpu");
    for (what, r) in [
        (
            "chmod",
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)),
        ),
        ("rename", std::fs::rename(&p, p.with_file_name("renamed"))),
        ("unlink", std::fs::remove_file(&p)),
        (
            "create",
            std::fs::File::create(p.with_file_name("new")).map(drop),
        ),
    ] {
        let e = r.expect_err(what);
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EROFS),
            "{what} on a pressure file: {e}"
        );
    }

    // A container holds at most 16 of them open for writing: ENFILE after
    // (once the files of the readers above are released).
    let worker = worker_of(&daemon);
    let files: Vec<PathBuf> = ["cpu", "memory", "io"]
        .iter()
        .map(|r| c.pressure_dir().join(format!("{r}.pressure")))
        .collect();
    wait_for(
        "the earlier readers' files released",
        Duration::from_secs(10),
        || files.iter().all(|f| descriptors_on(worker, f) == 0),
    );
    let many = c.sh(&format!("python3 -c '{MANY}'"));
    assert_eq!(many.trim(), format!("16 {}", libc::ENFILE));
}

/// argv: disk name, the container's block I/O counters file, its memory
/// counters file, a scratch file. Reads its vmstat and its cgroup's own
/// counters before and after a 16 MiB O_DIRECT write and 32 MiB of
/// touched memory, and prints them.
const VMSTAT: &str = r#"
import mmap, os, sys
disk, io_file, mem_file, target = sys.argv[1:5]

def vmstat():
    return {k: int(v) for k, v in (l.split() for l in open("/proc/vmstat"))}

def written():
    t = open(io_file).read()
    if "wbytes=" in t:
        return sum(int(f.split("=")[1]) for l in t.splitlines() for f in l.split() if f.startswith("wbytes="))
    return sum(int(l.split()[2]) for l in t.splitlines() if len(l.split()) == 3 and l.split()[1] == "Write")

def faults():
    m = dict(l.split() for l in open(mem_file))
    return int(m.get("total_pgfault", m.get("pgfault")))

w0 = written(); v0 = vmstat(); w0b = written()
fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
buf = mmap.mmap(-1, 1 << 20)
buf.write(b"v" * (1 << 20))
for i in range(16):
    os.pwrite(fd, buf, i << 20)
os.close(fd)
w1 = written(); v1 = vmstat(); w1b = written()
print("written", w0, w0b, w1, w1b)
print("pgpgout", v0["pgpgout"], v1["pgpgout"])
f0 = faults(); v0 = vmstat()
# Base pages, one fault each (a transparent huge page would take 512 in one).
held = mmap.mmap(-1, 32 << 20)
held.madvise(mmap.MADV_NOHUGEPAGE)
for i in range(0, len(held), 4096):
    held[i] = 1
v1 = vmstat(); f1 = faults()
print("faults", f0, f1)
print("pgfault", v0["pgfault"], v1["pgfault"])
"#;

fn numbers(out: &str, key: &str) -> Vec<u64> {
    line(out, key)
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

#[test]
fn vmstat_counts_the_containers_own_io_and_faults_beside_a_busy_host() {
    let _serial = serial();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let disk = disk_of(Path::new("/var/tmp"));
    let target = Path::new("/var/tmp").join(format!("{}.vmstat", unique_name()));
    let _cleanup = RemoveOnDrop(target.clone());
    let (io_file, mem_file) = match c.version() {
        CgroupVersion::V1 => (
            c.cgroup_dir("blkio")
                .join("blkio.throttle.io_service_bytes_recursive"),
            c.cgroup_dir("memory").join("memory.stat"),
        ),
        CgroupVersion::V2 => (
            c.cgroup_dir("io").join("io.stat"),
            c.cgroup_dir("memory").join("memory.stat"),
        ),
    };
    // The host writes to the same disk all the while: the host's vmstat
    // counts that, the container's must not.
    let host = HostWriter::start(Path::new("/var/tmp"), 4);
    let out = c.sh(&format!(
        "python3 -c '{VMSTAT}' {} {} {} {}",
        disk.name,
        io_file.display(),
        mem_file.display(),
        target.display()
    ));
    println!("{out}");
    // pgpgout is the cgroup's written bytes in KiB: the reads of vmstat
    // sit between two reads of the counter that agree.
    let w = numbers(&out, "written");
    let p = numbers(&out, "pgpgout");
    assert_eq!(
        w[0], w[1],
        "the container wrote nothing while it read vmstat"
    );
    assert_eq!(w[2], w[3]);
    assert_eq!(p[0], w[0] / 1024, "pgpgout before: {out}");
    assert_eq!(p[1], w[2] / 1024, "pgpgout after: {out}");
    assert!(p[1] - p[0] >= 16 * 1024, "16 MiB written: {out}");
    // pgfault grows with the 8192 pages touched, within what the cgroup
    // counted around the two reads.
    let f = numbers(&out, "faults");
    let g = numbers(&out, "pgfault");
    assert!(
        f[0] <= g[0] && g[1] <= f[1],
        "pgfault within its cgroup's: {out}"
    );
    assert!(g[1] - g[0] >= 8192, "32 MiB touched: {out}");

    // vmstat itself: `bo` over each second. Idle, the container writes
    // nothing, whatever the host writes; writing, it shows what it writes.
    let idle = c.sh("vmstat -n 1 3");
    println!("idle container, busy host:\n{idle}");
    let bo = |out: &str| -> Vec<u64> {
        let header: Vec<&str> = out
            .lines()
            .nth(1)
            .expect("header")
            .split_whitespace()
            .collect();
        let col = header.iter().position(|h| *h == "bo").expect("a bo column");
        out.lines()
            .skip(2)
            .map(|l| {
                l.split_whitespace()
                    .nth(col)
                    .expect("bo")
                    .parse()
                    .expect("a number")
            })
            .collect()
    };
    let idle_bo = bo(&idle);
    assert_eq!(idle_bo.len(), 3, "{idle}");
    assert_eq!(&idle_bo[1..], &[0, 0], "an idle container's bo:\n{idle}");
    let kernels = c.sh_without_binds("vmstat -n 1 3");
    println!("the kernel's vmstat meanwhile:\n{kernels}");
    let writing = c.sh(&format!(
        "(while :; do dd if=/dev/zero of={} bs=1M count=8 oflag=direct conv=notrunc status=none; done) & \
         vmstat -n 1 3; kill $!",
        target.display()
    ));
    println!("writing container:\n{writing}");
    let w_bo = bo(&writing);
    assert!(
        w_bo[1..].iter().all(|b| *b > 0),
        "a container writing all the time shows bo 0:\n{writing}"
    );
    let written_by_host = host.stop();
    assert!(written_by_host > 0);
}

/// A busy loop on the host, outside every container. Drop stops it.
struct HostLoop(Child);

impl HostLoop {
    fn start() -> HostLoop {
        HostLoop(
            host_command("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .spawn()
                .expect("a host busy loop"),
        )
    }
}

impl Drop for HostLoop {
    fn drop(&mut self) {
        // Our own unreaped child: its pid cannot have been recycled.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sum of the run delays (ns) of `pids`' threads, from the host.
fn run_delay(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/schedstat")).ok())
        .filter_map(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The `steal` column of /proc/stat's `cpu` line in `text`, in ticks.
fn steal_ticks(text: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with("cpu "))
        .and_then(|l| l.split_whitespace().nth(8)?.parse().ok())
        .unwrap_or_else(|| panic!("no cpu line in {text:?}"))
}

#[test]
fn waiting_for_the_host_shows_as_steal_not_idle() {
    let _serial = serial();
    let daemon = Daemon::start();
    // 1.5 CPUs of quota over all the host's CPUs, two busy loops in it,
    // a third on the host: the container cannot get its allowance.
    let c = Container::new(
        &daemon,
        Limits {
            cfs: Some((150_000, 100_000)),
            ..Limits::none()
        },
    );
    let _host = HostLoop::start();
    let loops = c.spawn(&["sh", "-c", "(while :; do :; done) & while :; do :; done"]);
    let tasks: Vec<i32> = {
        let mut t = Vec::new();
        wait_for("two loops", Duration::from_secs(10), || {
            t = c.tasks().into_iter().collect();
            t.len() >= 2
        });
        t
    };
    let ticks_per_s = 100u64;
    let rd0 = run_delay(&tasks);
    let stat0 = c.sh("cat /proc/stat");
    let out = c.sh("top -b -n2 -d2 | grep '^%Cpu'");
    let stat1 = c.sh("cat /proc/stat");
    let rd1 = run_delay(&tasks);
    println!("top in the container:\n{out}");
    let idle = *top_percents(&out, "id").last().expect("an id field");
    let st = *top_percents(&out, "st").last().expect("an st field");
    assert!(
        idle <= 12.0,
        "two busy loops that could use their 1.5 CPUs but wait for the host show {idle}% idle:\n{out}"
    );
    assert!(st > 0.0, "the wait is not visible as st:\n{out}");
    // Steal is never more than the time the container's tasks waited:
    // the loops' wait over a span that holds the one of the two reads,
    // with a little room for what top and the shells waited.
    let stolen = steal_ticks(&stat1) - steal_ticks(&stat0);
    let waited = (rd1 - rd0) / (1_000_000_000 / ticks_per_s);
    println!("{stolen} ticks of steal; the loops waited {waited} ticks");
    assert!(
        stolen <= waited + waited / 10 + 5,
        "{stolen} ticks of steal, but the loops waited {waited} ticks meanwhile"
    );
    drop(loops);
}
