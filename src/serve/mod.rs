//! The front ends that answer readers: the FUSE file system (`fuse`, the
//! only code that knows fuser), the PSI triggers written through it
//! (`psi`), sysinfo(2) over seccomp (`sysinfo`) and the counters they keep
//! (`metrics`); `isize` is what FUSE's i_size is known to be. They resolve
//! nothing
//! and render nothing themselves: that is `container`.

pub mod fuse;
pub mod isize;
pub mod metrics;
pub mod psi;
pub mod sysinfo;
