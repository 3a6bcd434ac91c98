//! What the kernel says: cgroup control files, the host's own /proc and
//! /sys files and clocks, and a process's `/proc/<pid>` files. Readers here
//! take a filesystem root (`/`, or a captured fixture tree) and parse text;
//! nothing here knows about containers, renderings or FUSE.

pub mod caps;
pub mod cgroup;
pub mod host;
pub mod kept;
pub mod kfile;
pub mod proc;
