//! The round trip of a container's `sysinfo(2)` answered by proclens over
//! seccomp user notification, beside the kernel's own call: the median and
//! 99th percentile of N calls, each timed alone, from inside a runc
//! container whose seccomp profile notifies `sysinfo` to the daemon (as
//! proclens-runc configures it) and, in the same run, from the host.
//!
//! Run as root: `cargo bench --bench sysinfo` (20000 calls). Under
//! `cargo test --all-targets` a short mode (500 calls) checks that the
//! bench works and that the container's answer is the container's.

mod common;

use common::{quantile, us, Daemon};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const LIMIT: u64 = 300 << 20;

/// `calls` timed sysinfo calls; prints `p50 p99 totalram` (µs, µs, bytes).
fn inner(calls: usize) {
    // SAFETY: sysinfo writes into a struct we own.
    let mut s: libc::sysinfo = unsafe { std::mem::zeroed() };
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + 100 {
        let t = Instant::now();
        // SAFETY: as above.
        let r = unsafe { libc::sysinfo(&mut s) };
        let d = t.elapsed();
        assert_eq!(r, 0, "sysinfo failed: {}", std::io::Error::last_os_error());
        if i >= 100 {
            samples.push(d);
        }
    }
    samples.sort();
    println!(
        "{:.2} {:.2} {}",
        us(quantile(&samples, 0.5)),
        us(quantile(&samples, 0.99)),
        s.totalram * u64::from(s.mem_unit)
    );
}

fn json_path(p: &Path) -> serde_json::Value {
    serde_json::Value::String(p.to_string_lossy().into_owned())
}

fn main() {
    if let Ok(n) = std::env::var("PROCLENS_BENCH_SYSINFO_INNER") {
        return inner(n.parse().expect("calls"));
    }
    let full = std::env::args().any(|a| a == "--bench");
    let calls = if full { 20_000 } else { 500 };
    common::require_root("the sysinfo bench");
    let _lock = common::host_lock();
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("runc is not installed (apt-get install runc)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::proclens(&tmp.path().join("mnt"));
    let exe = std::env::current_exe().expect("current_exe");

    let root = tmp.path().join("rootfs");
    for d in ["proc", "sys", "dev", "usr", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs");
    }
    for (l, t) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(t, root.join(l)).expect("symlink");
    }
    std::fs::write(root.join("bench"), "").expect("bench mount point");
    let id = format!("proclens-bench-sysinfo-{}", std::process::id());
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir(&bundle).expect("bundle");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
            "args": ["/bench"],
            "env": ["PATH=/usr/bin:/bin", format!("PROCLENS_BENCH_SYSINFO_INNER={calls}")],
            "noNewPrivileges": true
        },
        "root": {"path": json_path(&root), "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
            {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]},
            {"destination": "/bench", "type": "bind", "source": json_path(&exe), "options": ["bind", "ro"]}
        ],
        "linux": {
            "cgroupsPath": format!("/{id}"),
            "resources": {"memory": {"limit": LIMIT}},
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": json_path(&daemon.mp.with_extension("seccomp.sock")),
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}]
            }
        }
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
    let state = tmp.path().join("runc-state");

    let parse = |out: &[u8]| -> (f64, f64, u64) {
        let text = String::from_utf8_lossy(out);
        let f: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(f.len(), 3, "the bench's inner run printed {text:?}");
        (
            f[0].parse().expect("p50"),
            f[1].parse().expect("p99"),
            f[2].parse().expect("totalram"),
        )
    };
    // The host's own call first, then the container's, then the host's
    // again: both host runs are reported, to show the machine held still.
    let host = || {
        let out = Command::new(&exe)
            .env("PROCLENS_BENCH_SYSINFO_INNER", calls.to_string())
            .output()
            .expect("inner run");
        assert!(out.status.success());
        parse(&out.stdout)
    };
    let before = host();
    let out = Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .expect("runc run");
    let _ = Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["delete", "-f", &id])
        .output();
    for m in [
        "memory", "cpu", "cpuacct", "cpuset", "blkio", "pids", "unified", "",
    ] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(m).join(&id));
    }
    assert!(
        out.status.success(),
        "runc run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (p50, p99, total) = parse(&out.stdout);
    let after = host();
    assert_eq!(
        total, LIMIT,
        "the container's sysinfo must say its own {LIMIT} bytes"
    );
    println!("sysinfo(2) round trip, {calls} calls each, median / 99th percentile µs");
    println!(
        "  kernel (host, before)        {:>8.2} / {:>8.2}",
        before.0, before.1
    );
    println!("  proclens (runc container)    {p50:>8.2} / {p99:>8.2}   totalram {total} bytes");
    println!(
        "  kernel (host, after)         {:>8.2} / {:>8.2}",
        after.0, after.1
    );
    drop(daemon);
}
