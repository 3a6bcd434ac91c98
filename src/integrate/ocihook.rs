//! `proclens oci-hook`: an OCI `createContainer` hook that binds every
//! proclens file into the container's rootfs.
//!
//! The OCI runtime spec (config.md, "Posix-platform Hooks") runs
//! `createContainer` hooks in the container's namespaces after the
//! runtime set up its mounts and before `pivot_root`; runc does it from its
//! init process, so the rootfs is still reachable at its original path and
//! `<rootfs>/proc` and `<rootfs>/sys` already hold the container's own
//! procfs and sysfs. The hook gets the container state on stdin: we use
//! `bundle` (to read `config.json` for `root.path`, relative to the bundle
//! when not absolute) and `annotations` (config.json's too, for runtimes
//! that omit them from the state).
//!
//! It never stops a container from starting for proclens' sake: when the
//! daemon does not serve the mount, when the container opts out with the
//! annotation `io.proclens.disable=true`, or when a target is missing in
//! the rootfs (the rules of `super::skip`, which the runtime wrapper
//! shares), it logs one line on stderr and exits 0, and the container
//! keeps the kernel's files. Only unreadable input (no state, no bundle, no
//! config.json) is an error.

use super::binds::{Kind, BINDS};
use super::skip::{self, DISABLE_ANNOTATION};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct State {
    bundle: Option<PathBuf>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Config {
    root: Option<Root>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Root {
    path: PathBuf,
}

/// What the hook decided, for the log line and the tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Bound these targets; skipped the others (missing in the rootfs or
    /// failed), with why.
    Bound {
        bound: Vec<&'static str>,
        skipped: Vec<(&'static str, String)>,
    },
    OptedOut,
    NotServing(String),
}

/// Binds `src` over `dst`, read-only unless `writable` (the pressure
/// files, for PSI triggers).
fn bind(src: &Path, dst: &Path, writable: bool) -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    // A bind copies the source's flags; say which explicitly anyway (the
    // remount must repeat nosuid/nodev/noexec or it would clear them).
    let ro = if writable {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    mount(
        None::<&str>,
        dst,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | ro
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}

/// Runs the hook on the state JSON `state`; mounts for real.
pub fn run_with_state(state: &str, mountpoint: &Path) -> Result<Outcome> {
    let st: State = serde_json::from_str(state).context("parsing the container state on stdin")?;
    let Some(bundle) = st.bundle else {
        bail!("the container state has no \"bundle\"");
    };
    let cfg_path = bundle.join("config.json");
    let cfg: Config = serde_json::from_str(
        &std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?,
    )
    .with_context(|| format!("parsing {}", cfg_path.display()))?;

    let annotation = st
        .annotations
        .get(DISABLE_ANNOTATION)
        .or_else(|| cfg.annotations.get(DISABLE_ANNOTATION));
    if skip::opts_out(annotation.map(String::as_str)) {
        return Ok(Outcome::OptedOut);
    }
    let Some(root) = cfg.root else {
        bail!("{} has no root.path", cfg_path.display());
    };
    let rootfs = bundle.join(root.path);
    let rootfs = rootfs
        .canonicalize()
        .with_context(|| format!("resolving the rootfs {}", rootfs.display()))?;

    if let Err(why) = skip::probe(mountpoint) {
        return Ok(Outcome::NotServing(why));
    }

    let mut bound = Vec::new();
    let mut skipped = Vec::new();
    for b in &BINDS {
        let src = mountpoint.join(b.source);
        let dst = match skip::target_in(&rootfs, b.target) {
            Ok(d) => d,
            Err(e) => {
                skipped.push((b.target, e));
                continue;
            }
        };
        let kind_ok = match b.kind {
            Kind::File => dst.is_file(),
            Kind::Dir => dst.is_dir(),
        };
        if !kind_ok {
            skipped.push((b.target, format!("{} is not a {:?}", dst.display(), b.kind)));
            continue;
        }
        match bind(&src, &dst, b.writable) {
            Ok(()) => bound.push(b.target),
            Err(e) => skipped.push((b.target, format!("bind {}: {e}", src.display()))),
        }
    }
    Ok(Outcome::Bound { bound, skipped })
}

/// `proclens oci-hook`: reads the state from stdin, binds, logs one line.
pub fn run(mountpoint: &Path) -> Result<()> {
    let mut state = String::new();
    std::io::stdin()
        .read_to_string(&mut state)
        .context("reading the container state from stdin")?;
    match run_with_state(&state, mountpoint)? {
        Outcome::OptedOut => {
            eprintln!("proclens oci-hook: skipped, the container sets {DISABLE_ANNOTATION}=true")
        }
        Outcome::NotServing(why) => eprintln!(
            "proclens oci-hook: skipped, {} is not served: {why}",
            mountpoint.display()
        ),
        Outcome::Bound { bound, skipped } if skipped.is_empty() => eprintln!(
            "proclens oci-hook: bound {} files from {}",
            bound.len(),
            mountpoint.display()
        ),
        Outcome::Bound { bound, skipped } => {
            let why: Vec<String> = skipped.iter().map(|(t, e)| format!("{t} ({e})")).collect();
            eprintln!(
                "proclens oci-hook: bound {} files from {}; skipped {}",
                bound.len(),
                mountpoint.display(),
                why.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).expect("rootfs");
        std::fs::write(dir.path().join("config.json"), config).expect("config");
        dir
    }

    fn state(bundle: &Path, annotations: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2","id":"x","status":"creating","pid":1,"bundle":{},"annotations":{annotations}}}"#,
            serde_json::to_string(bundle.to_str().expect("utf-8")).expect("json")
        )
    }

    #[test]
    fn opt_out_from_state_or_config() {
        let b = bundle_with(r#"{"root":{"path":"rootfs"}}"#);
        let out = run_with_state(
            &state(b.path(), r#"{"io.proclens.disable":"true"}"#),
            Path::new("/nonexistent"),
        )
        .expect("runs");
        assert_eq!(out, Outcome::OptedOut);

        let b = bundle_with(
            r#"{"root":{"path":"rootfs"},"annotations":{"io.proclens.disable":"yes"}}"#,
        );
        let out = run_with_state(&state(b.path(), "{}"), Path::new("/nonexistent")).expect("runs");
        assert_eq!(out, Outcome::OptedOut);
    }

    #[test]
    fn false_annotation_does_not_opt_out() {
        let b = bundle_with(r#"{"root":{"path":"rootfs"}}"#);
        let out = run_with_state(
            &state(b.path(), r#"{"io.proclens.disable":"false"}"#),
            Path::new("/nonexistent"),
        )
        .expect("runs");
        assert!(matches!(out, Outcome::NotServing(_)), "{out:?}");
    }

    #[test]
    fn plain_directory_is_not_served() {
        let b = bundle_with(r#"{"root":{"path":"rootfs"}}"#);
        let mp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(mp.path().join("proc")).expect("mkdir");
        std::fs::write(mp.path().join("proc/meminfo"), "MemTotal: 1 kB\n").expect("write");
        let out = run_with_state(&state(b.path(), "{}"), mp.path()).expect("runs");
        let Outcome::NotServing(why) = out else {
            panic!("{out:?}");
        };
        assert!(why.contains("not a FUSE mount"), "{why}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(run_with_state("", Path::new("/x")).is_err());
        assert!(run_with_state(r#"{"id":"x"}"#, Path::new("/x")).is_err());
        let b = bundle_with("not json");
        assert!(run_with_state(&state(b.path(), "{}"), Path::new("/x")).is_err());
    }
}
