//! /proc/pressure/{cpu,memory,io}: the container's own pressure stall
//! file, from its cgroup (kernel/sched/psi.c psi_show writes both), byte for
//! byte once it has been checked to be one.

use super::RenderError;
use crate::source::cgroup::parse;

/// The cgroup's `<res>.pressure` text, as the container's
/// `/proc/pressure/<res>`; an error when it is not a pressure file (the
/// reader then gets the host's).
pub fn render(cgroup: &str) -> Result<String, RenderError> {
    parse::psi(cgroup).map_err(|e| RenderError(format!("not a pressure file: {e}")))?;
    Ok(cgroup.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captured_cgroup_file_passes_through_byte_for_byte() {
        // A hybrid host's unified cgroup under memory pressure and a pure
        // v2 cgroup (tests/fixtures/psi-v1, tests/fixtures/v2).
        for text in [
            include_str!("../../tests/fixtures/psi-v1/root/sys/fs/cgroup/unified/proclens-psi/memory.pressure"),
            include_str!("../../tests/fixtures/psi-v1/root/sys/fs/cgroup/unified/proclens-psi/cpu.pressure"),
            include_str!("../../tests/fixtures/v2/root/sys/fs/cgroup/proclens-fixture/io.pressure"),
        ] {
            assert_eq!(render(text).as_deref(), Ok(text));
        }
        assert!(render("").is_err());
        assert!(render("some avg10=0.00\n").is_err());
    }
}
