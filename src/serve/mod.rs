//! The front ends that answer readers: the FUSE file system (`fuse`, the
//! only code that knows fuser) and the counters they keep (`metrics`).
//! They resolve nothing and render nothing themselves: that is `container`.

pub mod fuse;
pub mod metrics;
pub mod sysinfo;
