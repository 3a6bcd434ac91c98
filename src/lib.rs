//! proclens: container-aware /proc and /sys/devices/system/cpu over FUSE.
pub mod binds;
pub mod caller;
pub mod cgroup;
pub mod cli;
pub mod cputime;
pub mod daemon;
pub mod diff;
pub mod fs;
pub mod host;
pub mod kfile;
pub mod loadavg;
pub mod metrics;
pub mod ocihook;
pub mod remount;
pub mod render;
pub mod sdnotify;
#[cfg(debug_assertions)]
pub mod testhook;
pub mod view;
pub mod worker;
