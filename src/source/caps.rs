//! Capabilities of the calling thread: Linux keeps them per thread, so one
//! thread can open a file with a capability in its effective set, or
//! without it, while the others keep theirs (capabilities(7)). A file
//! remembers the credentials of its opener (`f_cred`), which is how the
//! kernel decides what a later write to it may do.

use std::io;

/// Override file read, write and execute permission checks.
pub const CAP_DAC_OVERRIDE: u32 = 1;
/// Among others, PSI triggers with windows that are not a multiple of
/// 2 s (kernel/sched/psi.c psi_trigger_create, since Linux 6.5; before,
/// any write-open of a pressure file).
pub const CAP_SYS_RESOURCE: u32 = 24;

/// Whether the capability mask `mask` (as `/proc/<pid>/status` `CapEff:`
/// shows it) holds `cap`.
pub fn has(mask: u64, cap: u32) -> bool {
    cap < 64 && mask & (1 << cap) != 0
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

fn get() -> io::Result<[Data; 2]> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget fills two data words we own for this thread (pid 0).
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn set(data: &[Data; 2]) -> io::Result<()> {
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads a valid header and two data words; pid 0 is
    // the calling thread alone.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets this thread's capabilities to exactly `effective` and `permitted`
/// (the effective ones are permitted too), with nothing inheritable.
/// Only lowers: a capability not permitted now is refused (EPERM).
pub fn set_exactly(effective: &[u32], permitted: &[u32]) -> io::Result<()> {
    let mut data = [Data::default(); 2];
    for &cap in effective {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective |= bit;
        data[word].permitted |= bit;
    }
    for &cap in permitted {
        data[(cap / 32) as usize].permitted |= 1u32 << (cap % 32);
    }
    set(&data)
}

/// Runs `f` with `cap` in this thread's effective set when `on`, and
/// without it when not, then restores the set. Raising needs `cap` in the
/// permitted set; lowering always works.
pub fn with_effective<T>(cap: u32, on: bool, f: impl FnOnce() -> T) -> io::Result<T> {
    let before = get()?;
    let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
    let mut want = before;
    if on {
        want[word].effective |= bit;
    } else {
        want[word].effective &= !bit;
    }
    let changed = want[word].effective != before[word].effective;
    if changed {
        set(&want)?;
    }
    let out = f();
    if changed {
        set(&before)?;
    }
    Ok(out)
}

/// Whether this thread has `cap` in its effective set.
pub fn effective(cap: u32) -> io::Result<bool> {
    let d = get()?;
    Ok(d[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0)
}

/// Whether this thread has `cap` in its permitted set (it may raise it).
pub fn permitted(cap: u32) -> io::Result<bool> {
    let d = get()?;
    Ok(d[(cap / 32) as usize].permitted & (1 << (cap % 32)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert!(has(1 << 24, CAP_SYS_RESOURCE));
        assert!(!has(!(1 << 24), CAP_SYS_RESOURCE));
        assert!(has(0x1ff_ffff_ffff, CAP_DAC_OVERRIDE));
        assert!(!has(u64::MAX, 64));
    }

    #[test]
    fn a_capability_is_dropped_for_the_call_and_comes_back() {
        // On a thread of its own: the set is per thread, and the test
        // harness's other threads must not see the change.
        std::thread::spawn(|| {
            let had = effective(CAP_SYS_RESOURCE).expect("capget");
            let inside = with_effective(CAP_SYS_RESOURCE, false, || {
                effective(CAP_SYS_RESOURCE).expect("capget")
            })
            .expect("capset");
            assert!(!inside, "dropped for the call");
            assert_eq!(effective(CAP_SYS_RESOURCE).expect("capget"), had);
            if had {
                // And raised again from the permitted set.
                let back = with_effective(CAP_SYS_RESOURCE, false, || {
                    with_effective(CAP_SYS_RESOURCE, true, || {
                        effective(CAP_SYS_RESOURCE).expect("capget")
                    })
                })
                .expect("capset")
                .expect("capset");
                assert!(back);
            }
        })
        .join()
        .expect("thread");
    }
}
