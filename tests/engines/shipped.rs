//! The settings the package ships (`packaging/`), pointed at this test's
//! binary and mount.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::{proclens_bin, read, seccomp_socket_of};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub fn packaging(rel: &str) -> String {
    read(Path::new(REPO).join("packaging").join(rel))
}

/// `packaging/docker/daemon.json` with its runtime's path replaced by
/// `wrapper`, registered once per (name, mountpoint) with the mountpoint
/// and the daemon's seccomp socket in `runtimeArgs` (the shipped file
/// uses the defaults).
pub fn docker_daemon_json(wrapper: &Path, runtimes: &[(&str, &Path)]) -> Value {
    let shipped: Value =
        serde_json::from_str(&packaging("docker/daemon.json")).expect("daemon.json");
    let proto = &shipped["runtimes"]["proclens"];
    assert_eq!(
        proto["path"], "/usr/bin/proclens-runc",
        "shipped daemon.json: {shipped}"
    );
    let mut table = serde_json::Map::new();
    for (name, mp) in runtimes {
        let mut r = proto.clone();
        r["path"] = json!(wrapper);
        r["runtimeArgs"] = json!([
            format!("--proclens-mountpoint={}", mp.display()),
            format!(
                "--proclens-seccomp-socket={}",
                seccomp_socket_of(mp).display()
            ),
        ]);
        table.insert((*name).to_owned(), r);
    }
    let mut config = shipped.clone();
    config["runtimes"] = Value::Object(table);
    config
}

/// `text` with every `from` replaced, asserting there was at least one.
pub fn replaced(text: &str, from: &str, to: &str, what: &str) -> String {
    assert!(
        text.contains(from),
        "{what} does not mention {from}:\n{text}"
    );
    text.replace(from, to)
}

/// `packaging/oci/proclens.json` for the hooks directory: the binary
/// under test, serving from `mp`.
pub fn hook_json(mp: &Path) -> String {
    let mut hook: Value = serde_json::from_str(&packaging("oci/proclens.json")).expect("hook json");
    hook["hook"]["path"] = json!(proclens_bin());
    let args = hook["hook"]["args"].as_array_mut().expect("hook args");
    let i = args
        .iter()
        .position(|a| a == "--mountpoint")
        .expect("--mountpoint in the hook's args");
    args[i + 1] = json!(mp);
    hook.to_string()
}
