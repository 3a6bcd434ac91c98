//! Soak: a million reads from 100 containers (SOAK_READS to change it); the
//! daemon's memory, file descriptors and threads do not grow with them.
//!
//! Run as root: `cargo test --release --test soak -- --nocapture`.

mod common;

use common::*;
use std::time::{Duration, Instant};

const CONTAINERS: usize = 100;

/// Reads /proc/meminfo, /proc/stat and /proc/loadavg in turn, `n` times in
/// all, checking each is whole; prints "done <n> bad <k>".
const READER: &str = r#"
import sys
n, want = int(sys.argv[1]), sys.argv[2]
files = ["/proc/meminfo", "/proc/stat", "/proc/loadavg"]
bad = 0
for i in range(n):
    with open(files[i % 3]) as f:
        t = f.read()
    if not t.endswith("\n") or (i % 3 == 0 and not t.startswith(want)):
        bad += 1
print("done", n, "bad", bad, flush=True)
"#;

#[test]
fn a_million_reads_from_a_hundred_containers_grow_nothing() {
    let _serial = serial();
    let total: usize = std::env::var("SOAK_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per = total / CONTAINERS;
    let daemon = Daemon::start();
    let pid = daemon.pid().expect("daemon");
    let containers: Vec<Container<'_>> = (0..CONTAINERS)
        .map(|_| Container::new(&daemon, Limits::standard()))
        .collect();
    let want = "MemTotal:         262144 kB";
    // Two equal rounds of 100 concurrent readers: the first brings the daemon
    // to its steady state under this concurrency (allocator arenas, caches at
    // their caps), the second must add nothing to it.
    let round = |label: &str| {
        let start = Instant::now();
        let n = (per / 2).to_string();
        let readers: Vec<_> = containers
            .iter()
            .map(|c| c.spawn(&["/usr/bin/python3", "-c", READER, &n, want]))
            .collect();
        for (i, r) in readers.iter().enumerate() {
            let l = r
                .next_line(Duration::from_secs(1800))
                .unwrap_or_else(|| panic!("{label} reader {i}: {}", r.stderr_text()));
            assert_eq!(l, format!("done {n} bad 0"), "{label} reader {i}");
        }
        start.elapsed().as_secs_f64()
    };
    let t1 = round("first");
    let before = footprint(pid);
    let t2 = round("second");
    let after = footprint(pid);
    let reads = per / 2 * CONTAINERS * 2;
    println!(
        "{reads} reads in {:.0} s ({:.0}/s): daemon after the first half {before:?}, after the second {after:?}",
        t1 + t2,
        reads as f64 / (t1 + t2)
    );
    assert!(
        after.rss_kb <= before.rss_kb + 1024,
        "RSS grew by more than 1 MiB: {before:?} -> {after:?}"
    );
    assert!(
        after.fds <= before.fds + 2,
        "fds grew: {before:?} -> {after:?}"
    );
    assert_eq!(after.threads, before.threads, "threads changed");
}
