//! `proclens-runc` as an engine calls it, with a stand-in for runc that
//! records what it was given: the real config.json docker 20.10 wrote on
//! the development VM (tests/fixtures/oci/), a real daemon. Checks that
//! the real runtime gets exactly the engine's command line and, for
//! `create`, a config.json with the binds; that every other command, and
//! every way of staying out (not served, opted out, an edit that cannot be
//! made), leaves config.json byte for byte as it was; where the line goes;
//! inherited descriptors (`--preserve-fds`); and what the wrapper adds to a
//! container start, measured.
//!
//! The engines themselves are in tests/engines/.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{
    host_command, proclens_bin, run_with_timeout, seccomp_socket_of, serial, Daemon, RUN_TIMEOUT,
};

/// Records its argv (one per line), a copy of the bundle's config.json as
/// it found it, whether fd 3 was open, then exits 0.
const FAKE_RUNC: &str = r#"#!/bin/sh
out=$FAKE_RUNC_OUT
: > "$out/argv"
for a in "$@"; do printf '%s\n' "$a" >> "$out/argv"; done
bundle=.
prev=
for a in "$@"; do
    case $prev in --bundle|-b) bundle=$a ;; esac
    prev=$a
done
[ -f "$bundle/config.json" ] && cp "$bundle/config.json" "$out/config.json"
if [ -e /proc/self/fd/3 ]; then echo open > "$out/fd3"; else echo closed > "$out/fd3"; fi
exit 0
"#;

struct Setup {
    dir: tempfile::TempDir,
    wrapper: PathBuf,
    fake: PathBuf,
    bundle: PathBuf,
    out: PathBuf,
    /// The fixture with root.path pointing at the bundle's rootfs.
    config: Vec<u8>,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("proclens-e2e-wrapper-")
            .tempdir()
            .expect("tempdir");
        let base = dir.path().to_owned();
        let wrapper = base.join("proclens-runc");
        symlink(proclens_bin(), &wrapper).expect("link proclens-runc");
        let fake = base.join("runc");
        fs::write(&fake, FAKE_RUNC).expect("fake runc");
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
        let bundle = base.join("bundle");
        for d in ["rootfs/proc", "rootfs/sys"] {
            fs::create_dir_all(bundle.join(d)).expect("rootfs");
        }
        let out = base.join("out");
        fs::create_dir(&out).expect("out");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/oci/docker-20.10.24-config.json");
        let mut spec: Value =
            serde_json::from_slice(&fs::read(&fixture).expect("fixture")).expect("fixture json");
        spec["root"]["path"] = json!("rootfs");
        let config = serde_json::to_vec(&spec).expect("json");
        let s = Setup {
            dir,
            wrapper,
            fake,
            bundle,
            out,
            config,
        };
        s.reset(&s.config.clone());
        s
    }

    fn reset(&self, config: &[u8]) {
        let path = self.bundle.join("config.json");
        fs::write(&path, config).expect("config.json");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let _ = fs::remove_file(self.out.join("argv"));
        let _ = fs::remove_file(self.out.join("config.json"));
    }

    fn config_now(&self) -> Vec<u8> {
        fs::read(self.bundle.join("config.json")).expect("read config.json")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log.json")
    }

    /// The wrapper with `args`, the stand-in as the real runtime (through
    /// the variable), serving from `mp`.
    fn command(&self, mp: &Path, args: &[&str]) -> Command {
        let mut c = host_command(&self.wrapper);
        c.env("PROCLENS_RUNC_RUNTIME", &self.fake)
            .env("PROCLENS_RUNC_MOUNTPOINT", mp)
            .env("PROCLENS_RUNC_SECCOMP_SOCKET", seccomp_socket_of(mp))
            .env("FAKE_RUNC_OUT", &self.out)
            .args(args);
        c
    }

    fn run(&self, mp: &Path, args: &[&str]) -> Output {
        let out = run_with_timeout(&mut self.command(mp, args), RUN_TIMEOUT);
        assert!(
            out.status.success(),
            "proclens-runc {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The argv the stand-in got.
    fn argv(&self) -> Vec<String> {
        fs::read_to_string(self.out.join("argv"))
            .expect("the real runtime ran")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What docker passes for a create of this bundle.
    fn docker_create(&self) -> Vec<String> {
        let b = self.bundle.to_str().expect("utf-8");
        let log = self.log();
        [
            "--root",
            "/run/docker/runtime-runc/moby",
            "--log",
            log.to_str().expect("utf-8"),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b,
            "--pid-file",
            &format!("{b}/init.pid"),
            "abc",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Destinations of the mounts a config.json ends with that come from `mp`.
fn bound(config: &[u8], mp: &Path) -> Vec<String> {
    let spec: Value = serde_json::from_slice(config).expect("config.json parses");
    spec["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| {
            m["source"]
                .as_str()
                .is_some_and(|s| Path::new(s).starts_with(mp))
        })
        .map(|m| m["destination"].as_str().expect("destination").to_owned())
        .collect()
}

#[test]
fn create_gets_the_binds_and_the_real_runtime_the_same_command_line() {
    let _serial = serial();
    let daemon = Daemon::start();
    let mp = daemon.mountpoint().to_owned();
    let s = Setup::new();
    let line = s.docker_create();
    let out = s.run(&mp, &strs(&line));
    assert_eq!(s.argv(), line, "the real runtime's argv is the engine's");
    let seen = fs::read(s.out.join("config.json")).expect("the runtime saw a config.json");
    assert_eq!(
        bound(&seen, &mp),
        [
            "/proc/meminfo",
            "/proc/cpuinfo",
            "/proc/stat",
            "/proc/loadavg",
            "/proc/uptime",
            "/proc/diskstats",
            "/proc/swaps",
            "/sys/devices/system/cpu",
            "/sys/block"
        ],
        "the runtime found the binds in config.json"
    );
    // The daemon listens: sysinfo notifies it, out of docker's allow list.
    let socket = seccomp_socket_of(&mp);
    let before: Value = serde_json::from_slice(&s.config).expect("json");
    let mut after: Value = serde_json::from_slice(&seen).expect("json");
    let profile = &after["linux"]["seccomp"];
    assert_eq!(profile["listenerPath"], json!(socket));
    let naming: Vec<&Value> = profile["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .filter(|r| {
            r["names"]
                .as_array()
                .is_some_and(|n| n.contains(&json!("sysinfo")))
        })
        .collect();
    assert_eq!(
        naming,
        [&json!({"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"})],
        "one rule names sysinfo, and notifies"
    );
    // Everything else is the engine's document.
    let n = before["mounts"].as_array().expect("mounts").len();
    after["mounts"].as_array_mut().expect("mounts").truncate(n);
    after["linux"]["seccomp"] = Value::Null;
    let mut engines = before.clone();
    engines["linux"]["seccomp"] = Value::Null;
    assert_eq!(
        after, engines,
        "only the binds and the seccomp rule were added"
    );
    let meta = fs::metadata(s.bundle.join("config.json")).expect("stat");
    assert_eq!(meta.mode() & 0o777, 0o644, "config.json keeps its mode");
    // The line goes to runc's log in its format, not to the container's
    // stdio (stderr).
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fs::read_to_string(s.log()).expect("runc's log");
    let entry: Value = serde_json::from_str(log.trim()).expect("one JSON line");
    assert_eq!(entry["level"], "info");
    assert_eq!(
        entry["msg"],
        format!(
            "proclens-runc: bound 9 files from {}; sysinfo(2) notified to {}",
            mp.display(),
            socket.display()
        )
    );
    // A second create of the same bundle adds nothing.
    s.run(&mp, &strs(&line));
    assert_eq!(bound(&s.config_now(), &mp).len(), 9);
    assert!(
        !daemon.log_text().contains("WARN"),
        "the daemon warned:\n{}",
        daemon.log_text()
    );
}

#[test]
fn everything_else_leaves_config_json_as_it_was() {
    let _serial = serial();
    let daemon = Daemon::start();
    let mp = daemon.mountpoint().to_owned();
    let s = Setup::new();
    let b = s.bundle.to_str().expect("utf-8").to_owned();

    // Other commands: straight through, file untouched.
    for line in [
        vec!["--root", "/r", "start", "abc"],
        vec!["--root", "/r", "delete", "--force", "abc"],
        vec!["--version"],
        vec!["state", "abc"],
        vec!["--root=/r", "exec", "--process", "/p.json", "abc"],
    ] {
        s.reset(&s.config);
        let mtime = fs::metadata(s.bundle.join("config.json"))
            .expect("stat")
            .mtime_nsec();
        let out = s.run(&mp, &line);
        assert_eq!(s.argv(), line, "{line:?}");
        assert!(
            out.stderr.is_empty(),
            "{line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(s.config_now(), s.config, "{line:?}");
        assert_eq!(
            fs::metadata(s.bundle.join("config.json"))
                .expect("stat")
                .mtime_nsec(),
            mtime,
            "{line:?} wrote config.json"
        );
    }

    // create, but proclens stays out: the file is the engine's, byte for
    // byte, the real runtime runs, one line on stderr (no --log) says why.
    let opted_out = {
        let mut spec: Value = serde_json::from_slice(&s.config).expect("json");
        spec["annotations"] = json!({"io.proclens.disable": "true"});
        serde_json::to_vec(&spec).expect("json")
    };
    let bad_mounts = {
        let mut spec: Value = serde_json::from_slice(&s.config).expect("json");
        spec["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({"type": "tmpfs"}));
        serde_json::to_vec(&spec).expect("json")
    };
    let nowhere = s.dir.path().join("not-mounted");
    fs::create_dir(&nowhere).expect("mkdir");
    for (what, config, mp, says) in [
        (
            "opted out",
            &opted_out,
            mp.as_path(),
            "skipped, the container sets io.proclens.disable=true",
        ),
        (
            "not served",
            &s.config,
            nowhere.as_path(),
            "is not served: not a FUSE mount",
        ),
        (
            "a mount without a destination",
            &bad_mounts,
            mp.as_path(),
            "left as it was: ",
        ),
        (
            "not JSON",
            &b"{\"ociVersion\": ".to_vec(),
            mp.as_path(),
            "left as it was: parsing",
        ),
    ] {
        s.reset(config);
        let line = ["run", "-b", &b, "abc"];
        let out = s.run(mp, &line);
        assert_eq!(s.argv(), line, "{what}");
        assert_eq!(&s.config_now(), config, "{what}: config.json changed");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{what}: one line on stderr: {err}");
        assert!(
            err.starts_with("proclens-runc: ") && err.contains(says),
            "{what}: {err}"
        );
        let left: Vec<_> = fs::read_dir(&s.bundle)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 2, "{what}: no temporary file left: {left:?}");
    }
}

#[test]
fn inherited_descriptors_reach_the_real_runtime() {
    let _serial = serial();
    let daemon = Daemon::start();
    let s = Setup::new();
    let b = s.bundle.to_str().expect("utf-8").to_owned();
    let keep = fs::File::open(s.bundle.join("config.json")).expect("open");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&keep);
    let mut cmd = s.command(
        daemon.mountpoint(),
        &["run", "--preserve-fds", "1", "-b", &b, "x"],
    );
    // SAFETY: dup2 between fork and exec, on a descriptor we own.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it then.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(s.out.join("fd3"))
            .expect("fd3 report")
            .trim(),
        "open",
        "--preserve-fds: fd 3 must reach runc"
    );
}

#[test]
fn a_missing_runtime_is_one_line_and_exit_127() {
    let _serial = serial();
    let s = Setup::new();
    let mut cmd = host_command(&s.wrapper);
    cmd.env("PROCLENS_RUNC_RUNTIME", "/nonexistent/runc")
        .arg("--version");
    let out = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "proclens-runc: cannot run /nonexistent/runc: No such file or directory (os error 2)"
    );
    // Without configuration: runc from PATH, and never the wrapper itself
    // even when it is installed as `runc` ahead of it.
    let shadow = s.dir.path().join("shadow");
    fs::create_dir(&shadow).expect("mkdir");
    symlink(proclens_bin(), shadow.join("runc")).expect("link");
    let mut cmd = host_command(&s.wrapper);
    cmd.env(
        "PATH",
        format!(
            "{}:{}",
            shadow.display(),
            s.fake.parent().expect("dir").display()
        ),
    )
    .env("FAKE_RUNC_OUT", &s.out)
    .args(["--debug", "list"]);
    let out = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.argv(), ["--debug", "list"]);
}

#[test]
fn help_names_the_settings() {
    let s = Setup::new();
    let out = run_with_timeout(host_command(&s.wrapper).arg("--help"), RUN_TIMEOUT);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Usage: proclens-runc",
        "--proclens-runtime=PATH",
        "PROCLENS_RUNC_RUNTIME",
        "--proclens-mountpoint=DIR",
        "PROCLENS_RUNC_MOUNTPOINT",
    ] {
        assert!(text.contains(want), "--help lacks {want}:\n{text}");
    }
}

/// Runs `cmd` to its end, its time. A plain blocking wait: the polling of
/// `run_with_timeout` would round every run up to its 10 ms step. (The
/// wrapper cannot hang: its probe of the mount gives up after 2 s.)
fn timed(cmd: &mut Command) -> Duration {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd.status().expect("run");
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?}: {status}");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The cost of the wrapper on a container start: with `true` as the real
/// runtime, the wrapper's `create` (exec, probe of the mount, config.json
/// read, edited, replaced) and its `start` (straight through), each
/// against `true` run directly, on docker's own config.json.
#[test]
fn the_wrapper_adds_well_under_50_ms_to_a_container_start() {
    let _serial = serial();
    let daemon = Daemon::start();
    let mp = daemon.mountpoint().to_owned();
    let s = Setup::new();
    let t = common::which("true").expect("true");
    let create = s.docker_create();
    let start = ["--root", "/run/docker/runtime-runc/moby", "start", "abc"];
    let rounds = 50;
    let (mut wrapped, mut direct, mut passed, mut plain) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        s.reset(&s.config);
        let mut c = s.command(&mp, &strs(&create));
        c.env("PROCLENS_RUNC_RUNTIME", &t);
        wrapped.push(timed(&mut c));
        assert_eq!(bound(&s.config_now(), &mp).len(), 9, "each round edits");
        direct.push(timed(host_command(&t).args(&create)));
        let mut c = s.command(&mp, &start);
        c.env("PROCLENS_RUNC_RUNTIME", &t);
        passed.push(timed(&mut c));
        plain.push(timed(host_command(&t).args(start)));
    }
    let (w, d, p, q) = (
        median(wrapped),
        median(direct),
        median(passed),
        median(plain),
    );
    let (on_create, on_other) = (w.saturating_sub(d), p.saturating_sub(q));
    println!(
        "proclens-runc ({}), median of {rounds}: create {w:?} (`true` alone {d:?}): +{on_create:?}; \
         start {p:?} (`true` alone {q:?}): +{on_other:?}; config.json of {} bytes",
        proclens_bin(),
        s.config.len()
    );
    // A docker container start calls the runtime four times: create,
    // start, delete, delete --force.
    let per_container = on_create + on_other * 3;
    assert!(
        per_container < Duration::from_millis(50),
        "the wrapper adds {per_container:?} to a container start"
    );
}
