//! The daemon speaks systemd's notification protocol as `Type=notify`
//! expects, with this test standing in for systemd (which is not PID 1 on
//! the development VM; tests/systemd.rs has systemd itself run the unit,
//! in the VM of tests/vm/run.sh --systemd): it binds the datagram socket,
//! starts `proclens mount` with `NOTIFY_SOCKET` (a path, then an abstract
//! `@name`) and `WATCHDOG_USEC`, and checks READY=1 arrives once the mount
//! serves, with a first WATCHDOG=1, then WATCHDOG=1 at about half the
//! interval, nothing for a `WATCHDOG_PID` that is not the daemon's, and
//! STOPPING=1 on SIGTERM.
//!
//! Cleanup by guard: the daemon we spawned is killed and its mount detached
//! even when an assertion fails.

mod common;

use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Spawned {
    child: Child,
    mp: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        common::unmount_all(&self.mp);
        if std::thread::panicking() {
            let mut log = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut log);
            }
            eprintln!("--- daemon stderr ---\n{log}");
        }
    }
}

fn start(mp: &Path, notify_socket: &str, watchdog: &[(&str, String)]) -> Spawned {
    let mut cmd = common::mount_command(mp, false);
    cmd.env("NOTIFY_SOCKET", notify_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in watchdog {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn proclens mount");
    Spawned {
        child,
        mp: mp.to_owned(),
    }
}

/// Datagrams received until `until` returns true for one, or `limit`.
fn collect(sock: &UnixDatagram, limit: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = until(&msg);
                got.push(msg);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    got
}

fn check_lifecycle(sock: &UnixDatagram, addr: &str, dir: &Path) {
    let mp = dir.join("mnt");
    // 400 ms watchdog: a ping every 200 ms.
    let mut d = start(&mp, addr, &[("WATCHDOG_USEC", "400000".to_owned())]);
    let t0 = Instant::now();
    let first = collect(sock, Duration::from_secs(15), |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert!(
        first.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "no READY=1 from the daemon in 15 s: {first:?}"
    );
    eprintln!("READY=1 after {:?}: {first:?}", t0.elapsed());
    // The first ping comes with READY=1, not an interval later: after a
    // reload re-executed the daemon, systemd's timer is still running.
    let ready = first.last().expect("the READY=1 datagram");
    assert!(
        ready.lines().any(|l| l == "WATCHDOG=1"),
        "no WATCHDOG=1 with READY=1: {ready:?}"
    );
    // READY means the mount serves.
    let meminfo = std::fs::read_to_string(mp.join("proc/meminfo")).expect("read meminfo");
    assert!(meminfo.starts_with("MemTotal:"));

    let t1 = Instant::now();
    let pings = collect(sock, Duration::from_secs(2), |_| false);
    let n = pings.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    eprintln!("{n} WATCHDOG=1 in {:?}", t1.elapsed());
    assert!(
        (5..=14).contains(&n),
        "expected about 10 WATCHDOG=1 in 2 s at a 200 ms period, got {n}: {pings:?}"
    );

    kill(Pid::from_raw(d.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let last = collect(sock, Duration::from_secs(10), |m| {
        m.lines().any(|l| l == "STOPPING=1")
    });
    assert!(
        last.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {last:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "daemon still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(common::mounts_at(&mp), 0, "mount left after SIGTERM");
}

#[test]
fn ready_watchdog_and_stopping_on_a_path_socket() {
    let _serial = common::serial();
    let dir = tempfile::Builder::new()
        .prefix("proclens-e2e-notify-")
        .tempdir()
        .expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    check_lifecycle(&sock, path.to_str().expect("utf-8"), dir.path());
}

#[test]
fn ready_watchdog_and_stopping_on_an_abstract_socket() {
    let _serial = common::serial();
    let dir = tempfile::Builder::new()
        .prefix("proclens-e2e-notify-")
        .tempdir()
        .expect("tempdir");
    let name = common::unique_name();
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract addr");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
    check_lifecycle(&sock, &format!("@{name}"), dir.path());
}

#[test]
fn no_watchdog_for_another_pid() {
    let _serial = common::serial();
    let dir = tempfile::Builder::new()
        .prefix("proclens-e2e-notify-")
        .tempdir()
        .expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    // pid 1 is never the daemon.
    let _d = start(
        &dir.path().join("mnt"),
        path.to_str().expect("utf-8"),
        &[
            ("WATCHDOG_USEC", "200000".to_owned()),
            ("WATCHDOG_PID", "1".to_owned()),
        ],
    );
    let first = collect(&sock, Duration::from_secs(15), |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert!(
        first.iter().any(|m| m.contains("READY=1")),
        "no READY=1: {first:?}"
    );
    let more = collect(&sock, Duration::from_secs(1), |_| false);
    assert!(
        !first.iter().chain(&more).any(|m| m.contains("WATCHDOG=1")),
        "WATCHDOG=1 although WATCHDOG_PID is another process: {more:?}"
    );
}
