//! Inputs that once crashed a fuzz target (fuzz/regressions/<target>/, kept
//! verbatim from fuzz/artifacts), fed to the same parsers: they must return,
//! an error or a value, never panic.

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
}

#[test]
fn proc_pid_stat_crashers_are_errors() {
    // Both crashed procfs-core's Stat parser (slice out of bounds).
    for data in inputs("proc_pid") {
        let text = String::from_utf8_lossy(&data[1..]);
        assert!(
            proclens::source::proc::parse_stat(&text).is_err(),
            "{text:?}"
        );
    }
}

#[test]
fn mountinfo_crashers_parse_without_overflow() {
    // Both had an octal escape above \377 in a mount point.
    for data in inputs("mountinfo") {
        let text = String::from_utf8_lossy(&data);
        let _ = proclens::source::cgroup::mounts::parse_mountinfo(&text);
    }
}
