//! sysinfo(2) shows the container (issue 15): runc containers whose seccomp
//! profile makes `sysinfo` notify, their notification descriptors handed to
//! the daemon's socket (`linux.seccomp.listenerPath`), as proclens-runc
//! configures them.
//!
//! - busybox `free` and `uptime`, `getconf _PHYS_PAGES`, Python's
//!   `os.getloadavg()` (glibc >= 2.35 asks sysinfo) against the limits and
//!   the container's own load;
//! - 20 containers calling sysinfo at once each see their own;
//! - a worker crash, a SIGHUP upgrade and a whole-daemon SIGKILL and
//!   restart (the test plays systemd's fd store) while a container calls
//!   sysinfo in a loop: no call fails;
//! - a container that exits leaves no descriptor behind.
//!
//! Needs root, runc (with seccomp), busybox-static and python3; a missing
//! one fails. Run as root: `cargo test --test sysinfo`.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Calls sysinfo until /shared/stop exists; every call must return 0 with
/// totalram = argv[1]. Prints `started` once running, then one summary.
const PY_LOOP: &str = r#"
import os, sys, time
want = int(sys.argv[1])
calls = fails = wrong = 0
longest = 0.0
why = "-"
print("started", flush=True)
while not os.path.exists("/shared/stop"):
    t = time.monotonic()
    try:
        s = sysinfo()
        if s.totalram * s.mem_unit != want:
            wrong += 1
            why = f"totalram={s.totalram}"
    except OSError as e:
        fails += 1
        why = repr(e)
    longest = max(longest, time.monotonic() - t)
    calls += 1
print(f"calls={calls} fails={fails} wrong={wrong} longest_ms={longest*1000:.1f} why={why}", flush=True)
"#;

fn require(tool: &str) -> PathBuf {
    which(tool)
        .unwrap_or_else(|| panic!("{tool} is needed (apt-get install runc busybox-static python3)"))
}

/// A root filesystem of mount points only: the host's /usr and /etc are
/// bound read-only into every container.
fn rootfs(dir: &Path) -> PathBuf {
    let r = dir.join("rootfs");
    for d in ["proc", "sys", "dev", "usr", "etc", "tmp", "shared"] {
        fs::create_dir_all(r.join(d)).expect("rootfs dir");
    }
    for (l, t) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(t, r.join(l)).expect("symlink");
    }
    r
}

/// One runc container of the test; `runc delete -f` and its cgroups
/// removed on drop.
struct Runc {
    id: String,
    bundle: PathBuf,
    state: PathBuf,
}

impl Runc {
    /// A bundle whose container runs `args` with `memory` bytes, half a CPU
    /// on CPU 0, sysinfo notified to `socket`, the daemon's /proc files
    /// bound, and `shared` at /shared.
    fn new(
        base: &Path,
        rootfs: &Path,
        daemon: &Daemon,
        memory: u64,
        shared: &Path,
        args: &[&str],
    ) -> Runc {
        let id = format!(
            "proclens-sysinfo-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let bundle = base.join(&id);
        fs::create_dir(&bundle).expect("bundle");
        let mnt = daemon.mountpoint();
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
            json!({"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}),
            json!({"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]}),
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
            json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind", "rw"]}),
        ];
        for f in ["meminfo", "loadavg", "uptime", "stat"] {
            mounts.push(json!({"destination": format!("/proc/{f}"), "type": "bind", "source": mnt.join("proc").join(f), "options": ["rbind", "ro"]}));
        }
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp"],
                "cwd": "/",
                "noNewPrivileges": true
            },
            "root": {"path": rootfs, "readonly": true},
            "hostname": "sysinfo",
            "mounts": mounts,
            "linux": {
                "cgroupsPath": format!("/{id}"),
                "resources": {
                    "memory": {"limit": memory},
                    "cpu": {"quota": 50000, "period": 100000, "cpus": "0"}
                },
                "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
                "seccomp": {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": seccomp_socket_of(mnt),
                    "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}]
                }
            }
        });
        fs::write(bundle.join("config.json"), config.to_string()).expect("config.json");
        Runc {
            id,
            bundle,
            state: base.join("runc-state"),
        }
    }

    fn command(&self) -> Command {
        let mut c = host_command(require("runc"));
        c.arg("--root")
            .arg(&self.state)
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(&self.id)
            .stdin(Stdio::null());
        c
    }

    /// Runs it to the end; stdout.
    fn run(&self) -> String {
        let out = run_with_timeout(&mut self.command(), RUN_TIMEOUT);
        assert!(
            out.status.success(),
            "runc run {}: {}",
            self.id,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = host_command(require("runc"))
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for root in cgroup_roots() {
            let _ = fs::remove_dir(root.join(&self.id));
        }
    }
}

/// Every cgroup hierarchy's mount point.
fn cgroup_roots() -> Vec<PathBuf> {
    mountinfo()
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .collect()
}

fn value(text: &str, key: &str) -> f64 {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {text:?}"))
}

#[test]
fn busybox_getconf_and_getloadavg_show_the_container() {
    let _serial = serial();
    require("runc");
    require("busybox");
    let daemon = Daemon::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = rootfs(tmp.path());
    let memory = 384 * MIB;
    let script = format!(
        "{PY_SYSINFO}\nimport os\ns = sysinfo()\nprint(f'py_uptime={{s.uptime}} py_procs={{s.procs}} getloadavg={{os.getloadavg()[0]:.2f}}')\n"
    );
    let shell =
        "(while :; do :; done) & (while :; do :; done) & cat /proc/loadavg >/dev/null; sleep 11; \
         echo @@free; busybox free; echo @@uptime; busybox uptime; \
         echo @@getconf; echo pages=$(getconf _PHYS_PAGES) size=$(getconf PAGESIZE); \
         echo @@py; python3 -c \"$PY\"; echo @@loadavg; cat /proc/loadavg; echo @@end";
    let c = Runc::new(
        tmp.path(),
        &root,
        &daemon,
        memory,
        tmp.path(),
        &["sh", "-c", shell],
    );
    // runc gives the process config.json's environment only: the Python
    // script goes there.
    let out = {
        let cfg = c.bundle.join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&cfg).expect("read")).expect("json");
        v["process"]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!(format!("PY={script}")));
        fs::write(&cfg, v.to_string()).expect("write");
        c.run()
    };
    println!("{out}");
    assert!(out.contains("@@end"), "{out}");
    let section = |name: &str| -> String {
        let start = out
            .find(&format!("@@{name}\n"))
            .unwrap_or_else(|| panic!("no @@{name}:\n{out}"))
            + name.len()
            + 3;
        let rest = &out[start..];
        rest[..rest.find("@@").unwrap_or(rest.len())].to_owned()
    };
    // busybox free: KiB from sysinfo's totalram.
    let free = section("free");
    let total: u64 = free
        .lines()
        .find_map(|l| l.trim().strip_prefix("Mem:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Mem: in busybox free:\n{free}"));
    assert_eq!(
        total,
        memory / 1024,
        "busybox free's total is the 384 MiB limit:\n{free}"
    );
    let g = section("getconf");
    assert_eq!(
        (value(&g, "pages") * value(&g, "size")) as u64,
        memory,
        "getconf _PHYS_PAGES x PAGESIZE is the limit: {g}"
    );
    // Load: two busy tasks for 11 s; sysinfo's loads are the ones the
    // container's /proc/loadavg shows (both from the daemon's averages).
    let py = section("py");
    let got = value(&py, "getloadavg");
    let proc_load: f64 = section("loadavg")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("loadavg");
    assert!(
        got > 0.15,
        "os.getloadavg() after 11 s of two busy loops: {got} ({py})"
    );
    assert!(
        (got - proc_load).abs() <= 0.02,
        "os.getloadavg() {got} against the container's /proc/loadavg {proc_load}"
    );
    // busybox truncates where /proc/loadavg rounds: within 0.01.
    let up = section("uptime");
    let bb_load: f64 = up
        .split("load average:")
        .nth(1)
        .and_then(|r| r.split(',').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no load average in busybox uptime:\n{up}"));
    assert!(
        (bb_load - proc_load).abs() <= 0.011,
        "busybox uptime's load {bb_load} against the container's /proc/loadavg {proc_load}:\n{up}"
    );
    // Uptime: the container's (seconds), not the host's.
    let host_up = uptime_secs(&read("/proc/uptime"));
    let py_up = value(&py, "py_uptime");
    assert!(
        (11.0..60.0).contains(&py_up),
        "sysinfo uptime {py_up} s in a container 11 s old (host {host_up})"
    );
    assert!(
        up.contains("up 0 min"),
        "busybox uptime of a container 11 s old:\n{up}"
    );
    // Procs: the container's tasks (sh, two loops, python, ...), a handful.
    let procs = value(&py, "py_procs");
    assert!((3.0..20.0).contains(&procs), "sysinfo procs {procs}");
}

#[test]
fn twenty_containers_at_once_each_see_their_own() {
    let _serial = serial();
    require("runc");
    let daemon = Daemon::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = rootfs(tmp.path());
    let script = format!(
        "{PY_SYSINFO}\nimport sys\nwant = int(sys.argv[1])\nbad = 0\nfor i in range(200):\n    s = sysinfo()\n    bad += s.totalram != want\nprint(f'bad={{bad}}')\n"
    );
    let containers: Vec<(u64, Runc)> = (0..20u64)
        .map(|i| {
            let memory = (100 + 4 * i) * MIB;
            let m = memory.to_string();
            let c = Runc::new(
                tmp.path(),
                &root,
                &daemon,
                memory,
                tmp.path(),
                &["python3", "-c", &script, &m],
            );
            (memory, c)
        })
        .collect();
    let children: Vec<(u64, Child)> = containers
        .iter()
        .map(|(m, c)| {
            let child = c
                .command()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("runc run");
            (*m, child)
        })
        .collect();
    for (memory, child) in children {
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "container of {} MiB: {}",
            memory / MIB,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            text.trim(),
            "bad=0",
            "a container of {} MiB saw another total",
            memory / MIB
        );
    }
    drop(containers);
    // The daemon counted them.
    let metrics = read(daemon.mountpoint().join(".proclens/metrics"));
    let answered: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("proclens_sysinfo_answered_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sysinfo counter in:\n{metrics}"));
    assert!(
        answered >= 20.0 * 200.0,
        "{answered} calls answered:\n{metrics}"
    );
}

/// A container calling sysinfo in a loop, started in the background.
struct Looping {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    stop: PathBuf,
    _runc: Runc,
}

impl Looping {
    fn start(base: &Path, root: &Path, daemon: &Daemon, memory: u64) -> Looping {
        let shared = base.join(format!("shared-{}", SEQ.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir(&shared).expect("shared");
        let script = format!("{PY_SYSINFO}\n{PY_LOOP}");
        let m = memory.to_string();
        let runc = Runc::new(
            base,
            root,
            daemon,
            memory,
            &shared,
            &["python3", "-c", &script, &m],
        );
        let mut child = runc
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("runc run");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the loop started");
        assert_eq!(first, "started");
        Looping {
            child,
            lines,
            stop: shared.join("stop"),
            _runc: runc,
        }
    }

    /// Stops the loop; its summary line.
    fn finish(mut self) -> String {
        fs::write(&self.stop, "").expect("stop file");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the loop's summary: a sysinfo call hung");
        let _ = self.child.wait();
        line
    }
}

/// No call failed, and every one showed the container's total but those a
/// dead worker had taken, which the kernel answered (the daemon logs each
/// one it hands back: the host's numbers for that call, never an error).
fn assert_no_call_failed(summary: &str, what: &str, logs: &[&Daemon]) {
    println!("{what}: {summary}");
    let handed_back: usize = logs
        .iter()
        .map(|d| {
            d.log_text()
                .matches("answered a sysinfo call the dead worker had taken")
                .count()
        })
        .sum();
    assert!(
        value(summary, "calls") > 100.0,
        "{what}: the loop barely ran: {summary}"
    );
    assert_eq!(
        value(summary, "fails"),
        0.0,
        "{what}: sysinfo failed: {summary}"
    );
    assert!(
        value(summary, "wrong") <= handed_back as f64,
        "{what}: {} calls showed another total, {handed_back} were handed back to the kernel: {summary}",
        value(summary, "wrong")
    );
}

/// The supervisor's one serving worker.
fn worker_of(daemon: &Daemon) -> u32 {
    let sup = daemon.pid().expect("running");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kids =
            fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).unwrap_or_default();
        let kids: Vec<u32> = kids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if kids.len() == 1 {
            return kids[0];
        }
        assert!(
            Instant::now() < deadline,
            "supervisor {sup} has workers {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `daemon`'s log has `what` `n` times.
fn wait_log(daemon: &Daemon, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.log_text().matches(what).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {n}x {what:?} in:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn worker_crashes_and_an_upgrade_fail_no_call() {
    let _serial = serial();
    require("runc");
    let daemon = Daemon::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = rootfs(tmp.path());
    let l = Looping::start(tmp.path(), &root, &daemon, 200 * MIB);
    for round in 1..=3 {
        std::thread::sleep(Duration::from_millis(700));
        let w = worker_of(&daemon);
        // Our daemon's worker: a child of the supervisor we started.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("SIGKILL");
        wait_log(&daemon, "serves again", round);
    }
    std::thread::sleep(Duration::from_millis(700));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.pid().expect("running") as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_log(&daemon, "reload complete", 1);
    std::thread::sleep(Duration::from_millis(700));
    assert_no_call_failed(&l.finish(), "three worker crashes and a reload", &[&daemon]);
    // The container is gone: its descriptor goes too.
    wait_log(&daemon, "the container is gone", 1);
}

/// Plays systemd's side of the fd store: a datagram socket taking
/// `FDSTORE=1` / `FDSTOREREMOVE=1` messages with their descriptors.
struct FdStore {
    sock: OwnedFd,
    path: PathBuf,
    fds: Vec<(String, OwnedFd)>,
}

impl FdStore {
    fn new(dir: &Path) -> FdStore {
        let path = dir.join("notify.sock");
        let sock: OwnedFd = std::os::unix::net::UnixDatagram::bind(&path)
            .expect("bind notify socket")
            .into();
        FdStore {
            sock,
            path,
            fds: Vec::new(),
        }
    }

    /// Takes every message waiting.
    fn drain(&mut self) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        loop {
            let mut buf = [0u8; 4096];
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) else {
                return;
            };
            let mut fds = Vec::new();
            for c in msg.cmsgs().expect("cmsgs") {
                if let ControlMessageOwned::ScmRights(rs) = c {
                    // SAFETY: descriptors just received for us.
                    fds.extend(rs.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                }
            }
            let n = msg.bytes;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("FDNAME="))
                .unwrap_or("stored")
                .to_owned();
            if text.lines().any(|l| l == "FDSTORE=1") {
                for fd in fds {
                    self.fds.push((name.clone(), fd));
                }
            } else if text.lines().any(|l| l == "FDSTOREREMOVE=1") {
                self.fds.retain(|(n, _)| *n != name);
            }
        }
    }
}

#[test]
fn a_whole_daemon_killed_and_restarted_with_the_fd_store_fails_no_call() {
    let _serial = serial();
    require("runc");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = FdStore::new(dir.path());
    let notify = store.path.to_string_lossy().into_owned();
    let mut first = Daemon::start_program(
        dir.path(),
        Path::new(proclens_bin()),
        &[("NOTIFY_SOCKET", &notify)],
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = rootfs(tmp.path());
    let l = Looping::start(tmp.path(), &root, &first, 200 * MIB);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        store.drain();
        let names: Vec<&str> = store.fds.iter().map(|(n, _)| n.as_str()).collect();
        if names
            .iter()
            .any(|n| n.starts_with("sysinfo-proclens-sysinfo-"))
            && names.contains(&"inflight")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon put the container's descriptor and its in-flight table in the store: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    first.kill_hard();
    std::thread::sleep(Duration::from_millis(500));
    // The restart systemd does: the stored descriptors from fd 3 on.
    store.drain();
    let n = store.fds.len();
    let names: Vec<String> = store.fds.iter().map(|(n, _)| n.clone()).collect();
    let raw: Vec<RawFd> = store.fds.iter().map(|(_, f)| f.as_raw_fd()).collect();
    let mut cmd = host_command(which("sh").expect("sh"));
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(proclens_bin())
        .args(["mount", "-v", "--seccomp-socket"])
        .arg(seccomp_socket_of(&dir.path().join("mnt")))
        .arg(dir.path().join("mnt"))
        .env("NOTIFY_SOCKET", &notify)
        .env("LISTEN_FDS", n.to_string())
        .env("LISTEN_FDNAMES", names.join(":"));
    // SAFETY: between fork and exec only fcntl/dup2 on descriptors we own,
    // from a vector made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let mut moved = Vec::with_capacity(raw.len());
            for f in &raw {
                let m = libc::fcntl(*f, libc::F_DUPFD_CLOEXEC, 100);
                if m < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved.push(m);
            }
            for (i, m) in moved.iter().enumerate() {
                if libc::dup2(*m, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let second = Daemon::launch(dir.path(), cmd);
    wait_log(&second, "took back 1 containers' seccomp descriptors", 1);
    std::thread::sleep(Duration::from_millis(700));
    assert_no_call_failed(
        &l.finish(),
        "a whole-daemon SIGKILL and a restart from the fd store",
        &[&first, &second],
    );
    // The container is gone: its descriptor leaves the store.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        store.drain();
        if !store
            .fds
            .iter()
            .any(|(n, _)| n.starts_with("sysinfo-proclens-sysinfo-"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exited container's descriptor is still in the store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(second);
    drop(first);
}

#[test]
fn a_process_that_execs_is_answered_in_its_new_image() {
    let _serial = serial();
    require("runc");
    let daemon = Daemon::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = rootfs(tmp.path());
    let memory = 272 * MIB;
    // The same pid calls sysinfo, execs a new image, and calls it again:
    // the answer must land in the new image's memory.
    let second = format!("{PY_SYSINFO}\nprint('after', sysinfo().totalram)\n");
    let first = format!(
        "{PY_SYSINFO}\nimport os, sys\nprint('before', sysinfo().totalram, flush=True)\nos.execv('/usr/bin/python3', ['python3', '-c', sys.argv[1]])\n"
    );
    let c = Runc::new(
        tmp.path(),
        &root,
        &daemon,
        memory,
        tmp.path(),
        &["python3", "-c", &first, &second],
    );
    let out = c.run();
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["before", &memory.to_string(), "after", &memory.to_string()],
        "{out}"
    );
}
