//! End-to-end test with a real OCI runtime, wired the way `docker run -v` does
//! it: the daemon's files are bind-mounted read-only over the container's
//! `/proc/{meminfo,cpuinfo,stat,loadavg,uptime,diskstats,swaps}` and
//! `/sys/devices/system/cpu`, and runc puts the container in a cgroup with a
//! 256 MiB memory limit, a 0.5 CPU quota and cpuset `0`.
//!
//! The same script also runs in a twin container WITHOUT the bind mounts, and
//! must show the host's values there: that proves the difference comes from
//! the mounts, not from runc or the kernel.
//!
//! Needs root, `runc` and a static busybox (Debian: `apt-get install runc
//! busybox-static`). A missing requirement FAILS the test; it never skips.
//!
//! `PROCLENS_RUNC_DAEMON=lxcfs` serves the mount with `lxcfs -f` instead of
//! proclens (same `proc/` and `sys/devices/system/cpu` layout), to check the
//! plumbing of this test independently of proclens (lxcfs passes the cpuN
//! directories through, so that one check is skipped for it).
//!
//! Cleanup is by Drop guards, so a failed assertion still leaves the host
//! clean: `runc delete -f` for each container, SIGTERM (then SIGKILL) to the
//! daemon we spawned plus a lazy unmount if it left its mount behind, and the
//! temp dir. Only pids we spawned are signalled; only cgroups named after
//! this test process (`/proclens-runc-<pid>-*`) are ever touched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};

/// The limits runc is asked to apply (config.json `linux.resources`).
const MEMORY_LIMIT: u64 = 268_435_456;
const MEMORY_LIMIT_KB: u64 = MEMORY_LIMIT / 1024;
const CPU_QUOTA: i64 = 50_000;
const CPU_PERIOD: u64 = 100_000;
const CPUSET: &str = "0";

/// The files the daemon serves, bind-mounted over the container's `/proc`.
/// runc only allows bind mounts onto these (and a few other) paths under
/// /proc: its `checkProcMount` whitelist, which was written for lxcfs.
const PROC_FILES: &[&str] = &[
    "meminfo",
    "cpuinfo",
    "stat",
    "loadavg",
    "uptime",
    "diskstats",
    "swaps",
];

/// busybox applets linked into the rootfs.
const APPLETS: &[&str] = &[
    "sh", "cat", "top", "free", "nproc", "grep", "ls", "echo", "head", "sleep", "uptime", "ps",
    "wc", "true",
];

const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// A hung FUSE read must fail the test, not hang the suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `=== name` separates the sections of the container script's output.
const MARK: &str = "=== ";

/// What the container runs, as (section name, shell command). Everything
/// reads through the same tools a user would: busybox `cat` (which uses
/// sendfile(2), i.e. the kernel's splice path, not read(2)), and `grep ''`
/// (read(2)) for the diagnosis when `cat` comes back empty.
const SCRIPT: &[(&str, &str)] = &[
    ("meminfo", "cat /proc/meminfo"),
    ("meminfo-read", "grep '' /proc/meminfo"),
    ("cpuinfo", "cat /proc/cpuinfo"),
    ("stat", "cat /proc/stat"),
    ("loadavg", "cat /proc/loadavg"),
    ("uptime", "cat /proc/uptime"),
    ("diskstats", "cat /proc/diskstats"),
    ("swaps", "cat /proc/swaps"),
    ("online", "cat /sys/devices/system/cpu/online"),
    ("online-read", "grep '' /sys/devices/system/cpu/online"),
    ("cpudir", "ls /sys/devices/system/cpu"),
    ("blockdir", "ls /sys/block"),
    ("top", "top -bn1"),
    // sysinfo(2) and sched_getaffinity(2): syscalls, not files, so they are
    // the kernel's view in both containers (documented limits). nproc also
    // shows that runc applied the cpuset.
    ("free", "free"),
    ("nproc", "nproc"),
    ("cgroup", "cat /proc/self/cgroup"),
    // What runc wrote, seen through the container's own /sys/fs/cgroup
    // (v1 layout first, v2 second; only one exists).
    (
        "memory-limit",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null",
    ),
];

#[test]
fn runc_container_sees_its_limits_only_through_the_mounts() {
    let env = Preflight::check();
    let tmp = tempfile::Builder::new()
        .prefix("proclens-runc-")
        .tempdir()
        .expect("create temp dir");
    let base = tmp.path().canonicalize().expect("canonicalize temp dir");

    let rootfs = base.join("rootfs");
    build_rootfs(&rootfs, &env.busybox);
    let state = base.join("state");
    fs::create_dir(&state).expect("create runc state dir");
    let mnt = base.join("mnt");
    fs::create_dir(&mnt).expect("create mountpoint");

    let host = HostView::read();
    let tag = format!("proclens-runc-{}", std::process::id());

    // Twin without the bind mounts first: it needs no daemon.
    let plain = run_container(&env, &base, &rootfs, &state, &format!("{tag}-plain"), None);

    let mut daemon = Daemon::start(&env, &base, &mnt);
    let bound = run_container(
        &env,
        &base,
        &rootfs,
        &state,
        &format!("{tag}-bound"),
        Some(&mnt),
    );

    // --- both: runc really applied the limits --------------------------------
    for (which, s, id) in [("plain", &plain, "plain"), ("bound", &bound, "bound")] {
        let cg = section(s, "cgroup");
        assert!(
            cg.contains(&format!("/{tag}-{id}")),
            "{which}: container not in the cgroup runc was asked for:\n{cg}"
        );
        assert_eq!(
            section(s, "memory-limit").trim(),
            MEMORY_LIMIT.to_string(),
            "{which}: runc did not apply the memory limit"
        );
        assert_eq!(
            section(s, "nproc").trim(),
            "1",
            "{which}: runc did not apply cpuset {CPUSET} (nproc uses sched_getaffinity)"
        );
    }

    // --- plain: the host's values ---------------------------------------------
    assert_eq!(
        mem_total_kb(section(&plain, "meminfo")),
        host.mem_total_kb,
        "plain: MemTotal must be the host's"
    );
    assert_eq!(
        processors(section(&plain, "cpuinfo")),
        host.processors,
        "plain: processor count must be the host's"
    );
    assert_eq!(
        section(&plain, "online").trim(),
        host.online,
        "plain: cpu/online must be the host's"
    );
    let (used, free) = top_mem(section(&plain, "top"));
    assert_eq!(
        used + free,
        host.mem_total_kb,
        "plain: busybox top used+free must be the host's MemTotal"
    );
    let plain_up = uptime_secs(section(&plain, "uptime"));
    let host_up_after = HostView::uptime();
    assert!(
        plain_up >= host.uptime - 1.0 && plain_up <= host_up_after + 1.0,
        "plain: uptime {plain_up} is not the host's ({} .. {host_up_after})",
        host.uptime
    );

    // --- bound: every file came through, whatever the reader's syscall -------
    // diskstats may rightly be empty: a container that touched no device.
    let nonempty = PROC_FILES.iter().copied().filter(|f| *f != "diskstats");
    for name in nonempty.chain(["online"]) {
        let via_cat = section(&bound, name);
        if via_cat.trim().is_empty() {
            let via_read = match bound.get(&format!("{name}-read")) {
                Some(r) => format!("; read(2) via grep got {} bytes", r.len()),
                None => String::new(),
            };
            panic!(
                "bound: busybox `cat` printed nothing for {name}{via_read}.\n\
                 busybox cat copies with sendfile(2), which for a FUSE file stops at the \
                 inode's st_size even with FOPEN_DIRECT_IO (kernel 6.18: OPEN and RELEASE \
                 reach the daemon, no READ), so a file whose getattr says size 0 reads as \
                 empty. lxcfs reports a nonzero st_size. Daemon log:\n{}",
                daemon.log()
            );
        }
    }

    // --- bound: the container's values ----------------------------------------
    assert_eq!(
        mem_total_kb(section(&bound, "meminfo")),
        MEMORY_LIMIT_KB,
        "bound: MemTotal must be the 256 MiB limit"
    );
    assert_eq!(
        processors(section(&bound, "cpuinfo")),
        1,
        "bound: exactly one processor block (cpuset {CPUSET}, quota 0.5 CPU)"
    );
    assert_eq!(
        section(&bound, "online").trim(),
        "0",
        "bound: cpu/online must be 0"
    );
    // lxcfs virtualizes `online` but passes the cpuN directories through.
    let cpu_dirs = cpu_dirs(section(&bound, "cpudir"));
    if env.daemon == DaemonKind::Proclens {
        assert_eq!(
            cpu_dirs,
            ["cpu0"],
            "bound: the cpu directory must hold cpu0 only"
        );
        // Every host disk shows, as a directory whose stat is the container's.
        let mut host_disks: Vec<String> = std::fs::read_dir("/sys/block")
            .expect("/sys/block")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        host_disks.sort();
        let disks: Vec<&str> = section(&bound, "blockdir").split_whitespace().collect();
        assert_eq!(
            disks, host_disks,
            "bound: /sys/block lists the host's disks"
        );
    } else {
        eprintln!("note: lxcfs shows cpu directories {cpu_dirs:?}; not asserted");
    }
    let stat_cpus: Vec<&str> = section(&bound, "stat")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|k| k.starts_with("cpu"))
        .collect();
    assert_eq!(stat_cpus, ["cpu", "cpu0"], "bound: /proc/stat cpu lines");
    let up = uptime_secs(section(&bound, "uptime"));
    assert!(
        (0.0..60.0).contains(&up),
        "bound: uptime {up} s must be the container's (under 60 s)"
    );
    let (used, free) = top_mem(section(&bound, "top"));
    assert_eq!(
        used + free,
        MEMORY_LIMIT_KB,
        "bound: busybox top `Mem:` used+free must equal the limit in KiB"
    );
    let loadavg_fields = section(&bound, "loadavg").split_whitespace().count();
    assert_eq!(loadavg_fields, 5, "bound: /proc/loadavg has 5 fields");
    assert!(
        section(&bound, "swaps").starts_with("Filename"),
        "bound: /proc/swaps starts with its header"
    );

    // --- the difference is real on this host ----------------------------------
    assert_ne!(
        host.mem_total_kb, MEMORY_LIMIT_KB,
        "host MemTotal equals the limit: the test cannot tell the two apart"
    );
    if host.processors > 1 {
        assert_ne!(
            processors(section(&plain, "cpuinfo")),
            processors(section(&bound, "cpuinfo"))
        );
    } else {
        eprintln!("note: host has 1 CPU; the CPU-count difference is not observable here");
    }
    eprintln!(
        "bound container, busybox top:\n{}\nbusybox free (sysinfo(2), host view):\n{}",
        section(&bound, "top")
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n"),
        section(&bound, "free")
    );

    // --- teardown, checked -----------------------------------------------------
    let (status, left_mounted) = daemon.stop();
    if env.daemon == DaemonKind::Proclens {
        assert!(
            status.is_some_and(|s| s.success()),
            "proclens must exit 0 on SIGTERM, got {status:?}; log:\n{}",
            daemon.log()
        );
    }
    assert!(
        !left_mounted,
        "the daemon exited but left {} mounted",
        mnt.display()
    );
    let leftovers = cgroups_where(|name| name.starts_with(&format!("{tag}-")));
    assert!(
        leftovers.is_empty(),
        "runc left cgroups behind: {leftovers:?}"
    );
    drop(daemon);
    drop(tmp);
}

// ---------------------------------------------------------------------------
// Preconditions
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DaemonKind {
    Proclens,
    Lxcfs,
}

#[derive(Debug)]
struct Preflight {
    runc: PathBuf,
    busybox: PathBuf,
    daemon: DaemonKind,
    daemon_bin: PathBuf,
}

impl Preflight {
    fn check() -> Self {
        assert!(
            geteuid().is_root(),
            "this test needs root (runc, cgroups, FUSE mounts)"
        );
        let runc = which("runc").expect("runc not found in PATH (Debian: apt-get install runc)");
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("busybox not found (Debian: apt-get install busybox-static)");
        // The rootfs holds nothing but busybox, so it must not need ld.so.
        assert!(
            !elf_has_interp(&busybox),
            "{} is dynamically linked; the rootfs needs a static one \
             (Debian: apt-get install busybox-static)",
            busybox.display()
        );
        let (daemon, daemon_bin) = match std::env::var("PROCLENS_RUNC_DAEMON").as_deref() {
            Err(_) | Ok("") | Ok("proclens") => (
                DaemonKind::Proclens,
                PathBuf::from(env!("CARGO_BIN_EXE_proclens")),
            ),
            Ok("lxcfs") => (
                DaemonKind::Lxcfs,
                which("lxcfs").expect("PROCLENS_RUNC_DAEMON=lxcfs but lxcfs is not in PATH"),
            ),
            Ok(other) => panic!("PROCLENS_RUNC_DAEMON={other:?}: expected proclens or lxcfs"),
        };
        Preflight {
            runc,
            busybox,
            daemon,
            daemon_bin,
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether an ELF64 little-endian file has a PT_INTERP program header, i.e.
/// is dynamically linked.
fn elf_has_interp(path: &Path) -> bool {
    let data = fs::read(path).expect("read busybox");
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
    assert!(
        data.len() > 64 && &data[..4] == b"\x7fELF" && data[4] == 2 && data[5] == 1,
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3 /* PT_INTERP */)
}

// ---------------------------------------------------------------------------
// Host view
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct HostView {
    mem_total_kb: u64,
    processors: usize,
    online: String,
    uptime: f64,
}

impl HostView {
    fn read() -> Self {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_else(|e| panic!("read {p}: {e}"));
        HostView {
            mem_total_kb: mem_total_kb(&read("/proc/meminfo")),
            processors: processors(&read("/proc/cpuinfo")),
            online: read("/sys/devices/system/cpu/online").trim().to_owned(),
            uptime: Self::uptime(),
        }
    }

    fn uptime() -> f64 {
        uptime_secs(&fs::read_to_string("/proc/uptime").expect("read /proc/uptime"))
    }
}

// ---------------------------------------------------------------------------
// Parsers of what the container printed
// ---------------------------------------------------------------------------

fn section<'a>(s: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    s.get(name)
        .unwrap_or_else(|| panic!("container printed no `{name}` section: {s:#?}"))
}

fn mem_total_kb(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in:\n{meminfo}"))
}

fn processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count()
}

fn uptime_secs(uptime: &str) -> f64 {
    uptime
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad /proc/uptime: {uptime:?}"))
}

/// busybox top's first line: `Mem: 780K used, 261364K free, 0K shrd, ...`.
/// busybox computes used as MemTotal - MemFree from /proc/meminfo, so
/// used + free is MemTotal.
fn top_mem(top: &str) -> (u64, u64) {
    let line = top
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .unwrap_or_else(|| panic!("no `Mem:` line in top output:\n{top}"));
    let field = |suffix: &str| -> u64 {
        line.trim_start_matches("Mem:")
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_suffix(suffix))
            .and_then(|v| v.trim().strip_suffix('K'))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{suffix}` in {line:?}"))
    };
    (field(" used"), field(" free"))
}

fn cpu_dirs(listing: &str) -> Vec<String> {
    let mut v: Vec<String> = listing
        .split_whitespace()
        .filter(|n| {
            n.strip_prefix("cpu")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn parse_sections(out: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut cur: Option<(String, String)> = None;
    for line in out.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix(MARK) {
            if let Some((n, body)) = cur.take() {
                map.insert(n, body);
            }
            cur = Some((name.trim_end().to_owned(), String::new()));
        } else if let Some((_, body)) = cur.as_mut() {
            body.push_str(line);
        }
    }
    if let Some((n, body)) = cur {
        map.insert(n, body);
    }
    map
}

// ---------------------------------------------------------------------------
// Rootfs and OCI config
// ---------------------------------------------------------------------------

fn build_rootfs(rootfs: &Path, busybox: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
    }
    fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).expect("link applet");
    }
    // top maps uids to names; without these it prints numbers, which is fine,
    // but a passwd file keeps its output the usual shape.
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("write passwd");
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("write group");
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_path(p: &Path) -> String {
    json_str(p.to_str().expect("UTF-8 path"))
}

fn container_script() -> String {
    let mut s = String::new();
    for (name, cmd) in SCRIPT {
        let _ = write!(s, "echo '{MARK}{name}'; {cmd}; ");
    }
    s.push_str("true");
    s
}

/// `config.json` as `runc spec` (runc 1.1, OCI 1.0.2) writes it, with no
/// terminal, an absolute read-only rootfs, the limits, a cgroupfs path of our
/// own, and, when `mnt` is given, the daemon's files bind-mounted like
/// `docker run -v SRC:DST:ro` does (`rbind`,`ro`).
fn oci_config(rootfs: &Path, cgroups_path: &str, mnt: Option<&Path>) -> String {
    let mut binds = String::new();
    if let Some(mnt) = mnt {
        let mut one = |src: PathBuf, dst: &str| {
            let _ = write!(
                binds,
                r#",
    {{ "destination": {}, "type": "bind", "source": {}, "options": ["rbind", "ro"] }}"#,
                json_str(dst),
                json_path(&src)
            );
        };
        for f in PROC_FILES {
            one(mnt.join("proc").join(f), &format!("/proc/{f}"));
        }
        one(
            mnt.join("sys/devices/system/cpu"),
            "/sys/devices/system/cpu",
        );
        // lxcfs (the stand-in daemon) has no sys/block.
        if mnt.join("sys/block").is_dir() {
            one(mnt.join("sys/block"), "/sys/block");
        }
    }
    let caps = r#"["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]"#;
    format!(
        r#"{{
  "ociVersion": "1.0.2-dev",
  "process": {{
    "terminal": false,
    "user": {{ "uid": 0, "gid": 0 }},
    "args": ["/bin/sh", "-c", {script}],
    "env": ["PATH=/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {{
      "bounding": {caps}, "effective": {caps}, "permitted": {caps}, "ambient": {caps}
    }},
    "rlimits": [{{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }}],
    "noNewPrivileges": true
  }},
  "root": {{ "path": {root}, "readonly": true }},
  "hostname": "runc",
  "mounts": [
    {{ "destination": "/proc", "type": "proc", "source": "proc" }},
    {{ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }},
    {{ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }},
    {{ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
      "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }},
    {{ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
      "options": ["nosuid", "noexec", "nodev"] }},
    {{ "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] }},
    {{ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }}{binds}
  ],
  "linux": {{
    "cgroupsPath": {cgroups_path},
    "resources": {{
      "devices": [{{ "allow": false, "access": "rwm" }}],
      "memory": {{ "limit": {MEMORY_LIMIT} }},
      "cpu": {{ "quota": {CPU_QUOTA}, "period": {CPU_PERIOD}, "cpus": {cpus} }}
    }},
    "namespaces": [
      {{ "type": "pid" }}, {{ "type": "network" }}, {{ "type": "ipc" }},
      {{ "type": "uts" }}, {{ "type": "mount" }}
    ],
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
      "/proc/scsi"
    ],
    "readonlyPaths": [
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]
  }}
}}
"#,
        script = json_str(&container_script()),
        root = json_path(rootfs),
        cgroups_path = json_str(cgroups_path),
        cpus = json_str(CPUSET),
    )
}

// ---------------------------------------------------------------------------
// Running a container
// ---------------------------------------------------------------------------

/// `runc delete -f` on drop; removes leftover cgroups of this id (runc's
/// own cleanup should have done it; rmdir only succeeds on empty cgroups).
#[derive(Debug)]
struct ContainerGuard<'a> {
    runc: &'a Path,
    state: &'a Path,
    id: String,
}

impl ContainerGuard<'_> {
    fn runc(&self) -> Command {
        let mut c = Command::new(self.runc);
        c.arg("--root").arg(self.state);
        c
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .runc()
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for dir in cgroups_where(|name| name == self.id) {
            let _ = fs::remove_dir(&dir);
        }
    }
}

fn run_container(
    env: &Preflight,
    base: &Path,
    rootfs: &Path,
    state: &Path,
    id: &str,
    mnt: Option<&Path>,
) -> BTreeMap<String, String> {
    let bundle = base.join(format!("bundle-{id}"));
    fs::create_dir(&bundle).expect("create bundle");
    let cgroups_path = format!("/{id}");
    fs::write(
        bundle.join("config.json"),
        oci_config(rootfs, &cgroups_path, mnt),
    )
    .expect("write config.json");
    let out_path = bundle.join("stdout");
    let err_path = bundle.join("stderr");

    let guard = ContainerGuard {
        runc: &env.runc,
        state,
        id: id.to_owned(),
    };
    let mut child = guard
        .runc()
        .arg("run")
        .arg("-b")
        .arg(&bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("create stdout file"))
        .stderr(fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .expect("spawn runc run");
    let status = wait_timeout(&mut child, RUN_TIMEOUT);
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = guard
            .runc()
            .args(["kill", id, "KILL"])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "runc run {id} did not finish in {RUN_TIMEOUT:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    };
    assert!(
        status.success(),
        "runc run {id}: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    eprintln!("--- runc run {id} ---\n{stdout}");
    drop(guard);
    fs::remove_dir_all(&bundle).expect("remove bundle");
    parse_sections(&stdout)
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => return None,
            Err(e) => panic!("wait for child {}: {e}", child.id()),
        }
    }
}

// ---------------------------------------------------------------------------
// Cgroups and mounts
// ---------------------------------------------------------------------------

/// (mount point, fstype) of every mount, from /proc/self/mountinfo.
fn mounts() -> Vec<(PathBuf, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let mp = unescape_mountinfo(fields.get(4)?);
            Some((PathBuf::from(mp), (*fields.get(sep + 1)?).to_owned()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_mounted(path: &Path) -> bool {
    mounts().iter().any(|(mp, _)| mp == path)
}

/// Cgroup directories directly under each cgroup v1/v2 mount whose name
/// passes `pick`: runc (cgroupfs driver) creates `/<id>` in every hierarchy,
/// including the v2 one of a hybrid host.
fn cgroups_where(pick: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for (mp, fstype) in mounts() {
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let Ok(entries) = fs::read_dir(&mp) else {
            continue;
        };
        for e in entries.flatten() {
            if pick(&e.file_name().to_string_lossy()) && e.path().is_dir() {
                found.push(e.path());
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/// The FUSE daemon under test, spawned by us. Drop: SIGTERM, wait (SIGKILL
/// after a timeout), then a lazy unmount if the mount outlived it.
#[derive(Debug)]
struct Daemon {
    child: Option<Child>,
    mnt: PathBuf,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    fn start(env: &Preflight, base: &Path, mnt: &Path) -> Self {
        let log = base.join("daemon.log");
        let logf = fs::File::create(&log).expect("create daemon log");
        let mut cmd = Command::new(&env.daemon_bin);
        match env.daemon {
            DaemonKind::Proclens => {
                cmd.arg("mount")
                    .arg("--seccomp-socket")
                    .arg(base.join("seccomp.sock"))
                    .arg(mnt);
            }
            DaemonKind::Lxcfs => {
                // Own pidfile: the default one is locked by any system lxcfs.
                cmd.arg("-f").arg("-p").arg(base.join("lxcfs.pid")).arg(mnt);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log fd"))
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", env.daemon_bin.display()));
        let mut d = Daemon {
            child: Some(child),
            mnt: mnt.to_owned(),
            log,
            status: None,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let meminfo = self.mnt.join("proc/meminfo");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut buf = String::new();
            if fs::File::open(&meminfo)
                .and_then(|mut f| f.read_to_string(&mut buf))
                .is_ok()
                && buf.starts_with("MemTotal:")
            {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(s)) = child.try_wait() {
                    self.status = Some(s);
                    self.child = None;
                    panic!("daemon exited before serving ({s}); log:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not readable after {READY_TIMEOUT:?}; log:\n{}",
                meminfo.display(),
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; SIGKILL if it does not exit in time; then a lazy
    /// unmount if the mount outlived the daemon. Returns the exit status
    /// (None if it had to be killed) and whether that unmount was needed.
    fn stop(&mut self) -> (Option<ExitStatus>, bool) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
            let _ = kill(pid, Signal::SIGTERM);
            self.status = wait_timeout(&mut child, STOP_TIMEOUT);
            if self.status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let left_mounted = is_mounted(&self.mnt);
        if left_mounted {
            let _ = umount2(&self.mnt, MntFlags::MNT_DETACH);
        }
        (self.status, left_mounted)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
    }
}
