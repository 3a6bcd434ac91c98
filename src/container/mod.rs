//! Who is reading and what their container is: a reader's pid resolved to
//! its cgroups and container init (`caller`), the state kept per container
//! (`cputime`, `loadavg`), and the view that renders a file for a reader
//! (`view`). Uses `source` and `render`; never the front ends above it.

pub mod caller;
pub mod cputime;
pub mod loadavg;
#[cfg(debug_assertions)]
pub mod testhook;
pub mod unit;
pub mod vfile;
pub mod view;

pub use vfile::VFile;
