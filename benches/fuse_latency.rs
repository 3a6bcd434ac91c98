//! FUSE read latency: median open+read+close of each file, the kernel's own
//! /proc file next to proclens's, read by a process inside a fresh cgroup
//! (memory 256 MiB, one CPU), as a container would.
//!
//! Run as root: `cargo bench --bench fuse_latency`. Without `--bench` (as
//! `cargo test --all-targets` runs it) it does nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const ITERATIONS: usize = 3000;
const FILES: [&str; 7] = [
    "meminfo",
    "cpuinfo",
    "stat",
    "loadavg",
    "uptime",
    "diskstats",
    "swaps",
];

fn median_read(path: &Path) -> Duration {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut times: Vec<Duration> = (0..ITERATIONS)
        .map(|_| {
            buf.clear();
            let t = Instant::now();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The reader: runs inside the benchmark cgroup and prints one line per file.
fn child(mp: &Path) {
    println!(
        "{:<10} {:>12} {:>12} {:>7}",
        "file", "kernel", "proclens", "ratio"
    );
    for f in FILES {
        let k = median_read(&Path::new("/proc").join(f));
        let p = median_read(&mp.join("proc").join(f));
        println!(
            "{f:<10} {:>9.1} µs {:>9.1} µs {:>6.1}x",
            k.as_secs_f64() * 1e6,
            p.as_secs_f64() * 1e6,
            p.as_secs_f64() / k.as_secs_f64()
        );
    }
}

/// A cgroup the benchmark made in every memory/cpu hierarchy; removed on drop.
struct Cgroup(Vec<PathBuf>);

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let mut dirs = Vec::new();
        for l in mountinfo.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else {
                continue;
            };
            let (fstype, opts) = (f[sep + 1], f[sep + 3]);
            let wanted = fstype == "cgroup2" && !Path::new("/sys/fs/cgroup/memory").exists()
                || fstype == "cgroup"
                    && ["memory", "cpuset", "cpu", "cpuacct"]
                        .iter()
                        .any(|c| opts.split(',').any(|o| o == *c));
            if wanted {
                let d = Path::new(f[4]).join(name);
                std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
                dirs.push(d);
            }
        }
        for d in &dirs {
            let _ = std::fs::write(d.join("memory.limit_in_bytes"), "268435456");
            let _ = std::fs::write(d.join("memory.max"), "268435456");
            if d.join("cpuset.mems").exists() && !d.join("cgroup.type").exists() {
                std::fs::write(d.join("cpuset.mems"), "0").expect("cpuset.mems");
                std::fs::write(d.join("cpuset.cpus"), "0").expect("cpuset.cpus");
            }
        }
        Cgroup(dirs)
    }

    fn env(&self) -> String {
        self.0
            .iter()
            .map(|d| d.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

struct Daemon(Child, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child we started.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
        let _ = nix::mount::umount2(&self.1, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Ok(mp) = std::env::var("PROCLENS_BENCH_CHILD") {
        // Join the benchmark cgroup before the first read ("0" is the writer).
        for d in std::env::var("PROCLENS_BENCH_CGROUPS")
            .unwrap_or_default()
            .split(':')
        {
            std::fs::write(Path::new(d).join("cgroup.procs"), "0").expect("join cgroup");
        }
        return child(Path::new(&mp));
    }
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the FUSE latency bench needs root"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let mp = tmp.path().join("mnt");
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_proclens"))
            .arg("mount")
            .arg(&mp)
            .spawn()
            .expect("start proclens"),
        mp.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(mp.join("proc/meminfo")).is_err() {
        assert!(Instant::now() < deadline, "proclens did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cg = Cgroup::new(&format!("proclens-bench-{}", std::process::id()));
    let mut reader = Command::new(&args[0]);
    reader
        .env("PROCLENS_BENCH_CHILD", &mp)
        .env("PROCLENS_BENCH_CGROUPS", cg.env());
    let status = reader.status().expect("reader");
    drop(daemon);
    drop(cg);
    assert!(status.success(), "reader failed");
}
