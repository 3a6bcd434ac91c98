//! Every read is fresh (issue 12, DESIGN 4): inside a container, a read
//! that begins after an action has completed shows the action, as the
//! kernel's own files do. 30 rounds of each, no stale read allowed:
//!
//! - a 4 KiB O_DIRECT write, then `/proc/diskstats` and
//!   `/sys/block/<disk>/stat`;
//! - 64 MiB touched, then `/proc/meminfo`;
//! - 30 ms of CPU, then `/proc/stat`;
//! - a new task, then `/proc/loadavg`'s total.
//!
//! And a cgroup removed and created again at the same path, while the
//! daemon keeps descriptors of its files open, is never read through them.
//!
//! Run as root: `cargo test --test fresh`.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

const ROUNDS: usize = 30;

/// argv: disk name, scratch file, rounds. Prints one `stale` line.
const SCRIPT: &str = r#"
import mmap, os, subprocess, sys, time
disk, target, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

def diskstats():
    for l in open("/proc/diskstats"):
        f = l.split()
        if f[2] == disk:
            return int(f[9])
    return 0  # a device the container never touched is left out

def block():
    return int(open(f"/sys/block/{disk}/stat").read().split()[6])

def memfree():
    for l in open("/proc/meminfo"):
        if l.startswith("MemFree:"):
            return int(l.split()[1])

def cpu_ticks():
    f = open("/proc/stat").readline().split()
    return int(f[1]) + int(f[3])

def tasks():
    return int(open("/proc/loadavg").read().split()[3].split("/")[1])

stale = {"diskstats": [], "block": [], "meminfo": [], "stat": [], "loadavg": []}

# 4 KiB written with O_DIRECT by this process: 8 sectors, charged to the
# container's cgroup when the write returns.
fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
buf = mmap.mmap(-1, 4096)
buf.write(b"p" * 4096)
for i in range(rounds):
    d0, b0 = diskstats(), block()
    assert os.pwrite(fd, buf, i * 4096) == 4096
    d1, b1 = diskstats(), block()
    if d1 - d0 < 8:
        stale["diskstats"].append(f"{d0}->{d1}")
    if b1 - b0 < 8:
        stale["block"].append(f"{b0}->{b1}")
os.close(fd)

# 64 MiB of touched anonymous memory: MemFree drops by that much.
for i in range(rounds):
    f0 = memfree()
    held = b"\x01" * (64 << 20)
    f1 = memfree()
    del held
    if f0 - f1 < 60 * 1024:
        stale["meminfo"].append(f"{f0}->{f1}")

# 30 ms of CPU (this process's own clock): the cpu line grows. Tick
# rounding of user and system may eat up to 2 of its 3 ticks, never all.
for i in range(rounds):
    t0 = cpu_ticks()
    c0 = time.process_time()
    while time.process_time() - c0 < 0.030:
        pass
    t1 = cpu_ticks()
    if t1 <= t0:
        stale["stat"].append(f"{t0}->{t1}")

# A new task (Popen returns once it has exec'd): the total counts it.
for i in range(rounds):
    n0 = tasks()
    p = subprocess.Popen(["sleep", "60"])
    n1 = tasks()
    p.kill()
    p.wait()
    if n1 != n0 + 1:
        stale["loadavg"].append(f"{n0}->{n1}")

print("stale " + " ".join(f"{k}={len(v)}" for k, v in stale.items()))
for k, v in stale.items():
    if v:
        print(k, " ".join(v[:5]))
"#;

#[test]
fn a_read_after_an_action_shows_it_every_time() {
    let _serial = serial();
    let daemon = Daemon::start();
    let c = Container::new(&daemon, Limits::standard());
    let disk = disk_of(Path::new("/var/tmp"));
    let target = Path::new("/var/tmp").join(format!("{}.fresh", unique_name()));
    let _cleanup = RemoveOnDrop(target.clone());
    // 30 rounds of 64 MiB touched, 30 ms spun and a process started: a few
    // seconds here, more than a minute in the TCG guest. The deadline only
    // catches a hang; it says nothing about freshness.
    let out = c.run_within(
        &[
            "/usr/bin/python3",
            "-c",
            SCRIPT,
            &disk.name,
            &target.to_string_lossy(),
            &ROUNDS.to_string(),
        ],
        Duration::from_secs(900),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the script failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("stale "))
        .unwrap_or_else(|| panic!("no summary in:\n{text}"));
    for kv in line.split_whitespace().skip(1) {
        let (file, n) = kv.split_once('=').expect("file=n");
        assert_eq!(
            n, "0",
            "{n} of {ROUNDS} reads of {file} right after the action did not show it:\n{text}"
        );
    }
    assert_eq!(line.split_whitespace().count(), 6, "{line}");
}

/// The serving worker (the supervisor's child) of `daemon`.
fn worker_of(daemon: &Daemon) -> u32 {
    let sup = daemon.pid().expect("running");
    let children = fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
        .unwrap_or_else(|e| panic!("children of {sup}: {e}"));
    let kids: Vec<u32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(kids.len(), 1, "one worker under supervisor {sup}: {kids:?}");
    kids[0]
}

/// How many of `pid`'s descriptors point at `dir` or into it (also once
/// it is removed: the link then reads "<dir> (deleted)" or "<dir>/<file>").
fn descriptors_into(pid: u32, dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter(|t| {
            let t = t.to_string_lossy();
            t == dir || t.starts_with(&format!("{dir}/")) || t.starts_with(&format!("{dir} "))
        })
        .count()
}

#[test]
fn a_cgroup_removed_and_made_again_is_never_read_through_old_descriptors() {
    let _serial = serial();
    let daemon = Daemon::start();
    let worker = worker_of(&daemon);
    let name = unique_name();
    let limits = |mib: u64| Limits {
        memory_bytes: Some(mib * MIB),
        ..Limits::standard()
    };
    let memory_dir = {
        let c = Container::named(&daemon, &name, limits(256));
        let out = c.sh("head -1 /proc/meminfo; head -1 /proc/stat; cat /proc/loadavg");
        assert!(out.starts_with("MemTotal:         262144 kB"), "{out}");
        let dir = c.cgroup_dir("memory");
        let kept = descriptors_into(worker, &dir);
        assert!(
            kept > 0,
            "the daemon keeps no descriptor in {} after a read: nothing to test",
            dir.display()
        );
        println!("{kept} descriptors kept in {}", dir.display());
        dir
        // Dropping the container removes its cgroups, descriptors or not.
    };
    assert!(
        !memory_dir.exists(),
        "{} was not removed",
        memory_dir.display()
    );

    let c = Container::named(&daemon, &name, limits(128));
    let out = c.sh("head -1 /proc/meminfo; head -1 /proc/stat; cat /proc/loadavg");
    assert!(
        out.starts_with("MemTotal:         131072 kB"),
        "the cgroup made again at {} has 128 MiB:\n{out}",
        memory_dir.display()
    );
    assert!(
        !daemon.log_text().contains("gets the host's"),
        "a read fell back to the host's file:\n{}",
        daemon.log_text()
    );
    drop(c);
    // A container that goes away leaves its descriptors behind only until
    // the daemon notices: reads of it fail (ENODEV), and the sampler's
    // cycle (every 5 s) closes what is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while descriptors_into(worker, &memory_dir) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon still holds {} descriptors in the removed {} after 20 s",
            descriptors_into(worker, &memory_dir),
            memory_dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
