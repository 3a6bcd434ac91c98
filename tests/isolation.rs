//! Isolation under concurrency: 20 containers with different limits, each
//! with 10 threads reading at the same time; every read must carry its own
//! container's numbers (DESIGN 2.4: a cached answer never crosses containers).
//!
//! Run as root: `cargo test --test isolation`.

mod common;

use common::*;
use std::time::Duration;

const CONTAINERS: u64 = 20;
const THREADS: usize = 10;
const READS: usize = 100;

/// Each thread reads meminfo and cpuinfo READS times and prints one line per
/// wrong answer, then "done <reads>".
const READER: &str = r#"
import sys, threading
want_kb, want_cpus, reads, threads = (int(a) for a in sys.argv[1:5])
bad, lock, total = [], threading.Lock(), [0]
def work():
    for _ in range(reads):
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        with open("/proc/cpuinfo") as f:
            cpus = sum(1 for l in f if l.startswith("processor"))
        with lock:
            total[0] += 1
            if kb != want_kb or cpus != want_cpus:
                bad.append(f"MemTotal {kb} kB, {cpus} CPUs")
ts = [threading.Thread(target=work) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
for b in bad[:5]: print("BAD", b)
print("done", total[0], "bad", len(bad))
"#;

#[test]
fn twenty_containers_with_ten_readers_each_see_only_their_own_limits() {
    let _serial = serial();
    let cpus: Vec<u32> = host_online_cpus().into_iter().collect();
    assert!(cpus.len() >= 2, "this test needs 2 or more CPUs");
    let all = cpus
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let daemon = Daemon::start();
    let mut containers = Vec::new();
    for i in 0..CONTAINERS {
        // Memory differs for every container; every other one sees one CPU.
        let mem = (128 + 4 * i) * MIB;
        let (cpuset, n) = if i % 2 == 0 {
            (cpus[0].to_string(), 1)
        } else {
            (all.clone(), cpus.len())
        };
        let c = Container::new(
            &daemon,
            Limits {
                memory_bytes: Some(mem),
                cpus: Some(cpuset),
                cfs: None,
                ..Limits::standard()
            },
        );
        containers.push((c, mem / 1024, n));
    }
    let readers: Vec<_> = containers
        .iter()
        .map(|(c, kb, n)| {
            let args = [
                kb.to_string(),
                n.to_string(),
                READS.to_string(),
                THREADS.to_string(),
            ];
            let argv = [
                "/usr/bin/python3",
                "-c",
                READER,
                &args[0],
                &args[1],
                &args[2],
                &args[3],
            ];
            (c.spawn(&argv), *kb, *n)
        })
        .collect();
    let mut reads = 0;
    for (r, kb, n) in &readers {
        let mut lines = Vec::new();
        while let Some(l) = r.next_line(Duration::from_secs(120)) {
            let done = l.starts_with("done");
            lines.push(l);
            if done {
                break;
            }
        }
        let last = lines.last().cloned().unwrap_or_default();
        let f: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(
            f.first(),
            Some(&"done"),
            "reader for {kb} kB/{n} CPUs died: {lines:?} {}",
            r.stderr_text()
        );
        assert_eq!(
            f[3], "0",
            "container with {kb} kB and {n} CPUs read another's numbers: {lines:?}"
        );
        reads += f[1].parse::<usize>().expect("count");
    }
    assert_eq!(reads, CONTAINERS as usize * THREADS * READS);
}
