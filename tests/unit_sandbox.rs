//! The sandboxing of packaging/systemd/proclens.service, checked as far as
//! a machine without systemd as PID 1 allows (the unit cannot be started
//! here; `systemd-run` refuses too; tests/systemd.rs has systemd itself run
//! it, sandbox and all, in the VM). The daemon runs under strace with the
//! unit's capability bounding set and no_new_privs applied by setpriv(1),
//! serves reads, and stops on SIGTERM; then every system call it made must
//! be in the unit's SystemCallFilter (as `systemd-analyze syscall-filter`
//! expands it on this machine), every socket AF_UNIX
//! (RestrictAddressFamilies), no mapping both writable and executable
//! (MemoryDenyWriteExecute), no namespace entered or created but of the
//! kinds RestrictNamespaces lists (a reader in a cgroup namespace of its
//! own makes the daemon enter it), no realtime scheduling
//! (RestrictRealtime), no personality change (LockPersonality).
//!
//! Needs root, strace, setpriv and systemd-analyze; a missing one fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{checked_stdout, host_command, which, RUN_TIMEOUT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const UNIT: &str = include_str!("../packaging/systemd/proclens.service");

fn unit_value(key: &str) -> String {
    UNIT.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= not in the unit"))
        .to_owned()
}

/// `systemd-analyze syscall-filter` groups, each with its members.
fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let text = checked_stdout(
        host_command("systemd-analyze").arg("syscall-filter"),
        RUN_TIMEOUT,
    );
    let mut groups = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('@') {
            cur = Some(line.trim().to_owned());
            groups.insert(line.trim().to_owned(), Vec::new());
        } else if let Some(g) = &cur {
            let w = line.trim();
            if !w.is_empty() && !w.starts_with('#') {
                groups.get_mut(g).expect("group").push(w.to_owned());
            }
        }
    }
    groups
}

fn expand(
    item: &str,
    groups: &BTreeMap<String, Vec<String>>,
    out: &mut BTreeSet<String>,
    seen: &mut BTreeSet<String>,
) {
    if let Some(members) = groups.get(item) {
        if seen.insert(item.to_owned()) {
            for m in members {
                expand(m, groups, out, seen);
            }
        }
    } else {
        out.insert(item.to_owned());
    }
}

#[test]
fn daemon_runs_within_the_units_sandbox() {
    let _serial = common::serial();
    for t in ["strace", "setpriv", "systemd-analyze"] {
        assert!(
            which(t).is_some(),
            "{t} is required (apt-get install strace util-linux systemd)"
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("proclens-e2e-sandbox-")
        .tempdir()
        .expect("tempdir");
    let mp = dir.path().join("mnt");
    let trace = dir.path().join("trace");

    // CapabilityBoundingSet= in setpriv's spelling: -all,+sys_admin,...
    let caps: Vec<String> = unit_value("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    let bounding = format!("-all,{}", caps.join(","));
    assert_eq!(unit_value("NoNewPrivileges"), "yes");

    let mut cmd = host_command(which("strace").expect("strace"));
    cmd.args(["-f", "-qq", "-s", "0", "-e", "signal=none", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(which("setpriv").expect("setpriv"))
        .args([
            "--no-new-privs",
            "--bounding-set",
            &bounding,
            "--inh-caps",
            "-all",
        ])
        .arg("--")
        .arg(common::proclens_bin())
        .arg("mount")
        .arg("--seccomp-socket")
        .arg(common::seccomp_socket_of(Path::new(&mp)))
        .arg(&mp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut strace = cmd.spawn().expect("spawn strace");
    let guard = Cleanup {
        mp: mp.clone(),
        pid: None,
    };
    let mut guard = guard;

    // Serve a few reads.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = common::run_with_timeout(
            host_command("cat").arg(mp.join("proc/meminfo")),
            Duration::from_secs(5),
        );
        if out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("MemTotal:") {
            break;
        }
        assert!(
            strace.try_wait().expect("wait").is_none(),
            "the daemon under the unit's bounding set exited"
        );
        assert!(
            Instant::now() < deadline,
            "not serving within 30 s under strace"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for f in [
        "proc/stat",
        "proc/cpuinfo",
        "proc/uptime",
        "sys/devices/system/cpu/online",
    ] {
        checked_stdout(host_command("cat").arg(mp.join(f)), RUN_TIMEOUT);
    }
    // A reader in a cgroup namespace of its own: the daemon learns its root
    // by entering it.
    let inside = checked_stdout(
        host_command(which("unshare").expect("unshare"))
            .args(["--cgroup", "--", "cat"])
            .arg(mp.join("proc/meminfo")),
        RUN_TIMEOUT,
    );
    assert!(inside.starts_with("MemTotal:"), "{inside}");

    // The daemon is the traced child of setpriv's exec: strace's child.
    let children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        strace.id(),
        strace.id()
    ))
    .expect("strace's children");
    let daemon: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("daemon pid");
    guard.pid = Some(daemon);
    kill(Pid::from_raw(daemon), Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = strace.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "strace/daemon exit: {status}");
    guard.pid = None;

    let text = std::fs::read_to_string(&trace).expect("trace");
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    let restrict_line = unit_value("RestrictNamespaces");
    let restrict: Vec<&str> = restrict_line.split_whitespace().collect();
    let mut entered_cgroupns = false;
    for line in text.lines() {
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if call.starts_with("<...") || call.starts_with("+++") || call.starts_with("---") {
            continue;
        }
        let Some(name) = call.split('(').next() else {
            continue;
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        used.insert(name.to_owned());
        if name == "socket" && !call.starts_with("socket(AF_UNIX") {
            problems.push(format!("RestrictAddressFamilies=AF_UNIX: {call}"));
        }
        if (name == "mmap" || name == "mprotect")
            && call.contains("PROT_WRITE")
            && call.contains("PROT_EXEC")
        {
            problems.push(format!("MemoryDenyWriteExecute: {call}"));
        }
        if name == "setns" && call.contains("CLONE_NEWCGROUP") {
            entered_cgroupns = true;
        }
        if name == "unshare" || name == "setns" || name.starts_with("clone") {
            for (kind, flag) in [
                ("user", "CLONE_NEWUSER"),
                ("pid", "CLONE_NEWPID"),
                ("net", "CLONE_NEWNET"),
                ("ipc", "CLONE_NEWIPC"),
                ("uts", "CLONE_NEWUTS"),
                ("cgroup", "CLONE_NEWCGROUP"),
            ] {
                if call.contains(flag) && !restrict.contains(&kind) {
                    problems.push(format!("RestrictNamespaces={}: {call}", restrict.join(" ")));
                }
            }
        }
        if name.starts_with("sched_setscheduler") || name == "sched_setattr" {
            problems.push(format!("RestrictRealtime: {call}"));
        }
        if name == "personality" {
            problems.push(format!("LockPersonality: {call}"));
        }
    }
    // Calls made by strace's helper and setpriv before the exec are the
    // same kind; the filter is checked over the whole trace.
    let groups = syscall_groups();
    let mut allowed = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for item in unit_value("SystemCallFilter").split_whitespace() {
        expand(item, &groups, &mut allowed, &mut seen);
    }
    let outside: Vec<&String> = used.difference(&allowed).collect();
    eprintln!(
        "{} distinct system calls, all checked against SystemCallFilter",
        used.len()
    );
    assert!(
        outside.is_empty(),
        "system calls outside SystemCallFilter: {outside:?}"
    );
    assert!(
        problems.is_empty(),
        "sandbox violations:\n{}",
        problems.join("\n")
    );
    assert!(
        used.contains("mount") || used.contains("fsmount"),
        "the trace saw the mount: {used:?}"
    );
    assert!(
        entered_cgroupns,
        "the daemon never entered the reader's cgroup namespace (setns CLONE_NEWCGROUP)"
    );
    drop(guard);
    assert_eq!(common::mounts_at(Path::new(&mp)), 0);
}

struct Cleanup {
    mp: std::path::PathBuf,
    pid: Option<i32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        common::unmount_all(&self.mp);
    }
}
