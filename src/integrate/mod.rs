//! What container engines plug into: the one list of binds (`binds`), when
//! proclens stays out of a container (`skip`), and the helpers built on
//! them: the OCI hook (`ocihook`) and the runtime wrapper `proclens-runc`
//! (`runc`). Runs in the engine's processes, never in the daemon; knows the
//! mount only as a path.

pub mod binds;
pub mod ocihook;
pub mod runc;
pub mod skip;
