//! The daemon's own counters: `.proclens/metrics` in Prometheus text format
//! (root only) and `proclens status`.
//!
//! Run as root: `cargo test --test metrics`.

mod common;

use common::*;
use std::os::unix::process::CommandExt;

/// The value of one sample line `name{labels} value`.
fn sample(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_a_containers_reads_and_only_root_may_read_them() {
    let _serial = serial();
    let daemon = Daemon::start();
    let path = daemon.mountpoint().join(".proclens/metrics");
    let before = read(&path);
    let opens = |t: &str| sample(t, r#"proclens_opens_total{file="meminfo"}"#);
    let opens_before = opens(&before).unwrap_or_else(|| panic!("no meminfo opens in:\n{before}"));

    let c = Container::new(&daemon, Limits::standard());
    c.sh("for i in 1 2 3 4 5; do head -c 10 /proc/meminfo >/dev/null; done");
    let after = read(&path);
    let opened = opens(&after).expect("meminfo opens") - opens_before;
    assert!(
        opened >= 5.0,
        "the container opened meminfo 5 times; the counter grew by {opened}:\n{after}"
    );
    // Every open renders: meminfo's histogram counts each of them, and
    // its +Inf bucket holds every observation.
    let count = sample(&after, r#"proclens_render_seconds_count{file="meminfo"}"#)
        .expect("histogram count");
    let inf = sample(
        &after,
        r#"proclens_render_seconds_bucket{file="meminfo",le="+Inf"}"#,
    )
    .expect("+Inf");
    assert_eq!(
        count, inf,
        "the +Inf bucket holds every observation:\n{after}"
    );
    assert!(count >= opens_before + 5.0, "{after}");
    assert!(
        sample(&after, "proclens_kept_descriptors").is_some_and(|n| n > 0.0),
        "descriptors are kept for the container's reads:\n{after}"
    );
    assert!(
        sample(&after, "proclens_tracked_cpu_accounts").is_some()
            && sample(&after, "proclens_fallbacks_total") == Some(0.0),
        "{after}"
    );

    // Not for other users: the kernel leaves permission checks to FUSE
    // filesystems without default_permissions, so the daemon refuses.
    let out = host_command("cat")
        .arg(&path)
        .uid(1000)
        .gid(1000)
        .output()
        .expect("cat as uid 1000");
    assert!(!out.status.success(), "uid 1000 read the metrics");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");

    // The same numbers for a person.
    let status = checked_stdout(
        host_command(proclens_bin())
            .arg("status")
            .arg("--mountpoint")
            .arg(daemon.mountpoint()),
        RUN_TIMEOUT,
    );
    let line = status
        .lines()
        .find(|l| l.starts_with("meminfo "))
        .unwrap_or_else(|| panic!("no meminfo row in:\n{status}"));
    let shown: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("opens column");
    assert!(shown >= opens_before + 5.0, "{status}");
    assert!(
        status.contains("fallbacks to the host's file: 0"),
        "{status}"
    );
}

#[test]
fn status_without_a_daemon_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = host_command(proclens_bin())
        .arg("status")
        .arg("--mountpoint")
        .arg(dir.path())
        .output()
        .expect("proclens status");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".proclens/metrics") && err.contains("is proclens mount serving there"),
        "{err}"
    );
}
