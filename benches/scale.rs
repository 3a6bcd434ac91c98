//! Scale: N containers, each a cgroup with two sleeping tasks, one of which
//! has read loadavg through the mount (so the daemon tracks its load
//! average). For proclens and for `lxcfs -l` at the same N, one daemon at a
//! time:
//! - the daemon's CPU while nothing reads (that is the load-average sampler
//!   at work), as % of one core and per 5 s cycle, and proclens's sampler
//!   thread on its own;
//! - its resident memory;
//! - the latency a container sees reading loadavg every millisecond
//!   meanwhile (median, 99th percentile, worst);
//! - the aggregate reads per second of 16 readers in 16 containers reading
//!   meminfo in a loop.
//!
//! Run as root: `cargo bench --bench scale` (N = 100, 500, 1000, a 60 s idle
//! window; `SCALE_NS=100,500` and `SCALE_WINDOW=20` change that). Without
//! `--bench`, as `cargo test --all-targets` runs it, a short mode (N = 10,
//! 3 s) checks the bench itself works.

mod common;

use common::{quantile, us, Cgroup, Daemon};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One container: its cgroup and the pids of its two tasks.
struct Container {
    shell: Child,
    other: i32,
    _cg: Cgroup,
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: kill(2) on pids this bench started.
        unsafe {
            libc::kill(self.other, libc::SIGKILL);
            libc::kill(self.shell.id() as i32, libc::SIGKILL);
        }
        let _ = self.shell.wait();
        // The other task is our child too (we are a subreaper): reap it.
        // SAFETY: waitpid on a pid we started.
        unsafe { libc::waitpid(self.other, std::ptr::null_mut(), 0) };
    }
}

/// Makes a container whose shell joins its cgroup, starts a second task,
/// reads `loadavg` through the mount and then sleeps.
fn container(name: &str, mp: &Path) -> Container {
    let cg = Cgroup::new(name);
    let script = r#"for f in $CG; do echo $$ > "$f"; done
sleep 86400 & echo $!
cat "$MP/proc/loadavg" > /dev/null && echo read
exec sleep 86400"#;
    let mut shell = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env("CG", cg.env().replace(':', " "))
        .env("MP", mp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a container shell");
    let mut lines = BufReader::new(shell.stdout.take().expect("stdout")).lines();
    let other: i32 = lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| l.trim().parse().ok())
        .expect("the second task's pid");
    let read = lines.next().and_then(|l| l.ok());
    let c = Container {
        shell,
        other,
        _cg: cg,
    };
    assert_eq!(
        read.as_deref(),
        Some("read"),
        "{name} could not read loadavg"
    );
    c
}

/// ns of CPU a process (all its threads) or one of its threads has used.
fn cpu_ns(task_dir: &Path) -> u64 {
    std::fs::read_to_string(task_dir.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A daemon and its descendants (proclens serves from a worker process
/// below its supervisor).
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    out
}

fn tasks(pid: u32) -> Vec<PathBuf> {
    tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
        .flat_map(|d| d.flatten().map(|t| t.path()).collect::<Vec<_>>())
        .collect()
}

fn daemon_cpu_ns(pid: u32) -> u64 {
    tasks(pid).iter().map(|t| cpu_ns(t)).sum()
}

fn daemon_rss_kib(pid: u32) -> u64 {
    tree(pid).into_iter().map(|p| common::rss_kib(p).0).sum()
}

/// proclens's load-average thread (named "loadavg").
fn sampler_thread(pid: u32) -> Option<PathBuf> {
    tasks(pid)
        .into_iter()
        .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "loadavg"))
}

/// A reader process in `cg` (role PROCLENS_SCALE_READER): "latency" reads
/// every millisecond and prints each latency in ns; "loop" reads as fast as
/// it can and prints the count.
fn reader_role(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let (mode, cg, path, secs) = (parts[0], parts[1], Path::new(parts[2]), parts[3]);
    common::join(cg);
    let end = Instant::now() + Duration::from_secs_f64(secs.parse().expect("seconds"));
    let mut buf = Vec::with_capacity(1 << 14);
    let mut read = || {
        buf.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    };
    match mode {
        "latency" => {
            let mut out = String::new();
            while Instant::now() < end {
                let t = Instant::now();
                read();
                out += &format!("{}\n", t.elapsed().as_nanos());
                std::thread::sleep(Duration::from_millis(1));
            }
            print!("{out}");
        }
        _ => {
            let mut n = 0u64;
            while Instant::now() < end {
                read();
                n += 1;
            }
            println!("{n}");
        }
    }
}

fn start_reader(mode: &str, cg: &Cgroup, path: &Path, secs: f64) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .env(
            "PROCLENS_SCALE_READER",
            format!("{mode};{};{};{secs}", cg.env(), path.display()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a reader")
}

fn output(child: Child) -> String {
    let out = child.wait_with_output().expect("reader output");
    assert!(out.status.success(), "a reader failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Row {
    daemon: &'static str,
    n: usize,
    cpu_pct: f64,
    cycle_ms: f64,
    sampler_ms: Option<f64>,
    rss_mib: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    reads_per_s: f64,
}

fn measure(daemon: &'static str, n: usize, window: Duration, readers: usize, tmp: &Path) -> Row {
    let mp = tmp.join(format!("{daemon}-{n}"));
    let d = match daemon {
        "proclens" => Daemon::proclens(&mp),
        _ => Daemon::lxcfs(&mp),
    };
    let pid = d.pid();
    let t = Instant::now();
    let containers: Vec<Container> = (0..n)
        .map(|i| container(&format!("proclens-scale-{}-{i}", std::process::id()), &mp))
        .collect();
    eprintln!(
        "{daemon}: {n} containers up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Let the first sampler cycles that see them all go by.
    std::thread::sleep(Duration::from_secs(6).min(window));

    let sampler = sampler_thread(pid);
    let (cpu0, s0, t0) = (
        daemon_cpu_ns(pid),
        sampler.as_deref().map(cpu_ns),
        Instant::now(),
    );
    std::thread::sleep(window);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (daemon_cpu_ns(pid) - cpu0) as f64 / 1e9;
    let sampler_s = s0.and_then(|s0| Some((cpu_ns(sampler.as_deref()?) - s0) as f64 / 1e9));
    let cycles = secs / 5.0;

    // One container reads loadavg every millisecond while sampling goes on.
    let lat_cg = &containers[0]._cg;
    let lat_secs = (window.as_secs_f64() / 6.0).max(2.0);
    let mut lat: Vec<Duration> = output(start_reader(
        "latency",
        lat_cg,
        &mp.join("proc/loadavg"),
        lat_secs,
    ))
    .lines()
    .filter_map(|l| l.parse().ok())
    .map(Duration::from_nanos)
    .collect();
    lat.sort();

    // Aggregate throughput of readers in distinct containers.
    let loop_secs = 5.0_f64.min(window.as_secs_f64());
    let kids: Vec<Child> = containers
        .iter()
        .cycle()
        .take(readers)
        .map(|c| start_reader("loop", &c._cg, &mp.join("proc/meminfo"), loop_secs))
        .collect();
    let total: u64 = kids
        .into_iter()
        .map(|k| output(k).trim().parse::<u64>().expect("count"))
        .sum();

    let rss = daemon_rss_kib(pid);
    drop(containers);
    drop(d);
    Row {
        daemon,
        n,
        cpu_pct: cpu / secs * 100.0,
        cycle_ms: cpu / cycles * 1e3,
        sampler_ms: sampler_s.map(|s| s / cycles * 1e3),
        rss_mib: rss as f64 / 1024.0,
        p50: quantile(&lat, 0.5),
        p99: quantile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        reads_per_s: total as f64 / loop_secs,
    }
}

fn main() {
    if let Ok(spec) = std::env::var("PROCLENS_SCALE_READER") {
        return reader_role(&spec);
    }
    let full = std::env::args().any(|a| a == "--bench");
    common::require_root("the scale bench");
    let ns: Vec<usize> = match std::env::var("SCALE_NS") {
        Ok(v) => v
            .split(',')
            .map(|n| n.trim().parse().expect("SCALE_NS"))
            .collect(),
        Err(_) if full => vec![100, 500, 1000],
        Err(_) => vec![10],
    };
    let window = Duration::from_secs(match std::env::var("SCALE_WINDOW") {
        Ok(v) => v.parse().expect("SCALE_WINDOW"),
        Err(_) if full => 60,
        Err(_) => 3,
    });
    let readers = 16;
    let _lock = common::host_lock();
    // Orphaned tasks of a container come back to us to be reaped.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut daemons = vec!["proclens"];
    if common::want_lxcfs() {
        daemons.push("lxcfs");
    }
    let mut rows = Vec::new();
    for &n in &ns {
        for &d in &daemons {
            rows.push(measure(d, n, window, readers, tmp.path()));
        }
    }
    println!(
        "Scale: N containers with 2 sleeping tasks each, all tracked for loadavg; idle window {} s",
        window.as_secs()
    );
    println!(
        "{:<9}{:>6}{:>9}{:>12}{:>12}{:>9}{:>24}{:>14}",
        "daemon",
        "N",
        "CPU %",
        "ms/cycle",
        "sampler ms",
        "RSS MiB",
        "loadavg p50/p99/max µs",
        "16 readers/s"
    );
    for r in rows {
        println!(
            "{:<9}{:>6}{:>9.2}{:>12.2}{:>12}{:>9.1}{:>24}{:>14.0}",
            r.daemon,
            r.n,
            r.cpu_pct,
            r.cycle_ms,
            r.sampler_ms.map_or("-".into(), |s| format!("{s:.2}")),
            r.rss_mib,
            format!("{:.0}/{:.0}/{:.0}", us(r.p50), us(r.p99), us(r.max)),
            r.reads_per_s
        );
    }
}
