//! The Debian package on this very machine: `dpkg -i`, the files where they
//! belong, `proclens --version`, `/usr/bin/proclens-runc` (a link that runs
//! as the wrapper), the engines' example settings read by their parsers
//! (containerd's `config dump`, TOML for podman and CRI-O),
//! `systemd-analyze verify` of the installed unit, then `dpkg -r` and
//! `dpkg -P`, after which nothing the package
//! installed may be left (the file lists of /usr, /etc and dpkg's and
//! systemd's state under /var/lib are compared before and after).
//!
//! The .deb is `$PROCLENS_DEB` when set (scripts/test.sh builds it first
//! with scripts/deb.sh), otherwise this test runs scripts/deb.sh itself,
//! with its own target directory so it does not wait on the cargo lock of
//! the `cargo test` that runs it.
//!
//! Needs root, dpkg, systemd-analyze, man, python3, containerd, runc and
//! (without `$PROCLENS_DEB`) cargo-deb; a missing one fails the test. It refuses to run when a
//! proclens package is already installed, and a guard purges the package
//! it installed even when an assertion fails.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{checked_stdout, host_command, run_with_timeout, which};

const PKG: &str = "proclens";
const DPKG_TIMEOUT: Duration = Duration::from_secs(300);
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);

/// Trees whose file lists must be the same before install and after purge.
const WATCHED: &[&str] = &["/usr", "/etc", "/var/lib/dpkg/info", "/var/lib/systemd"];

fn require(tools: &[&str]) {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "tools missing for the package test: {missing:?} (apt-get install dpkg systemd man-db)"
    );
}

fn installed() -> bool {
    let out = run_with_timeout(
        host_command("dpkg-query").args(["-W", "-f=${Status}", PKG]),
        DPKG_TIMEOUT,
    );
    // "install ok installed"; "deinstall ok config-files" after -r.
    String::from_utf8_lossy(&out.stdout).ends_with("ok installed")
}

/// `dpkg -P proclens` on drop if it is still installed in any state.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let out = run_with_timeout(
            host_command("dpkg-query").args(["-W", "-f=${Status}", PKG]),
            DPKG_TIMEOUT,
        );
        if out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("not-installed") {
            eprintln!("deb cleanup: dpkg -P {PKG}");
            let _ = run_with_timeout(host_command("dpkg").args(["-P", PKG]), DPKG_TIMEOUT);
        }
    }
}

/// Every path below `roots`, not following symlinks.
fn snapshot(roots: &[&str]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(PathBuf::from).collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
        out.insert(p);
    }
    out
}

fn the_deb() -> PathBuf {
    if let Ok(p) = std::env::var("PROCLENS_DEB") {
        if !p.is_empty() {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "PROCLENS_DEB={} is not a file", p.display());
            return p;
        }
    }
    // The cargo running this test (it sets $CARGO); scripts/deb.sh finds
    // the same one on the inherited PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = run_with_timeout(
        Command::new(&cargo).args(["deb", "--version"]),
        Duration::from_secs(60),
    );
    assert!(
        probe.status.success(),
        "cargo-deb is not installed (cargo install cargo-deb --version 3.8.0 --locked, \
         as .ci/run does), and PROCLENS_DEB is not set"
    );
    let target = repo.join("target/deb-test");
    let out = checked_stdout(
        Command::new(repo.join("scripts/deb.sh")).env("CARGO_TARGET_DIR", &target),
        BUILD_TIMEOUT,
    );
    let last = out.lines().last().unwrap_or("").trim();
    let deb = repo.join(last);
    assert!(
        deb.is_file(),
        "scripts/deb.sh did not name a .deb on its last line:\n{out}"
    );
    deb
}

fn gunzip(path: &str) -> String {
    checked_stdout(host_command("gzip").args(["-dc", path]), DPKG_TIMEOUT)
}

#[test]
fn deb_installs_verifies_and_purges_without_a_trace() {
    let _serial = common::serial();
    require(&[
        "dpkg",
        "dpkg-deb",
        "dpkg-query",
        "systemd-analyze",
        "man",
        "gzip",
        "bash",
        "python3",
        "containerd",
        "runc",
    ]);
    assert!(
        !installed(),
        "a {PKG} package is already installed on this machine; this test installs and \
         purges its own and will not touch another (dpkg -P {PKG} first)"
    );
    let deb = the_deb();
    let deb_s = deb.to_str().expect("UTF-8 path");
    eprintln!("package: {}", deb.display());
    let contents = checked_stdout(host_command("dpkg-deb").args(["-c", deb_s]), DPKG_TIMEOUT);
    eprintln!("--- dpkg-deb -c ---\n{contents}");

    let before = snapshot(WATCHED);
    let guard = PurgeOnDrop;
    checked_stdout(host_command("dpkg").args(["-i", deb_s]), DPKG_TIMEOUT);
    assert!(installed(), "dpkg -i did not leave {PKG} installed");

    // --- files -------------------------------------------------------------
    let listed = checked_stdout(host_command("dpkg").args(["-L", PKG]), DPKG_TIMEOUT);
    let listed: Vec<&str> = listed.lines().collect();
    for want in [
        "/usr/bin/proclens",
        "/usr/share/man/man1/proclens.1.gz",
        "/usr/share/man/man1/proclens-oci-hook.1.gz",
        "/usr/share/bash-completion/completions/proclens",
        "/usr/share/zsh/vendor-completions/_proclens",
        "/usr/share/fish/vendor_completions.d/proclens.fish",
        "/usr/share/containers/oci/hooks.d/proclens.json",
        "/usr/share/doc/proclens/README.md",
        "/usr/share/doc/proclens/copyright",
        "/usr/share/man/man1/proclens-runc.1.gz",
        "/usr/share/doc/proclens/examples/docker/daemon.json",
        "/usr/share/doc/proclens/examples/podman/containers.conf",
        "/usr/share/doc/proclens/examples/containerd/config.toml",
        "/usr/share/doc/proclens/examples/kubernetes/runtimeclass.yaml",
        "/usr/share/doc/proclens/examples/crio/proclens.conf",
        "/usr/share/doc/proclens/examples/oci/proclens.json",
        "/usr/share/doc/proclens/examples/lxc/proclens.conf",
    ] {
        assert!(listed.contains(&want), "{want} not in dpkg -L {PKG}");
        assert!(Path::new(want).is_file(), "{want} not installed");
    }
    // cargo-deb installs units under /usr/lib; /lib is /usr/lib on Debian 12
    // (merged /usr), and systemd reads both.
    let unit = "/lib/systemd/system/proclens.service";
    let unit_text = fs::read_to_string(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    assert!(
        unit_text.contains("\nType=notify\n"),
        "{unit} is Type=notify"
    );
    assert_eq!(
        unit_text,
        include_str!("../packaging/systemd/proclens.service"),
        "installed unit differs from packaging/systemd/proclens.service"
    );

    let version = checked_stdout(
        host_command("/usr/bin/proclens").arg("--version"),
        DPKG_TIMEOUT,
    );
    assert_eq!(
        version.trim(),
        format!("proclens {}", env!("CARGO_PKG_VERSION"))
    );

    let man = gunzip("/usr/share/man/man1/proclens.1.gz");
    assert!(
        man.contains(".TH proclens 1"),
        "man page header:\n{}",
        &man[..man.len().min(300)]
    );
    for sub in ["mount", "oci\\-hook", "docker\\-args", "k8s\\-volumes"] {
        assert!(man.contains(sub), "man page lists {sub}");
    }
    assert!(
        !man.contains("generate"),
        "the hidden generate command is not documented"
    );
    let man_w = checked_stdout(host_command("man").args(["-w", "proclens"]), DPKG_TIMEOUT);
    assert_eq!(man_w.trim(), "/usr/share/man/man1/proclens.1.gz");

    // bash really loads the completion and completes subcommands.
    let completed = checked_stdout(
        host_command("bash").args([
            "-c",
            "source /usr/share/bash-completion/completions/proclens; \
             COMP_WORDS=(proclens oci); COMP_CWORD=1; COMP_LINE='proclens oci'; \
             COMP_POINT=${#COMP_LINE}; _proclens proclens oci proclens; \
             printf '%s\\n' \"${COMPREPLY[@]}\"",
        ]),
        DPKG_TIMEOUT,
    );
    assert!(
        completed.lines().any(|l| l == "oci-hook"),
        "bash completion of `proclens oci`: {completed:?}"
    );

    let hook: serde_json::Value = serde_json::from_str(
        &fs::read_to_string("/usr/share/containers/oci/hooks.d/proclens.json").expect("hook json"),
    )
    .expect("hooks.d JSON parses");
    assert_eq!(hook["version"], "1.0.0");
    assert_eq!(hook["hook"]["path"], "/usr/bin/proclens");
    assert_eq!(hook["hook"]["args"][1], "oci-hook");
    assert_eq!(hook["stages"], serde_json::json!(["createContainer"]));
    assert_eq!(hook["when"]["always"], true);

    // --- the runtime wrapper and the engines' settings ------------------------
    let wrapper = "/usr/bin/proclens-runc";
    assert!(listed.contains(&wrapper), "{wrapper} not in dpkg -L {PKG}");
    assert_eq!(
        fs::read_link(wrapper).unwrap_or_else(|e| panic!("{wrapper} is not a symlink: {e}")),
        Path::new("proclens"),
        "{wrapper} links to proclens beside it"
    );
    let help = checked_stdout(host_command(wrapper).arg("--help"), DPKG_TIMEOUT);
    assert!(
        help.contains("Usage: proclens-runc") && help.contains("PROCLENS_RUNC_RUNTIME"),
        "{wrapper} --help:\n{help}"
    );
    // Any other command line is runc's: through the wrapper to runc.
    let version = checked_stdout(host_command(wrapper).arg("--version"), DPKG_TIMEOUT);
    assert!(
        version.starts_with("runc version"),
        "{wrapper} --version: {version}"
    );
    let examples = Path::new("/usr/share/doc/proclens/examples");
    let daemon_json: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(examples.join("docker/daemon.json")).expect("read"),
    )
    .expect("docker/daemon.json parses");
    assert_eq!(daemon_json["runtimes"]["proclens"]["path"], wrapper);
    // TOML, read by Python's tomllib (3.11): podman's and CRI-O's tables.
    let toml = |f: &str| -> serde_json::Value {
        let out = checked_stdout(
            host_command("python3")
                .args(["-c", "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))"])
                .arg(examples.join(f)),
            DPKG_TIMEOUT,
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    assert_eq!(
        toml("podman/containers.conf")["engine"]["runtimes"]["proclens"],
        serde_json::json!([wrapper])
    );
    let crio = &toml("crio/proclens.conf")["crio"]["runtime"]["runtimes"]["proclens"];
    assert_eq!(crio["runtime_path"], wrapper);
    assert_eq!(crio["runtime_type"], "oci");
    // containerd reads its own file: `config dump` shows the merged result.
    let dump = checked_stdout(
        host_command("containerd")
            .arg("--config")
            .arg(examples.join("containerd/config.toml"))
            .args(["config", "dump"]),
        DPKG_TIMEOUT,
    );
    let section = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.proclens.options]";
    let options = dump
        .split(section)
        .nth(1)
        .unwrap_or_else(|| panic!("no {section} in containerd config dump:\n{dump}"));
    assert_eq!(
        options
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("BinaryName")),
        Some(format!("BinaryName = \"{wrapper}\"").as_str()),
        "containerd's proclens runtime runs the wrapper"
    );
    // The RuntimeClass names the handler containerd and CRI-O define.
    let rc = fs::read_to_string(examples.join("kubernetes/runtimeclass.yaml")).expect("read");
    let rc = &yaml_rust2::YamlLoader::load_from_str(&rc).expect("runtimeclass.yaml parses")[0];
    assert_eq!(rc["kind"].as_str(), Some("RuntimeClass"));
    assert_eq!(rc["handler"].as_str(), Some("proclens"));

    // --- the unit verifies against the installed binary and man page -------
    let verify = run_with_timeout(
        host_command("systemd-analyze").args(["verify", unit]),
        DPKG_TIMEOUT,
    );
    let verify_err = String::from_utf8_lossy(&verify.stderr).into_owned();
    eprintln!(
        "--- systemd-analyze verify {unit} (exit {}) ---\n{}{verify_err}",
        verify.status,
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(
        verify.status.success() && !verify_err.contains("proclens"),
        "systemd-analyze verify {unit}: {}\n{verify_err}",
        verify.status
    );
    let security = checked_stdout(
        host_command("systemd-analyze").args(["security", "--offline=yes", unit]),
        DPKG_TIMEOUT,
    );
    let overall = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("")
        .to_owned();
    eprintln!("systemd-analyze security: {overall}");
    assert!(!overall.is_empty(), "no exposure level:\n{security}");

    // --- remove, purge, nothing left ----------------------------------------
    checked_stdout(host_command("dpkg").args(["-r", PKG]), DPKG_TIMEOUT);
    assert!(
        !Path::new("/usr/bin/proclens").exists(),
        "dpkg -r left /usr/bin/proclens"
    );
    checked_stdout(host_command("dpkg").args(["-P", PKG]), DPKG_TIMEOUT);
    assert!(!installed(), "{PKG} still known to dpkg after -P");
    drop(guard);

    let after = snapshot(WATCHED);
    let left: Vec<&PathBuf> = after.difference(&before).collect();
    assert!(
        left.is_empty(),
        "left behind after dpkg -P (not there before dpkg -i): {left:?}"
    );
    for path in &listed {
        let p = Path::new(path);
        if !before.contains(p) && !path.starts_with("/lib") {
            assert!(!p.exists(), "{path} (from dpkg -L) survived the purge");
        }
    }
    let mut s = String::new();
    let _ = fs::File::open("/proc/self/mountinfo").and_then(|mut f| f.read_to_string(&mut s));
    assert!(!s.contains(" /var/lib/proclens "), "nothing mounted");
}
