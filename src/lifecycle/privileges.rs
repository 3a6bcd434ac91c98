//! The capabilities the daemon keeps, and dropping all the others.

use crate::source::caps;
use anyhow::{bail, Context, Result};

/// CAP_SYS_ADMIN (mount, unmount, open_tree, move_mount, and setns into a
/// container's mount namespace), CAP_SYS_CHROOT (setns into a mount
/// namespace requires it too, and re-pointing chroots into a container's
/// root on its own thread) and CAP_SYS_PTRACE (reading `/proc/<pid>/ns/*`
/// and `/proc/<pid>/root` of other users' processes) are all the daemon
/// needs. (Numbers from include/uapi/linux/capability.h.)
const KEEP_CAPS: [u32; 3] = [CAP_SYS_CHROOT, CAP_SYS_PTRACE, CAP_SYS_ADMIN];
const CAP_SYS_CHROOT: u32 = 18;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
/// Kept permitted but not effective: a thread raises it only around the
/// open(2) of a pressure file for a PSI trigger of a reader that has it
/// (the kernel judges a trigger by its file's opener: before Linux 6.5
/// every write-open of a pressure file needs it, since then windows that
/// are not multiples of 2 s do), so that such a reader's trigger is as on
/// the kernel's own file. Nothing else ever runs with it. Kept only when
/// the daemon was given it: without, every trigger is an unprivileged
/// opener's.
const PERMITTED_ONLY: [u32; 1] = [caps::CAP_SYS_RESOURCE];

/// Drops every other capability from this thread's sets and the bounding set
/// before any thread starts (threads inherit them), and forbids regaining
/// privileges through exec. Idempotent: a worker, or the supervisor after
/// re-executing itself, runs it again with the bounding set already
/// reduced (dropping from it again would need CAP_SETPCAP).
pub fn drop_capabilities() -> Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .context("reading /proc/sys/kernel/cap_last_cap")?
        .trim()
        .parse()
        .context("parsing /proc/sys/kernel/cap_last_cap")?;
    // SAFETY (both prctl calls): integer arguments only.
    let in_bounding = |cap: u32| unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } == 1;
    let kept = |c: &u32| KEEP_CAPS.contains(c) || PERMITTED_ONLY.contains(c);
    for cap in (0..=last).filter(|c| !kept(c) && in_bounding(*c)) {
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            bail!("PR_CAPBSET_DROP {cap}: {}", std::io::Error::last_os_error());
        }
    }
    // PERMITTED_ONLY only where we hold it.
    let mut permitted = Vec::with_capacity(PERMITTED_ONLY.len());
    for cap in PERMITTED_ONLY {
        if !caps::permitted(cap).unwrap_or(false) {
            // Not an error: a bounding set without it (some CI sandboxes,
            // a unit that leaves it out) only makes every trigger an
            // unprivileged one (at least 2 s windows).
            log::info!(
                "capability {cap} is not in our permitted set: PSI triggers are made as an unprivileged reader's"
            );
            continue;
        }
        permitted.push(cap);
    }
    caps::set_exactly(&KEEP_CAPS, &permitted).context("capset")?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
