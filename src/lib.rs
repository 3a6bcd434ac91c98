//! proclens: container-aware /proc and /sys/devices/system/cpu over FUSE.
//!
//! The modules are layers, from the kernel up; a module only ever uses the
//! layers below it (`tests/layers.rs` checks this on every `use crate::`):
//!
//! | layer | what it is for |
//! |---|---|
//! | [`source`] | what the kernel says: cgroup files, host files, `/proc/<pid>` files |
//! | [`render`] | pure functions: numbers in, file text out |
//! | [`container`] | who is reading, what their container is, its state, the view that ties them |
//! | [`integrate`] | what engines plug into: the bind list, the OCI hook, the runtime wrapper |
//! | [`serve`] | the front ends that answer readers (the FUSE file system) and their counters |
//! | [`lifecycle`] | the process tree: supervisor, worker, re-pointing mounts, sd_notify |
//! | [`cli`] | the command line: arguments, `show`, `diff`, `status` |
pub mod source;

pub mod render;

pub mod container;

pub mod integrate;

pub mod serve;

pub mod lifecycle;

pub mod cli;
