//! What container engines plug into: the one list of binds (`binds`) and
//! the helpers built on it (the OCI hook, `ocihook`). Runs in the engine's
//! processes, never in the daemon; knows the mount only as a path.

pub mod binds;
pub mod ocihook;
