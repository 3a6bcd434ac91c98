//! The process tree of `proclens mount`: the supervisor systemd tracks
//! (`supervisor`), the worker that serves (`worker`) and what they agree on
//! (`protocol`), the checks before serving (`mountpoint`, `privileges`),
//! re-pointing containers' mounts at a new connection (`remount`) and
//! telling systemd how it goes (`sdnotify`). It starts the front ends in
//! `serve`; it never renders anything itself.

pub mod mountpoint;
pub mod privileges;
pub mod protocol;
pub mod remount;
pub mod sdnotify;
pub mod supervisor;
pub mod worker;
