//! Churn: hundreds of short-lived containers are created, read and removed;
//! afterwards the daemon holds no state for them and its memory, open file
//! descriptors and threads are back within a stated bound.
//!
//! Run as root: `cargo test --test churn`.

mod common;

use common::*;
use std::time::Duration;

const CONTAINERS: usize = 300;

/// "(accounts, load averages)" from the daemon's last sampler log line.
fn last_state(log: &str) -> Option<(usize, usize)> {
    let l = log.lines().rev().find(|l| l.contains("sampler cycle"))?;
    let rest = l.split("state for ").nth(1)?;
    let mut f = rest.split_whitespace();
    let accounts = f.next()?.parse().ok()?;
    let loads = f.nth(2)?.parse().ok()?;
    Some((accounts, loads))
}

#[test]
fn state_for_gone_containers_is_freed() {
    let _serial = serial();
    let daemon = Daemon::start();
    let pid = daemon.pid().expect("daemon running");
    let script = "cat /proc/meminfo /proc/stat /proc/loadavg /proc/uptime /proc/cpuinfo \
                  /proc/diskstats /proc/swaps > /dev/null && ls /sys/devices/system/cpu/cpu0 > /dev/null";
    // Warm up with a first wave, so caches are at their working size and the
    // allocator holds its high-water mark before measuring.
    for _ in 0..CONTAINERS / 3 {
        Container::new(&daemon, Limits::standard()).sh(script);
    }
    std::thread::sleep(Duration::from_secs(6));
    let before = footprint(pid);
    for _ in 0..CONTAINERS {
        let c = Container::new(&daemon, Limits::standard());
        c.sh(script);
    }
    // Two sampler cycles (5 s each) notice the cgroups are gone.
    std::thread::sleep(Duration::from_secs(11));
    let after = footprint(pid);
    let log = daemon.log_text();
    let state =
        last_state(&log).unwrap_or_else(|| panic!("no sampler line in the daemon log:\n{log}"));
    println!("{CONTAINERS} containers: before {before:?}, after {after:?}, state {state:?}");
    assert_eq!(state, (0, 0), "per-container state left for gone cgroups");
    // The bound: caches have fixed caps and expire (resolved readers after
    // 1 s, content rendered for a size after 100 ms) and the sampler frees the
    // state of gone cgroups, so a second, bigger wave adds nothing but
    // allocator slack.
    assert!(
        after.rss_kb <= before.rss_kb + 1024,
        "RSS grew by more than 1 MiB over {CONTAINERS} containers: {before:?} -> {after:?}"
    );
    assert!(after.rss_kb < 30 * 1024, "RSS {} kB", after.rss_kb);
    assert!(
        after.fds <= before.fds + 2,
        "fds grew: {before:?} -> {after:?}"
    );
    assert_eq!(after.threads, before.threads, "threads changed");
}
