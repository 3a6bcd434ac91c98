//! What the supervisor and its workers agree on: how a worker is told its
//! mode and its parent, where its control socket is, and the mount source
//! that names this daemon's filesystem.

use std::ffi::OsString;
use std::path::Path;

/// The worker's end of the control socket.
pub const CTL_FD: i32 = 3;
/// Set by the supervisor in a worker's environment: `fresh` or `successor`.
pub const ENV_MODE: &str = "PROCLENS_WORKER";
/// The supervisor's pid, so a worker started after its parent died exits.
pub const ENV_PARENT: &str = "PROCLENS_SUPERVISOR_PID";

/// The mount source of the filesystem at `mp`: it names the mount point, so
/// that recovery only ever touches the mounts of this daemon's filesystem,
/// wherever a container bound them.
pub fn fsname(mp: &Path) -> OsString {
    let mut s = OsString::from("proclens:");
    s.push(mp.as_os_str());
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// First start, or a restart after the worker died: take the mount
    /// point (replacing a dead mount there) and re-attach dead mounts.
    Fresh,
    /// A reload: mount beside the live predecessor, take its state (on
    /// stdin), move every mount of its connection to ours.
    Successor,
}
