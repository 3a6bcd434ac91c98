//! Test-only fault injection, compiled into debug builds only (the module
//! and its one call site in `view.rs` are `#[cfg(debug_assertions)]`), so a
//! release build has no way to reach it.
//!
//! `PROCLENS_TEST_PANIC=<comm>` in the daemon's environment makes every
//! rendering for a reader whose `/proc/<pid>/comm` is `<comm>` panic, which
//! `tests/restart.rs` uses to prove that one bad rendering is contained.

use std::sync::OnceLock;

/// Panics when the reader `pid`'s command name is the one asked for.
pub fn panic_if_asked(file: &str, pid: u32) {
    static COMM: OnceLock<Option<String>> = OnceLock::new();
    let Some(want) = COMM.get_or_init(|| {
        std::env::var("PROCLENS_TEST_PANIC")
            .ok()
            .filter(|s| !s.is_empty())
    }) else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() == want {
        panic!("PROCLENS_TEST_PANIC: rendering {file} for pid {pid} ({want})");
    }
}
