//! `proclens oci-hook` with a real runtime: runc runs a busybox container
//! whose `config.json` has the limits (256 MiB, half a CPU of quota) and
//! the hook, and no proclens mounts of its own. Through the hook alone,
//! procps `free -m` (copied into the rootfs with its libraries), busybox
//! `cat /proc/meminfo`, `cpu/online` and the cpuN directories show the
//! limits. The skip paths run too: a container that opts out with the
//! `io.proclens.disable` annotation, and one whose hook finds no daemon,
//! both start (the hook exits 0) and see the kernel's files.
//!
//! Needs root, runc, a static busybox and procps `free`; a missing one
//! fails the test. Cleanup is by guards, also on failure: `runc delete -f`
//! and removal of the cgroups runc made (named `proclens-e2e-<pid>-<n>`,
//! ours only), the daemon (common::Daemon) and the temp dir.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{checked_stdout, host_command, run_with_timeout, unique_name, which, RUN_TIMEOUT};

const MIB: u64 = 1024 * 1024;
const MEMORY_LIMIT: u64 = 256 * MIB;
const CPU_QUOTA: u64 = 50_000;
const CPU_PERIOD: u64 = 100_000;

const APPLETS: &[&str] = &["sh", "cat", "grep", "ls", "echo", "nproc", "wc", "head"];

/// `=== name` starts each section of the container's output. `free` by its
/// path: Debian's static busybox sh runs its own applets before PATH, and
/// busybox `free` takes the total from sysinfo(2).
const MARK: &str = "=== ";
const SCRIPT: &str = "echo '=== meminfo'; cat /proc/meminfo; \
    echo '=== free'; /usr/bin/free -m; \
    echo '=== online'; cat /sys/devices/system/cpu/online; \
    echo '=== cpudirs'; ls /sys/devices/system/cpu | grep -c '^cpu[0-9]'; \
    echo '=== processors'; grep -c ^processor /proc/cpuinfo; \
    echo '=== mounts'; grep -c ' - fuse' /proc/self/mountinfo; \
    echo '=== rwtargets'; grep ' - fuse' /proc/self/mountinfo | grep '^[0-9]* [0-9]* [0-9:]* [^ ]* [^ ]* rw,' | cut -d' ' -f5; \
    echo '=== memlimit'; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null; \
    true";

struct Env {
    runc: PathBuf,
    busybox: PathBuf,
    free: PathBuf,
}

fn preflight() -> Env {
    let runc = which("runc").expect("runc not found (Debian: apt-get install runc)");
    let busybox = which("busybox").expect("busybox not found (apt-get install busybox-static)");
    let free = which("free").expect("procps free not found (apt-get install procps)");
    let out = run_with_timeout(host_command("ldd").arg(&busybox), RUN_TIMEOUT);
    assert!(
        !out.status.success(),
        "{} is dynamically linked; the rootfs needs busybox-static",
        busybox.display()
    );
    Env {
        runc,
        busybox,
        free,
    }
}

/// busybox, and procps `free` with every library `ldd` names, at the same
/// paths as on the host.
fn build_rootfs(env: &Env, rootfs: &Path) {
    for d in ["bin", "usr/bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
    }
    fs::copy(&env.busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).expect("applet link");
    }
    fs::copy(&env.free, rootfs.join("usr/bin/free")).expect("copy free");
    let ldd = checked_stdout(host_command("ldd").arg(&env.free), RUN_TIMEOUT);
    for line in ldd.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let dst = rootfs.join(path.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().expect("lib dir")).expect("mkdir lib dir");
        fs::copy(path, &dst).unwrap_or_else(|e| panic!("copy {path}: {e}"));
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
}

fn json(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

/// runc's spec with no proclens mounts: the limits, the hook, annotations.
fn config(rootfs: &Path, id: &str, hook_mp: &Path, annotations: &str) -> String {
    let hook_bin = common::proclens_bin();
    let caps = r#"["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]"#;
    format!(
        r#"{{
  "ociVersion": "1.0.2-dev",
  "annotations": {annotations},
  "process": {{
    "terminal": false,
    "user": {{ "uid": 0, "gid": 0 }},
    "args": ["/bin/sh", "-c", {script}],
    "env": ["PATH=/bin:/usr/bin", "LC_ALL=C"],
    "cwd": "/",
    "capabilities": {{ "bounding": {caps}, "effective": {caps}, "permitted": {caps}, "ambient": {caps} }},
    "noNewPrivileges": true
  }},
  "root": {{ "path": {root}, "readonly": true }},
  "hostname": "hooked",
  "mounts": [
    {{ "destination": "/proc", "type": "proc", "source": "proc" }},
    {{ "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }},
    {{ "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] }},
    {{ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }}
  ],
  "hooks": {{
    "createContainer": [
      {{ "path": {hook}, "args": ["proclens", "oci-hook", "--mountpoint", {mp}], "timeout": 10 }}
    ]
  }},
  "linux": {{
    "cgroupsPath": {cg},
    "resources": {{
      "devices": [{{ "allow": false, "access": "rwm" }}],
      "memory": {{ "limit": {MEMORY_LIMIT} }},
      "cpu": {{ "quota": {CPU_QUOTA}, "period": {CPU_PERIOD} }}
    }},
    "namespaces": [ {{ "type": "pid" }}, {{ "type": "network" }}, {{ "type": "ipc" }}, {{ "type": "uts" }}, {{ "type": "mount" }} ]
  }}
}}
"#,
        script = json(SCRIPT),
        root = json(rootfs.to_str().expect("utf-8")),
        hook = json(hook_bin),
        mp = json(hook_mp.to_str().expect("utf-8")),
        cg = json(&format!("/{id}")),
    )
}

/// `runc delete -f` and removal of the cgroups runc made for `id`.
struct ContainerGuard {
    runc: PathBuf,
    state: PathBuf,
    id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for m in common::mountinfo() {
            if m.fs_type != "cgroup" && m.fs_type != "cgroup2" {
                continue;
            }
            let dir = m.mount_point.join(&self.id);
            if dir.is_dir() {
                let _ = fs::remove_dir(&dir);
            }
        }
    }
}

/// Runs one container to completion; returns its sections by name.
fn run(
    env: &Env,
    base: &Path,
    rootfs: &Path,
    hook_mp: &Path,
    annotations: &str,
) -> std::collections::BTreeMap<String, String> {
    let id = unique_name();
    let bundle = base.join(&id);
    fs::create_dir(&bundle).expect("bundle");
    fs::write(
        bundle.join("config.json"),
        config(rootfs, &id, hook_mp, annotations),
    )
    .expect("config.json");
    let state = base.join("runc-state");
    let _guard = ContainerGuard {
        runc: env.runc.clone(),
        state: state.clone(),
        id: id.clone(),
    };
    let out = run_with_timeout(
        Command::new(&env.runc)
            .arg("--root")
            .arg(&state)
            .args(["run", "-b"])
            .arg(&bundle)
            .arg(&id),
        RUN_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "runc run {id}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- container {id} (annotations {annotations}) ---\n{stdout}");
    let mut map = std::collections::BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            cur = Some(name.to_owned());
            map.insert(name.to_owned(), String::new());
        } else if let Some(c) = &cur {
            let body = map.get_mut(c).expect("section");
            body.push_str(line);
            body.push('\n');
        }
    }
    map
}

fn section<'a>(s: &'a std::collections::BTreeMap<String, String>, name: &str) -> &'a str {
    s.get(name)
        .unwrap_or_else(|| panic!("no section {name} in {s:?}"))
}

fn mem_total_kb(meminfo: &str) -> u64 {
    common::meminfo_kb(meminfo, "MemTotal").expect("MemTotal line")
}

/// procps `free -m`: the `Mem:` line's total column.
fn free_total_mib(free: &str) -> u64 {
    free.lines()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no Mem: total in free -m output:\n{free}"))
}

#[test]
fn hook_alone_gives_a_runc_container_its_limits_and_skips_cleanly() {
    let _serial = common::serial();
    let env = preflight();
    let tmp = tempfile::Builder::new()
        .prefix("proclens-e2e-hook-")
        .tempdir()
        .expect("tempdir");
    let base = tmp.path().canonicalize().expect("canonical tmp");
    let rootfs = base.join("rootfs");
    build_rootfs(&env, &rootfs);
    let host_meminfo = fs::read_to_string("/proc/meminfo").expect("host meminfo");
    let host_total = mem_total_kb(&host_meminfo);
    let host_online = fs::read_to_string("/sys/devices/system/cpu/online").expect("online");
    let host_cpus = common::host_online_cpus().len();
    assert!(
        host_cpus >= 2,
        "the quota (half a CPU) must hide a CPU: this host has {host_cpus}"
    );

    let mut daemon = common::Daemon::start();
    let mp = daemon.mountpoint().to_owned();

    // --- through the hook alone --------------------------------------------
    let hooked = run(&env, &base, &rootfs, &mp, "{}");
    assert_eq!(
        section(&hooked, "memlimit").trim(),
        MEMORY_LIMIT.to_string(),
        "runc applied the memory limit"
    );
    assert_eq!(
        mem_total_kb(section(&hooked, "meminfo")),
        MEMORY_LIMIT / 1024,
        "MemTotal through the hook"
    );
    assert_eq!(
        free_total_mib(section(&hooked, "free")),
        256,
        "procps free -m total"
    );
    assert_eq!(
        section(&hooked, "online").trim(),
        "0",
        "cpu/online: ceil(quota/period) = 1 CPU"
    );
    assert_eq!(section(&hooked, "cpudirs").trim(), "1", "cpuN directories");
    assert_eq!(section(&hooked, "processors").trim(), "1", "cpuinfo");
    assert_eq!(
        section(&hooked, "mounts").trim(),
        "13",
        "one FUSE bind per proclens file (vmstat and pressure/* too: the hook makes them, runc would refuse them)"
    );
    // Read-only but for the pressure files, which take PSI triggers.
    assert_eq!(
        section(&hooked, "rwtargets")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "/proc/pressure/cpu",
            "/proc/pressure/memory",
            "/proc/pressure/io"
        ],
        "read-write binds"
    );

    // --- opted out: the kernel's files, container still starts --------------
    let opted = run(
        &env,
        &base,
        &rootfs,
        &mp,
        r#"{ "io.proclens.disable": "true" }"#,
    );
    assert_eq!(mem_total_kb(section(&opted, "meminfo")), host_total);
    assert_eq!(section(&opted, "online").trim(), host_online.trim());
    assert_eq!(section(&opted, "mounts").trim(), "0");

    // --- no daemon: the hook skips, the container starts ----------------------
    let empty = base.join("not-served");
    fs::create_dir(&empty).expect("mkdir");
    let down = run(&env, &base, &rootfs, &empty, "{}");
    assert_eq!(mem_total_kb(section(&down, "meminfo")), host_total);
    assert_eq!(section(&down, "mounts").trim(), "0");
    assert!(free_total_mib(section(&down, "free")) > 256);

    // The hook's one log line for each skip, invoked as a runtime would.
    let bundle = base.join("direct");
    fs::create_dir(&bundle).expect("bundle");
    fs::write(
        bundle.join("config.json"),
        config(&rootfs, "direct", &empty, "{}"),
    )
    .expect("config");
    let state = |ann: &str| {
        format!(
            r#"{{"ociVersion":"1.0.2","id":"direct","status":"creating","pid":1,"bundle":{},"annotations":{ann}}}"#,
            json(bundle.to_str().expect("utf-8"))
        )
    };
    for (ann, mountpoint, want) in [
        ("{}", &empty, "is not served"),
        (
            r#"{"io.proclens.disable":"true"}"#,
            &mp,
            "io.proclens.disable",
        ),
    ] {
        let mut child = host_command(common::proclens_bin())
            .args(["oci-hook", "--mountpoint"])
            .arg(mountpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hook");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(state(ann).as_bytes())
            .expect("write state");
        let out = child.wait_with_output().expect("hook output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "hook exit: {} {err}", out.status);
        assert_eq!(err.lines().count(), 1, "one log line: {err}");
        assert!(err.contains(want), "{want:?} in {err}");
    }

    // --- a dead mount (the daemon was killed): skipped too ----------------------
    daemon.kill_hard();
    let dead = run(&env, &base, &rootfs, &mp, "{}");
    assert_eq!(mem_total_kb(section(&dead, "meminfo")), host_total);
    assert_eq!(section(&dead, "mounts").trim(), "0");
    // Drop unmounts the dead mount.
    drop(daemon);
}
