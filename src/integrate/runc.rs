//! `proclens-runc`: an OCI runtime wrapper, for engines that have no hooks
//! directory (docker, containerd and so Kubernetes) or that take a runtime
//! by path (podman `--runtime`, CRI-O's runtime table).
//!
//! The engine calls it exactly as it would call runc. For `create` and
//! `run` it finds the bundle (`--bundle`/`-b`, else the working directory),
//! edits the bundle's `config.json` in a few small steps ([`EDITS`]: the
//! proclens binds appended to `mounts`, and sysinfo(2) notified to the
//! daemon through the seccomp profile), and then, for every
//! command, execs the real runtime with the command line it was given.
//! `runc create` reads `config.json` only after that, so the container is
//! created with the binds as if the engine had asked for them.
//!
//! It never makes a container fail that would have started without it.
//! It stays out (the rules of `super::skip`, which the OCI hook shares)
//! when the container opts out with `io.proclens.disable=true`, when the
//! daemon does not serve the mount, or for a bind whose target would be
//! missing (no procfs or sysfs under it) or resolves outside the rootfs.
//! Any other problem (a command line it cannot read, a config.json it
//! cannot parse or write, even a panic) is one line ([`Log`]: runc's log
//! when the engine names one, else stderr), and the real runtime then gets
//! the unchanged command line and the unchanged config.json: the edits are
//! made on a copy of the document, and the file is replaced (write to a
//! new file, rename over) only when every edit succeeded.
//!
//! Its own settings, so that engines which pass no arguments (containerd's
//! `BinaryName`) can set them in the environment and engines that pass
//! only arguments (docker's `runtimeArgs`, podman's `--runtime-flag`)
//! as global options, which the wrapper removes before the exec:
//!
//! | option (before the command) | variable | default |
//! |---|---|---|
//! | `--proclens-runtime=PATH` | `PROCLENS_RUNC_RUNTIME` | `runc` from `PATH`, never the wrapper itself |
//! | `--proclens-mountpoint=DIR` | `PROCLENS_RUNC_MOUNTPOINT` | `/var/lib/proclens` |
//! | `--proclens-seccomp-socket=PATH` | `PROCLENS_RUNC_SECCOMP_SOCKET` | `/run/proclens/seccomp.sock`; empty: sysinfo(2) stays the kernel's |

use super::binds::{via_runc, DEFAULT_MOUNTPOINT, DEFAULT_SECCOMP_SOCKET};
use super::skip::{self, DISABLE_ANNOTATION};
use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The name the binary answers to as the wrapper (argv[0]'s last part).
pub const NAME: &str = "proclens-runc";
/// The real runtime: a path, or a name looked up in `PATH`.
pub const RUNTIME_ENV: &str = "PROCLENS_RUNC_RUNTIME";
/// Where the daemon serves.
pub const MOUNTPOINT_ENV: &str = "PROCLENS_RUNC_MOUNTPOINT";
/// Where the daemon takes seccomp descriptors; empty: nowhere.
pub const SECCOMP_SOCKET_ENV: &str = "PROCLENS_RUNC_SECCOMP_SOCKET";
const RUNTIME_OPT: &str = "proclens-runtime";
const MOUNTPOINT_OPT: &str = "proclens-mountpoint";
const SECCOMP_SOCKET_OPT: &str = "proclens-seccomp-socket";
const DEFAULT_RUNTIME: &str = "runc";
/// `PATH` when the environment has none (what execvp(3) falls back to is
/// shorter; this is the one every engine's service runs with).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether argv[0] names the wrapper.
pub fn is_wrapper(argv0: &OsStr) -> bool {
    Path::new(argv0).file_name() == Some(OsStr::new(NAME))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// A boolean: `--name`, or `--name=true|false`.
    Bool,
    /// Takes a value: `--name=VALUE` or `--name VALUE`.
    WithValue,
}
use Arity::{Bool, WithValue};

/// runc's global options (runc 1.1, `runc --help`), and crun's two more
/// (`--cgroup-manager`, `--log-level`), so that a crun behind the wrapper
/// is read alike.
const GLOBAL_OPTIONS: &[(&str, Arity)] = &[
    ("debug", Bool),
    ("systemd-cgroup", Bool),
    ("help", Bool),
    ("h", Bool),
    ("version", Bool),
    ("v", Bool),
    ("log", WithValue),
    ("log-format", WithValue),
    ("root", WithValue),
    ("criu", WithValue),
    ("rootless", WithValue),
    ("cgroup-manager", WithValue),
    ("log-level", WithValue),
];

/// The options of `runc create` and `runc run` (runc 1.1): the wrapper
/// only needs the bundle, but must know which options take a value to
/// find it.
const CREATE_OPTIONS: &[(&str, Arity)] = &[
    ("bundle", WithValue),
    ("b", WithValue),
    ("console-socket", WithValue),
    ("pid-file", WithValue),
    ("preserve-fds", WithValue),
    ("no-pivot", Bool),
    ("no-new-keyring", Bool),
    ("detach", Bool),
    ("d", Bool),
    ("keep", Bool),
    ("no-subreaper", Bool),
];

/// One command-line word read as an option the way Go's flag package
/// (which runc's urfave/cli uses) reads it: `-name` or `--name`, with an
/// optional `=value`.
struct OptWord<'a> {
    name: &'a [u8],
    value: Option<&'a [u8]>,
}

fn option_word(arg: &OsStr) -> Option<OptWord<'_>> {
    let b = arg.as_bytes();
    let rest = b.strip_prefix(b"--").or_else(|| b.strip_prefix(b"-"))?;
    if rest.is_empty() {
        return None;
    }
    Some(match rest.iter().position(|&c| c == b'=') {
        Some(i) => OptWord {
            name: &rest[..i],
            value: Some(&rest[i + 1..]),
        },
        None => OptWord {
            name: rest,
            value: None,
        },
    })
}

fn arity(table: &[(&str, Arity)], name: &[u8]) -> Option<Arity> {
    table
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .map(|&(_, a)| a)
}

/// What the wrapper makes of its command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    /// What the real runtime gets: the arguments without the wrapper's
    /// own options, otherwise unchanged.
    pub args: Vec<OsString>,
    /// `--proclens-runtime`, if given.
    pub runtime: Option<OsString>,
    /// `--proclens-mountpoint`, if given.
    pub mountpoint: Option<PathBuf>,
    /// `--proclens-seccomp-socket`, if given (empty: none).
    pub seccomp_socket: Option<PathBuf>,
    /// runc's `--log` and `--log-format`: where the wrapper's line goes.
    pub log: Log,
    pub action: Action,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// `create` or `run`: edit this bundle's config.json.
    Edit { bundle: PathBuf },
    /// Any other command (or none, as in `--version`): straight through.
    PassThrough,
    /// A command line the wrapper cannot read: straight through, with
    /// this line ([`Log`]).
    Unreadable(String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads runc's command line: the global options (and the wrapper's
/// own, which it removes), the command, and for `create`/`run` the bundle.
pub fn parse(args: Vec<OsString>) -> Invocation {
    let mut inv = Invocation {
        args: Vec::with_capacity(args.len()),
        runtime: None,
        mountpoint: None,
        seccomp_socket: None,
        log: Log::default(),
        action: Action::PassThrough,
    };
    let mut problem = None;
    let mut words = args.into_iter();
    let mut command = None;
    while let Some(arg) = words.next() {
        // Go's flag package: `--` ends the options; the command follows.
        if arg == "--" {
            inv.args.push(arg);
            command = words.next();
            inv.args.extend(command.clone());
            break;
        }
        let Some(opt) = option_word(&arg) else {
            command = Some(arg.clone());
            inv.args.push(arg);
            break;
        };
        let ours = [RUNTIME_OPT, MOUNTPOINT_OPT, SECCOMP_SOCKET_OPT]
            .into_iter()
            .find(|o| o.as_bytes() == opt.name && arg.as_bytes().starts_with(b"--"));
        if let Some(o) = ours {
            let value = match opt.value {
                Some(v) => Some(OsStr::from_bytes(v).to_owned()),
                None => words.next(),
            };
            match value {
                Some(v) if o == RUNTIME_OPT => inv.runtime = Some(v),
                Some(v) if o == SECCOMP_SOCKET_OPT => inv.seccomp_socket = Some(PathBuf::from(v)),
                Some(v) => inv.mountpoint = Some(PathBuf::from(v)),
                None => problem = Some(format!("--{o} needs a value")),
            }
            continue;
        }
        match arity(GLOBAL_OPTIONS, opt.name) {
            Some(Bool) => inv.args.push(arg),
            Some(WithValue) => {
                inv.args.push(arg.clone());
                let value = match opt.value {
                    Some(v) => Some(OsStr::from_bytes(v).to_owned()),
                    None => {
                        let next = words.next();
                        inv.args.extend(next.clone());
                        next
                    }
                };
                match (opt.name, value) {
                    (b"log", Some(v)) => inv.log.file = Some(PathBuf::from(v)),
                    (b"log-format", Some(v)) => inv.log.json = v == "json",
                    _ => {}
                }
            }
            None => {
                problem.get_or_insert(format!("unknown global option {}", arg.to_string_lossy()));
                inv.args.push(arg);
            }
        }
    }
    let rest: Vec<OsString> = words.collect();
    let is_create = command
        .as_ref()
        .is_some_and(|c| c == "create" || c == "run");
    inv.action = match (is_create, problem) {
        (false, Some(p)) if command.is_none() => Action::Unreadable(p),
        (false, _) => Action::PassThrough,
        (true, Some(p)) => Action::Unreadable(p),
        (true, None) => match bundle_of(&rest) {
            Ok(bundle) => Action::Edit { bundle },
            Err(p) => Action::Unreadable(p),
        },
    };
    inv.args.extend(rest);
    inv
}

/// The bundle of a `create`/`run` command line (the words after the
/// command): the last `--bundle`/`-b` (Go's flag package keeps the last),
/// else the working directory. urfave/cli moves options after the
/// container id in front of it, so every word is looked at up to `--`.
fn bundle_of(words: &[OsString]) -> Result<PathBuf, String> {
    let mut bundle = PathBuf::from(".");
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "--" {
            break;
        }
        let Some(opt) = option_word(w) else {
            continue; // the container id
        };
        match arity(CREATE_OPTIONS, opt.name) {
            Some(Bool) => {}
            Some(WithValue) => {
                let value = match opt.value {
                    Some(v) => OsStr::from_bytes(v).to_owned(),
                    None => it
                        .next()
                        .ok_or_else(|| format!("{} needs a value", w.to_string_lossy()))?
                        .clone(),
                };
                if opt.name == b"bundle" || opt.name == b"b" {
                    bundle = PathBuf::from(value);
                }
            }
            None => return Err(format!("unknown option {}", lossy(w.as_bytes()))),
        }
    }
    Ok(bundle)
}

// ---------------------------------------------------------------------------
// Editing config.json
// ---------------------------------------------------------------------------

/// What every edit may look at besides the document.
#[derive(Debug)]
pub struct Bundle<'a> {
    /// The container's root filesystem, canonical.
    pub rootfs: PathBuf,
    /// Where the daemon serves (probed: it answers).
    pub mountpoint: &'a Path,
    /// Where the daemon takes seccomp descriptors, if it listens there;
    /// else why not.
    pub seccomp: Result<&'a Path, String>,
}

/// One edit of config.json: changes the document in place and returns a
/// phrase for the log line, or says why it cannot, and then nothing is
/// written. Edits work on a copy, so a failed one leaves no trace.
pub type Edit = fn(&mut Value, &Bundle<'_>) -> Result<String, String>;

/// The edits, in order.
pub const EDITS: &[Edit] = &[add_binds, notify_sysinfo];

/// What `create`/`run` did to the bundle, for its line ([`Log`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every edit succeeded; config.json now holds the result (when it
    /// changed). One phrase per edit.
    Edited {
        changed: bool,
        notes: Vec<String>,
    },
    OptedOut,
    NotServing(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {what}")]
    Spec { path: PathBuf, what: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Applies [`EDITS`] to `<bundle>/config.json`, replacing the file only
/// if every edit succeeded and something changed. `seccomp_socket`: where
/// the daemon takes seccomp descriptors (`None`: nowhere).
pub fn edit_bundle(
    bundle: &Path,
    mountpoint: &Path,
    seccomp_socket: Option<&Path>,
) -> Result<Outcome, Error> {
    let path = bundle.join("config.json");
    let read_err = |source| Error::Read {
        path: path.clone(),
        source,
    };
    let mut file = fs::File::open(&path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(read_err)?;
    drop(file);
    let original: Value = serde_json::from_slice(&bytes).map_err(|source| Error::Parse {
        path: path.clone(),
        source,
    })?;
    let spec_err = |what: String| Error::Spec {
        path: path.clone(),
        what,
    };
    if !original.is_object() {
        return Err(spec_err("not a JSON object".to_owned()));
    }
    let annotation = original
        .pointer(&format!("/annotations/{DISABLE_ANNOTATION}"))
        .and_then(Value::as_str);
    if skip::opts_out(annotation) {
        return Ok(Outcome::OptedOut);
    }
    if let Err(why) = skip::probe(mountpoint) {
        return Ok(Outcome::NotServing(why));
    }
    let root = original
        .pointer("/root/path")
        .and_then(Value::as_str)
        .ok_or_else(|| spec_err("no root.path".to_owned()))?;
    let rootfs = bundle.join(root);
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| spec_err(format!("resolving the rootfs {}: {e}", rootfs.display())))?;
    let seccomp = match seccomp_socket {
        None => Err("no seccomp socket configured".to_owned()),
        Some(s) => skip::listens(s).map(|()| s),
    };
    let ctx = Bundle {
        rootfs,
        mountpoint,
        seccomp,
    };

    let mut spec = original.clone();
    let mut notes = Vec::with_capacity(EDITS.len());
    for edit in EDITS {
        notes.push(edit(&mut spec, &ctx).map_err(spec_err)?);
    }
    let changed = spec != original;
    if changed {
        let bytes = serde_json::to_vec(&spec).map_err(|e| spec_err(e.to_string()))?;
        replace(&path, &bytes, &meta).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Outcome::Edited { changed, notes })
}

/// Replaces `path` with `bytes` in one step for any reader: a new file in
/// the same directory, with the old one's mode and owner, renamed over it.
/// Not fsync'd: the rename is what makes the swap atomic for runc, and a
/// bundle does not outlive a crash of its host.
fn replace(path: &Path, bytes: &[u8], old: &fs::Metadata) -> std::io::Result<()> {
    let name = format!(".config.json.proclens-{}", std::process::id());
    let tmp = path.with_file_name(name);
    // A leftover of a wrapper that died with this pid; no live process
    // can own it.
    let _ = fs::remove_file(&tmp);
    let mode = old.mode() & 0o7777;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have cleared bits the original had.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        let st = f.metadata()?;
        if (st.uid(), st.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()))?;
        }
        f.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `/a//b/./c/` -> `/a/b/c` (runc cleans mount destinations alike).
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether `dir` is `path` or one of its ancestors (both clean).
fn covers(dir: &str, path: &str) -> bool {
    dir == "/"
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The kernel filesystem a bind target lives on: the mount that holds it
/// in the container must be this one, or the target would not exist when
/// runc binds over it (and runc would create it on whatever is there).
fn kernel_fs(target: &str) -> &'static str {
    if target.starts_with("/sys/") {
        "sysfs"
    } else {
        "proc"
    }
}

/// Appends one read-only bind per proclens file to `mounts`, after
/// everything the engine mounts, with the flags the OCI hook uses. A
/// target the engine already mounts something at is left to the engine
/// (docker `-v` flags, a Kubernetes volume).
fn add_binds(spec: &mut Value, b: &Bundle<'_>) -> Result<String, String> {
    let mounts = match spec.get("mounts") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(m)) => m.clone(),
        Some(_) => return Err("mounts is not an array".to_owned()),
    };
    // (destination, type) of every mount, in the order runc makes them.
    let mut existing = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        let dest = m
            .get("destination")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("mounts[{i}] has no destination"))?;
        let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
        existing.push((clean(dest), ty.to_owned()));
    }
    let mut added = Vec::new();
    let mut present = Vec::new();
    let mut skipped = Vec::new();
    // runc refuses the others in a config (binds.rs, `via_runc`).
    for bind in via_runc() {
        if existing.iter().any(|(d, _)| d == bind.target) {
            present.push(bind.target);
            continue;
        }
        // The mount that holds the target: the last one made at it or
        // above it (a later mount hides what an earlier one put there).
        let holder = existing.iter().rev().find(|(d, _)| covers(d, bind.target));
        let want = kernel_fs(bind.target);
        let dir = match holder {
            Some((d, ty)) if ty == want => d,
            Some((d, ty)) => {
                skipped.push(format!(
                    "{} (on a {ty:?} mount at {d}, not {want})",
                    bind.target
                ));
                continue;
            }
            None => {
                skipped.push(format!("{} (no {want} mount holds it)", bind.target));
                continue;
            }
        };
        // runc creates a missing mount point; one that exists must not
        // lead out of the rootfs.
        if b.rootfs
            .join(dir.trim_start_matches('/'))
            .symlink_metadata()
            .is_ok()
        {
            if let Err(e) = skip::target_in(&b.rootfs, dir) {
                skipped.push(format!("{} ({e})", bind.target));
                continue;
            }
        }
        let source = b.mountpoint.join(bind.source);
        let source = source
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", source.display()))?;
        added.push(json!({
            "destination": bind.target,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
        }));
    }
    let mut note = format!(
        "bound {} files from {}",
        added.len(),
        b.mountpoint.display()
    );
    if !present.is_empty() {
        note.push_str(&format!(
            "; {} already mounted by the engine",
            present.len()
        ));
    }
    if !skipped.is_empty() {
        note.push_str(&format!("; skipped {}", skipped.join(", ")));
    }
    if !added.is_empty() {
        let mut all = mounts;
        all.extend(added);
        spec["mounts"] = Value::Array(all);
    }
    Ok(note)
}

// ---------------------------------------------------------------------------
// The wrapper
// ---------------------------------------------------------------------------

/// The syscall the daemon answers through seccomp user notification.
const SYSINFO: &str = "sysinfo";

/// Has runc notify the container's sysinfo(2) calls to the daemon, which
/// answers them from the container's cgroup (`serve::sysinfo`): the
/// profile's rule for `sysinfo` becomes `SCMP_ACT_NOTIFY` and
/// `listenerPath` the daemon's socket, to which runc hands the filter's
/// descriptor once the container's init (or a `runc exec`'s process) has
/// it. A container without a profile (`--privileged`, `seccomp=unconfined`)
/// gets one that allows everything else.
///
/// Leaves the profile alone, and so the call to the kernel, when the
/// daemon does not listen (a container whose runc cannot reach the socket
/// would not start), when the profile already has a listener (one
/// filter, one agent), and when the profile does not let sysinfo through
/// (it refuses or kills it on purpose: that stays).
fn notify_sysinfo(spec: &mut Value, b: &Bundle<'_>) -> Result<String, String> {
    let socket = match &b.seccomp {
        Ok(s) => s
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", s.display()))?,
        Err(why) => return Ok(format!("sysinfo(2) left to the kernel ({why})")),
    };
    let Some(linux) = spec.get_mut("linux") else {
        return Ok("sysinfo(2) left to the kernel (no linux section)".to_owned());
    };
    let linux = linux
        .as_object_mut()
        .ok_or_else(|| "linux is not an object".to_owned())?;
    let rule = json!({"names": [SYSINFO], "action": "SCMP_ACT_NOTIFY"});
    let profile = match linux.get_mut("seccomp") {
        None | Some(Value::Null) => {
            linux.insert(
                "seccomp".to_owned(),
                json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": socket,
                    "syscalls": [rule],
                }),
            );
            return Ok(format!(
                "sysinfo(2) notified to {socket} (a profile of that rule alone)"
            ));
        }
        Some(Value::Object(p)) => p,
        Some(_) => return Err("linux.seccomp is not an object".to_owned()),
    };
    if profile
        .get("listenerPath")
        .and_then(Value::as_str)
        .is_some_and(|l| !l.is_empty())
    {
        return Ok("sysinfo(2) left to the kernel (the profile has a listener)".to_owned());
    }
    let default = profile
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or_else(|| "linux.seccomp has no defaultAction".to_owned())?
        .to_owned();
    let mut rules = match profile.get("syscalls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(r)) => r.clone(),
        Some(_) => return Err("linux.seccomp.syscalls is not an array".to_owned()),
    };
    // What the profile does with sysinfo: the actions of the rules naming
    // it, else its default.
    let mut actions = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let names = r
            .get("names")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("linux.seccomp.syscalls[{i}] has no names"))?;
        if names.iter().any(|n| n == SYSINFO) {
            let action = r.get("action").and_then(Value::as_str).unwrap_or("");
            actions.push(action.to_owned());
        }
    }
    let passes = |a: &str| a == "SCMP_ACT_ALLOW" || a == "SCMP_ACT_LOG";
    let lets_through = if actions.is_empty() {
        passes(&default)
    } else {
        actions.iter().all(|a| passes(a))
    };
    if !lets_through {
        let what = actions.iter().find(|a| !passes(a)).unwrap_or(&default);
        return Ok(format!(
            "sysinfo(2) left to the profile, which gives it {what}"
        ));
    }
    // Out of every rule that names it; a rule left with no names goes.
    rules.retain_mut(|r| {
        let Some(names) = r.get_mut("names").and_then(Value::as_array_mut) else {
            return true;
        };
        let had = names.len();
        names.retain(|n| n != SYSINFO);
        had == names.len() || !names.is_empty()
    });
    rules.push(rule);
    profile.insert("syscalls".to_owned(), Value::Array(rules));
    profile.insert("listenerPath".to_owned(), Value::from(socket));
    Ok(format!("sysinfo(2) notified to {socket}"))
}
/// The real runtime: `configured` (a path, or a name looked up in `PATH`),
/// else `runc` from `PATH`. A `PATH` entry that is this very program (the
/// wrapper installed as `runc`) is passed over.
fn real_runtime(configured: Option<OsString>) -> Result<PathBuf, String> {
    let name = configured.unwrap_or_else(|| DEFAULT_RUNTIME.into());
    if name.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(name));
    }
    let me = fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    find_in_path(&name, &path, me).ok_or_else(|| {
        format!(
            "no {} in PATH ({}) other than proclens-runc itself; set {RUNTIME_ENV} or --{RUNTIME_OPT}",
            name.to_string_lossy(),
            path.to_string_lossy()
        )
    })
}

/// The first executable file `name` in `path` that is not the file `me`
/// (device, inode).
fn find_in_path(name: &OsStr, path: &OsStr, me: Option<(u64, u64)>) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| {
                m.is_file() && m.mode() & 0o111 != 0 && Some((m.dev(), m.ino())) != me
            })
        })
}

/// Where the wrapper's line goes: runc's own log when the engine names
/// one, in runc's format, else stderr. containerd's shim gives `runc
/// create` the container's own stdio, so a line on stderr there would be
/// part of the container's output (`docker logs`); the log file is where
/// containerd looks when a create fails, and where runc's own messages
/// are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    /// `--log FILE`.
    pub file: Option<PathBuf>,
    /// `--log-format json` (else logrus' text format, runc's default).
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    /// Never "error": containerd reports the last error-level line of the
    /// log as the reason a create failed, and that must stay runc's.
    Warning,
}

impl Log {
    /// One line, as logrus (runc 1.1) writes it: `{"level":"info","msg":
    /// "...","time":"..."}` or `time="..." level=info msg="..."`.
    fn line(&self, level: Level, msg: &str, now: std::time::SystemTime) -> String {
        let level = match level {
            Level::Info => "info",
            Level::Warning => "warning",
        };
        let msg = format!("{NAME}: {msg}");
        let quoted = Value::String(msg.clone()).to_string();
        let time = rfc3339_utc(now);
        if self.json {
            format!("{{\"level\":\"{level}\",\"msg\":{quoted},\"time\":\"{time}\"}}\n")
        } else if self.file.is_some() {
            format!("time=\"{time}\" level={level} msg={quoted}\n")
        } else {
            format!("{msg}\n")
        }
    }

    fn say(&self, level: Level, msg: impl std::fmt::Display) {
        let line = self.line(level, &msg.to_string(), std::time::SystemTime::now());
        let written = self.file.as_ref().is_some_and(|f| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(f)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .is_ok()
        });
        if !written {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// `2026-12-01T21:19:10Z`, as Go's time.RFC3339 prints UTC (logrus'
/// default timestamp). Civil date from days since 1970 after Howard
/// Hinnant's `civil_from_days`.
fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Edits the bundle for `create`/`run`, saying what happened on one line;
/// never fails, never panics out.
fn prepare(bundle: &Path, mountpoint: &Path, seccomp_socket: Option<&Path>, log: &Log) {
    let config = bundle.join("config.json");
    let result = std::panic::catch_unwind(|| edit_bundle(bundle, mountpoint, seccomp_socket));
    match result {
        Ok(Ok(Outcome::Edited { changed, notes })) => {
            let what = if changed {
                ""
            } else {
                " (config.json unchanged)"
            };
            log.say(Level::Info, format_args!("{}{what}", notes.join("; ")));
        }
        Ok(Ok(Outcome::OptedOut)) => log.say(
            Level::Info,
            format_args!("skipped, the container sets {DISABLE_ANNOTATION}=true"),
        ),
        Ok(Ok(Outcome::NotServing(why))) => log.say(
            Level::Warning,
            format_args!("skipped, {} is not served: {why}", mountpoint.display()),
        ),
        Ok(Err(e)) => log.say(
            Level::Warning,
            format_args!("{} left as it was: {e}", config.display()),
        ),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            log.say(
                Level::Warning,
                format_args!("{} left as it was: {msg}", config.display()),
            );
        }
    }
}

/// Runs the wrapper on `args` (argv without argv[0]): edits the bundle for
/// `create` and `run`, then becomes the real runtime.
pub fn run(args: Vec<OsString>) -> ! {
    // A panic is reported by `prepare` in one line, not by the default
    // hook's several.
    std::panic::set_hook(Box::new(|_| {}));
    let inv = parse(args);
    let mountpoint = inv
        .mountpoint
        .clone()
        .or_else(|| std::env::var_os(MOUNTPOINT_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MOUNTPOINT));
    let seccomp_socket = inv
        .seccomp_socket
        .clone()
        .or_else(|| std::env::var_os(SECCOMP_SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SECCOMP_SOCKET));
    let seccomp_socket = (!seccomp_socket.as_os_str().is_empty()).then_some(seccomp_socket);
    match &inv.action {
        Action::Edit { bundle } => {
            prepare(bundle, &mountpoint, seccomp_socket.as_deref(), &inv.log)
        }
        Action::PassThrough => {}
        Action::Unreadable(why) => inv.log.say(
            Level::Warning,
            format_args!("{why}; passing the command line through without proclens"),
        ),
    }
    let configured = inv.runtime.or_else(|| std::env::var_os(RUNTIME_ENV));
    let runtime = match real_runtime(configured) {
        Ok(r) => r,
        Err(e) => {
            inv.log.say(Level::Warning, e);
            std::process::exit(127);
        }
    };
    let err = std::process::Command::new(&runtime).args(&inv.args).exec();
    inv.log.say(
        Level::Warning,
        format_args!("cannot run {}: {err}", runtime.display()),
    );
    std::process::exit(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn edit_of(words: &[&str]) -> Invocation {
        parse(os(words))
    }

    #[test]
    fn docker_create_finds_the_bundle_and_keeps_the_line() {
        // What dockerd 20.10 passes (captured on the development VM).
        let line = [
            "--root",
            "/run/docker/runtime-runc/moby",
            "--log",
            "/run/containerd/x/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/run/containerd/x",
            "--pid-file",
            "/run/containerd/x/init.pid",
            "abc",
        ];
        let inv = edit_of(&line);
        assert_eq!(inv.args, os(&line));
        assert_eq!(
            inv.action,
            Action::Edit {
                bundle: "/run/containerd/x".into()
            }
        );
        assert_eq!(inv.runtime, None);
    }

    #[test]
    fn every_option_form_is_read() {
        for (line, bundle) in [
            (&["create", "-b", "/b", "id"][..], "/b"),
            (&["create", "-b=/b", "id"], "/b"),
            (&["create", "--bundle=/b", "id"], "/b"),
            (&["create", "-bundle", "/b", "id"], "/b"),
            // urfave/cli takes options after the id too.
            (&["create", "id", "--bundle", "/b"], "/b"),
            (&["create", "--bundle", "/a", "--bundle", "/b", "id"], "/b"),
            (&["run", "-d", "--pid-file", "-b", "id"], "."),
            (&["run", "--console-socket", "/s", "id"], "."),
            (
                &["--root=/r", "--debug", "--log", "/l", "create", "id"],
                ".",
            ),
            (
                &[
                    "--systemd-cgroup=false",
                    "-root",
                    "/r",
                    "run",
                    "-b",
                    "/b",
                    "id",
                ],
                "/b",
            ),
            (
                &[
                    "--rootless",
                    "auto",
                    "--criu",
                    "/c",
                    "--log-format=text",
                    "create",
                    "--bundle",
                    "/b",
                    "id",
                ],
                "/b",
            ),
            (&["create", "--bundle", "/a", "--", "--bundle", "/b"], "/a"),
            (&["--root", "/r", "--", "create", "-b", "/b", "id"], "/b"),
        ] {
            let inv = edit_of(line);
            assert_eq!(inv.args, os(line), "{line:?}");
            assert_eq!(
                inv.action,
                Action::Edit {
                    bundle: bundle.into()
                },
                "{line:?}"
            );
        }
    }

    #[test]
    fn option_values_are_not_commands() {
        // `create` is the value of --root and --log here; the command is start.
        let inv = edit_of(&["--root", "create", "--log", "run", "start", "id"]);
        assert_eq!(inv.action, Action::PassThrough);
    }

    #[test]
    fn other_commands_pass_straight_through() {
        for line in [
            &["start", "id"][..],
            &["--root", "/r", "delete", "--force", "id"],
            &["--version"],
            &["state", "id"],
            &["exec", "--bundle", "x"],
            &[],
            &["features"],
        ] {
            let inv = edit_of(line);
            assert_eq!(inv.args, os(line), "{line:?}");
            assert_eq!(inv.action, Action::PassThrough, "{line:?}");
        }
    }

    #[test]
    fn own_options_are_taken_out() {
        let inv = edit_of(&[
            "--proclens-mountpoint=/mp",
            "--root",
            "/r",
            "--proclens-runtime",
            "/usr/bin/crun",
            "--proclens-seccomp-socket=",
            "create",
            "id",
        ]);
        assert_eq!(inv.args, os(&["--root", "/r", "create", "id"]));
        assert_eq!(inv.runtime, Some("/usr/bin/crun".into()));
        assert_eq!(inv.mountpoint, Some("/mp".into()));
        assert_eq!(inv.seccomp_socket, Some("".into()));
        assert_eq!(inv.action, Action::Edit { bundle: ".".into() });
        // Only before the command: after it they are the runtime's business.
        let inv = edit_of(&["start", "--proclens-runtime=/x", "id"]);
        assert_eq!(inv.args, os(&["start", "--proclens-runtime=/x", "id"]));
        assert_eq!(inv.runtime, None);
    }

    #[test]
    fn unreadable_lines_pass_through_unchanged() {
        for line in [
            &["--frobnicate", "create", "id"][..],
            &["create", "--frobnicate", "id"],
            &["create", "id", "--bundle"],
            &["--proclens-runtime"],
        ] {
            let inv = edit_of(line);
            assert!(
                matches!(inv.action, Action::Unreadable(_)),
                "{line:?}: {inv:?}"
            );
            let kept: Vec<OsString> = os(line)
                .into_iter()
                .filter(|a| a != "--proclens-runtime")
                .collect();
            assert_eq!(inv.args, kept, "{line:?}");
        }
        // An unknown option before another command is runc's to reject.
        assert_eq!(
            edit_of(&["--frobnicate", "start", "id"]).action,
            Action::PassThrough
        );
    }

    #[test]
    fn non_utf8_paths_survive() {
        let odd = OsStr::from_bytes(b"/b\xff").to_owned();
        let inv = parse(vec!["create".into(), "-b".into(), odd.clone(), "id".into()]);
        assert_eq!(
            inv.action,
            Action::Edit {
                bundle: PathBuf::from(&odd)
            }
        );
        assert_eq!(inv.args[2], odd);
    }

    #[test]
    fn destinations_are_compared_clean() {
        assert_eq!(clean("/proc//meminfo/"), "/proc/meminfo");
        assert_eq!(clean("proc/./x/../meminfo"), "/proc/meminfo");
        assert!(covers("/proc", "/proc/meminfo"));
        assert!(covers("/", "/proc/meminfo"));
        assert!(!covers("/pro", "/proc/meminfo"));
        assert!(covers("/sys", "/sys/devices/system/cpu"));
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["proc", "sys"] {
            fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        dir
    }

    fn ctx<'a>(root: &tempfile::TempDir, mp: &'a Path) -> Bundle<'a> {
        Bundle {
            rootfs: root.path().canonicalize().expect("canon"),
            mountpoint: mp,
            seccomp: Err("not asked".to_owned()),
        }
    }

    fn engine_spec() -> Value {
        json!({
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}
            ],
            "linux": {"maskedPaths": ["/proc/kcore"]}
        })
    }

    fn destinations(spec: &Value) -> Vec<String> {
        spec["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| m["destination"].as_str().expect("dest").to_owned())
            .collect()
    }

    #[test]
    fn binds_are_appended_after_the_engines_mounts() {
        let root = rootfs();
        let mp = Path::new("/var/lib/proclens");
        let mut spec = engine_spec();
        let before = spec.clone();
        let note = add_binds(&mut spec, &ctx(&root, mp)).expect("edits");
        assert_eq!(note, "bound 9 files from /var/lib/proclens");
        let dests = destinations(&spec);
        assert_eq!(dests[..4], destinations(&before)[..]);
        let added: Vec<&str> = dests[4..].iter().map(String::as_str).collect();
        let want: Vec<&str> = via_runc().map(|b| b.target).collect();
        assert_eq!(added, want);
        let meminfo = &spec["mounts"][4];
        assert_eq!(meminfo["source"], "/var/lib/proclens/proc/meminfo");
        assert_eq!(meminfo["type"], "bind");
        assert_eq!(
            meminfo["options"],
            json!(["rbind", "ro", "nosuid", "nodev", "noexec"])
        );
        // Everything else untouched.
        assert_eq!(spec["linux"], before["linux"]);
        assert_eq!(spec["root"], before["root"]);
    }

    #[test]
    fn binds_the_engine_made_are_left_alone_and_editing_twice_changes_nothing() {
        let root = rootfs();
        let mp = Path::new("/mp");
        let mut spec = engine_spec();
        spec["mounts"]
            .as_array_mut()
            .expect("array")
            .push(json!({"destination": "/proc/meminfo/", "type": "bind", "source": "/elsewhere"}));
        let note = add_binds(&mut spec, &ctx(&root, mp)).expect("edits");
        assert_eq!(
            note,
            "bound 8 files from /mp; 1 already mounted by the engine"
        );
        let once = spec.clone();
        let note = add_binds(&mut spec, &ctx(&root, mp)).expect("edits");
        assert_eq!(
            note,
            "bound 0 files from /mp; 9 already mounted by the engine"
        );
        assert_eq!(spec, once);
    }

    #[test]
    fn targets_without_procfs_or_sysfs_are_skipped() {
        let root = rootfs();
        let mp = Path::new("/mp");
        // No sysfs; a tmpfs over /sys/devices.
        let mut spec = json!({"mounts": [
            {"destination": "/proc", "type": "proc"},
            {"destination": "/sys/devices", "type": "tmpfs"}
        ]});
        let note = add_binds(&mut spec, &ctx(&root, mp)).expect("edits");
        assert_eq!(
            note,
            "bound 7 files from /mp; skipped /sys/devices/system/cpu (on a \"tmpfs\" mount at \
             /sys/devices, not sysfs), /sys/block (no sysfs mount holds it)"
        );
        // A later mount at /sys hides the tmpfs below it.
        let mut spec = json!({"mounts": [
            {"destination": "/sys/devices", "type": "tmpfs"},
            {"destination": "/sys", "type": "sysfs"}
        ]});
        let note = add_binds(&mut spec, &ctx(&root, mp)).expect("edits");
        assert!(note.starts_with("bound 2 files"), "{note}");
        assert_eq!(
            add_binds(&mut json!({}), &ctx(&root, mp)).map(|n| n.starts_with("bound 0 files")),
            Ok(true)
        );
    }

    #[test]
    fn a_mount_point_leading_out_of_the_rootfs_is_skipped() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("proc")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root.path().join("sys")).expect("symlink");
        let mut spec = engine_spec();
        let note = add_binds(&mut spec, &ctx(&root, Path::new("/mp"))).expect("edits");
        assert!(note.starts_with("bound 7 files"), "{note}");
        assert!(note.contains("outside the rootfs"), "{note}");
    }

    #[test]
    fn malformed_mounts_fail_the_edit() {
        let root = rootfs();
        for bad in [json!({"mounts": {}}), json!({"mounts": [{"type": "proc"}]})] {
            let mut spec = bad.clone();
            assert!(add_binds(&mut spec, &ctx(&root, Path::new("/mp"))).is_err());
        }
    }

    fn bundle(config: &[u8], mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("rootfs/proc")).expect("rootfs");
        let path = dir.path().join("config.json");
        fs::write(&path, config).expect("config");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }

    /// docker 20.10.24's config.json for `docker run debian` (its default
    /// profile: everything refused but a list, sysinfo in the list).
    fn docker_spec() -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/oci/docker-20.10.24-config.json");
        serde_json::from_slice(&fs::read(&path).expect("fixture")).expect("json")
    }

    fn listening<'a>(root: &tempfile::TempDir, socket: &'a Path) -> Bundle<'a> {
        Bundle {
            seccomp: Ok(socket),
            ..ctx(root, socket)
        }
    }

    /// The rules of `spec`'s profile that name sysinfo: (action, names).
    fn sysinfo_rules(spec: &Value) -> Vec<(String, usize)> {
        spec["linux"]["seccomp"]["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .filter(|r| {
                r["names"]
                    .as_array()
                    .expect("names")
                    .iter()
                    .any(|n| n == "sysinfo")
            })
            .map(|r| {
                (
                    r["action"].as_str().expect("action").to_owned(),
                    r["names"].as_array().expect("names").len(),
                )
            })
            .collect()
    }

    #[test]
    fn dockers_profile_notifies_sysinfo_and_keeps_every_other_rule() {
        let root = tempfile::tempdir().expect("rootfs");
        let socket = Path::new("/run/proclens/seccomp.sock");
        let mut spec = docker_spec();
        let before = spec.clone();
        let note = notify_sysinfo(&mut spec, &listening(&root, socket)).expect("edits");
        assert_eq!(note, "sysinfo(2) notified to /run/proclens/seccomp.sock");
        let p = &spec["linux"]["seccomp"];
        assert_eq!(p["listenerPath"], "/run/proclens/seccomp.sock");
        assert_eq!(
            p["defaultAction"],
            before["linux"]["seccomp"]["defaultAction"]
        );
        assert_eq!(sysinfo_rules(&spec), [("SCMP_ACT_NOTIFY".to_owned(), 1)]);
        // The allow list lost sysinfo and nothing else; every other rule
        // is as it was, in its place.
        let old = before["linux"]["seccomp"]["syscalls"]
            .as_array()
            .expect("rules");
        let new = p["syscalls"].as_array().expect("rules");
        assert_eq!(new.len(), old.len() + 1);
        for (o, n) in old.iter().zip(new) {
            let mut o = o.clone();
            if let Some(names) = o["names"].as_array_mut() {
                names.retain(|n| n != "sysinfo");
            }
            assert_eq!(&o, n);
        }
        // Nothing outside the profile moved.
        let mut rest = spec.clone();
        rest["linux"]["seccomp"] = Value::Null;
        let mut old_rest = before.clone();
        old_rest["linux"]["seccomp"] = Value::Null;
        assert_eq!(rest, old_rest);
        // Editing again changes nothing (a second create of one bundle).
        let again = spec.clone();
        let note = notify_sysinfo(&mut spec, &listening(&root, socket)).expect("edits");
        assert_eq!(
            note,
            "sysinfo(2) left to the kernel (the profile has a listener)"
        );
        assert_eq!(spec, again);
    }

    #[test]
    fn sysinfo_is_left_alone_where_the_profile_or_the_daemon_says_so() {
        let root = tempfile::tempdir().expect("rootfs");
        let socket = Path::new("/s");
        let cases = [
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO"}]}),
                "sysinfo(2) left to the profile, which gives it SCMP_ACT_ERRNO",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["sysinfo"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["sysinfo", "uname"], "action": "SCMP_ACT_TRACE"}]}),
                "sysinfo(2) left to the profile, which gives it SCMP_ACT_TRACE",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_KILL", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
                "sysinfo(2) left to the profile, which gives it SCMP_ACT_KILL",
            ),
            (
                json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
                "sysinfo(2) left to the kernel (the profile has a listener)",
            ),
        ];
        for (profile, want) in cases {
            let mut spec = json!({"linux": {"seccomp": profile}});
            let before = spec.clone();
            let note = notify_sysinfo(&mut spec, &listening(&root, socket)).expect("runs");
            assert_eq!(note, want);
            assert_eq!(spec, before);
        }
        // No daemon at the socket: nothing changes, whatever the profile.
        let mut spec = docker_spec();
        let before = spec.clone();
        let b = Bundle {
            seccomp: Err("/s: ECONNREFUSED".to_owned()),
            ..ctx(&root, socket)
        };
        let note = notify_sysinfo(&mut spec, &b).expect("runs");
        assert_eq!(note, "sysinfo(2) left to the kernel (/s: ECONNREFUSED)");
        assert_eq!(spec, before);
        // A malformed profile is an error (and so no edit is written).
        for bad in [
            json!("x"),
            json!({"syscalls": []}),
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}),
        ] {
            let mut spec = json!({"linux": {"seccomp": bad}});
            assert!(
                notify_sysinfo(&mut spec, &listening(&root, socket)).is_err(),
                "{spec}"
            );
        }
    }

    #[test]
    fn no_profile_gets_one_of_the_sysinfo_rule_alone() {
        let root = tempfile::tempdir().expect("rootfs");
        let socket = Path::new("/s");
        for linux in [json!({}), json!({"seccomp": null})] {
            let mut spec = json!({"linux": linux});
            notify_sysinfo(&mut spec, &listening(&root, socket)).expect("edits");
            assert_eq!(
                spec["linux"]["seccomp"],
                json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/s",
                       "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}]})
            );
        }
        // A rule of sysinfo alone goes; one with others loses sysinfo.
        let mut spec = json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["sysinfo"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["read", "sysinfo"], "action": "SCMP_ACT_LOG"}]}}});
        notify_sysinfo(&mut spec, &listening(&root, socket)).expect("edits");
        assert_eq!(
            spec["linux"]["seccomp"]["syscalls"],
            json!([{"names": ["read"], "action": "SCMP_ACT_LOG"},
                   {"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}])
        );
    }

    #[test]
    fn the_listener_probe_tells_a_live_socket_from_a_dead_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        assert!(skip::listens(&path).is_err(), "no socket");
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        assert_eq!(skip::listens(&path), Ok(()));
        drop(l);
        // The file is left, nobody listens (a daemon that was SIGKILLed).
        assert!(path.exists());
        let e = skip::listens(&path).expect_err("dead socket");
        assert!(e.contains("ECONNREFUSED"), "{e}");
    }

    #[test]
    fn opted_out_or_not_served_leaves_the_file_alone() {
        let mp = tempfile::tempdir().expect("mountpoint");
        for (config, want) in [
            (
                r#"{"root":{"path":"rootfs"},"annotations":{"io.proclens.disable":"true"}}"#,
                Outcome::OptedOut,
            ),
            (
                r#"{"root":{"path":"rootfs"},"mounts":[{"destination":"/proc","type":"proc"}]}"#,
                Outcome::NotServing("not a FUSE mount (is proclens.service running?)".into()),
            ),
        ] {
            let b = bundle(config.as_bytes(), 0o600);
            assert_eq!(edit_bundle(b.path(), mp.path(), None).expect("runs"), want);
            assert_eq!(
                fs::read_to_string(b.path().join("config.json")).expect("read"),
                config
            );
        }
    }

    #[test]
    fn unreadable_configs_are_errors_and_stay_as_they_were() {
        let mp = Path::new("/nonexistent");
        for config in [&b"not json"[..], b"[1, 2]", b"{\"root\": 3"] {
            let b = bundle(config, 0o644);
            assert!(edit_bundle(b.path(), mp, None).is_err(), "{config:?}");
            assert_eq!(
                fs::read(b.path().join("config.json")).expect("read"),
                config
            );
        }
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            edit_bundle(empty.path(), mp, None),
            Err(Error::Read { .. })
        ));
    }

    #[test]
    fn the_file_is_replaced_whole_with_its_mode() {
        let b = bundle(b"{}", 0o640);
        let path = b.path().join("config.json");
        let old = fs::metadata(&path).expect("stat");
        let inode = old.ino();
        replace(&path, b"{\"x\":1}", &old).expect("replace");
        let new = fs::metadata(&path).expect("stat");
        assert_eq!(fs::read(&path).expect("read"), b"{\"x\":1}");
        assert_eq!(new.mode() & 0o7777, 0o640);
        assert_ne!(new.ino(), inode, "a new file, renamed over the old one");
        let left: Vec<_> = fs::read_dir(b.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }

    #[test]
    fn the_line_goes_to_runcs_log_in_its_format() {
        let inv = edit_of(&["--log", "/l.json", "--log-format=json", "create", "id"]);
        assert_eq!(
            inv.log,
            Log {
                file: Some("/l.json".into()),
                json: true
            }
        );
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_160_000);
        assert_eq!(
            inv.log.line(Level::Warning, "a \"b\"", t),
            "{\"level\":\"warning\",\"msg\":\"proclens-runc: a \\\"b\\\"\",\"time\":\"2026-12-01T21:20:00Z\"}\n"
        );
        let text = edit_of(&["--log=/l", "create", "id"]).log;
        assert_eq!(
            text.line(Level::Info, "bound 9 files", t),
            "time=\"2026-12-01T21:20:00Z\" level=info msg=\"proclens-runc: bound 9 files\"\n"
        );
        assert_eq!(
            Log::default().line(Level::Info, "bound 9 files", t),
            "proclens-runc: bound 9 files\n"
        );
        assert_eq!(rfc3339_utc(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a century year divisible by 400).
        let leap = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339_utc(leap), "2000-02-29T01:02:03Z");
    }

    #[test]
    fn the_wrapper_is_known_by_its_name() {
        assert!(is_wrapper(OsStr::new("proclens-runc")));
        assert!(is_wrapper(OsStr::new("/usr/bin/proclens-runc")));
        assert!(!is_wrapper(OsStr::new("/usr/bin/proclens")));
        assert!(!is_wrapper(OsStr::new("proclens-runc-old")));
    }

    #[test]
    fn the_real_runtime_is_never_the_wrapper() {
        assert_eq!(
            real_runtime(Some("/opt/crun".into())),
            Ok(PathBuf::from("/opt/crun"))
        );
        // PATH=first:second, where first/runc is the wrapper itself (a
        // hard link to it) and second/runc the real one.
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        for d in [&first, &second] {
            fs::create_dir(d).expect("mkdir");
            fs::write(d.join("runc"), "#!/bin/sh\n").expect("write");
            fs::set_permissions(d.join("runc"), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let me = fs::metadata(first.join("runc")).expect("stat");
        let me = Some((me.dev(), me.ino()));
        let path = std::env::join_paths([&first, &second]).expect("join");
        assert_eq!(
            find_in_path(OsStr::new("runc"), &path, me),
            Some(second.join("runc"))
        );
        assert_eq!(
            find_in_path(OsStr::new("runc"), &path, None),
            Some(first.join("runc"))
        );
        fs::remove_file(second.join("runc")).expect("rm");
        assert_eq!(find_in_path(OsStr::new("runc"), &path, me), None);
    }
}
