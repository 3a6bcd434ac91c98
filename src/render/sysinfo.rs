//! `struct sysinfo` (include/uapi/linux/sysinfo.h, kernel/sys.c
//! do_sysinfo) from the container's numbers, as the bytes the kernel
//! would copy to the caller: the answer to a `sysinfo(2)` call that
//! seccomp handed to the daemon (`serve/sysinfo.rs`).

use super::loadavg::FSHIFT;

/// The kernel's loads are its fixed-point averages shifted from FSHIFT to
/// SI_LOAD_SHIFT (16) bits.
const SI_LOAD_SHIFT: u32 = 16;

/// What a container's `sysinfo(2)` says, in bytes and seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sysinfo {
    /// Seconds since the container's init started, rounded up as the
    /// kernel rounds its own uptime.
    pub uptime_ns: u64,
    /// The load averages in the kernel's fixed point (FSHIFT bits).
    pub loads: [u64; 3],
    pub totalram: u64,
    pub freeram: u64,
    pub sharedram: u64,
    pub bufferram: u64,
    pub totalswap: u64,
    pub freeswap: u64,
    /// Tasks (threads) of the container.
    pub procs: u64,
}

/// The kernel's `struct sysinfo` on 64-bit Linux: 112 bytes, every field
/// native-endian; the padding after `procs` and after `mem_unit` is zero.
pub const SIZE: usize = 112;

impl Sysinfo {
    /// The bytes of `struct sysinfo` with `mem_unit` 1.
    pub fn encode(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        let ns = self.uptime_ns;
        put(0, ns / 1_000_000_000 + u64::from(ns % 1_000_000_000 != 0));
        for (i, l) in self.loads.iter().enumerate() {
            put(8 + 8 * i, l << (SI_LOAD_SHIFT - FSHIFT));
        }
        put(32, self.totalram);
        put(40, self.freeram);
        put(48, self.sharedram);
        put(56, self.bufferram);
        put(64, self.totalswap);
        put(72, self.freeswap);
        // procs is an unsigned short; totalhigh and freehigh (88, 96) are 0.
        let procs = self.procs.min(u64::from(u16::MAX)) as u16;
        b[80..82].copy_from_slice(&procs.to_ne_bytes());
        b[104..108].copy_from_slice(&1u32.to_ne_bytes());
        b
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_kernels() {
        // libc's struct (glibc's) carries the kernel's fields at the kernel's
        // offsets; ours must read back through it field by field.
        assert!(std::mem::size_of::<libc::sysinfo>() >= SIZE);
        let s = Sysinfo {
            uptime_ns: 41_000_000_001,
            loads: [328, 2048, 0],
            totalram: 256 << 20,
            freeram: 200 << 20,
            sharedram: 4096,
            bufferram: 0,
            totalswap: 64 << 20,
            freeswap: 32 << 20,
            procs: 70_000,
        };
        let bytes = s.encode();
        let mut raw = [0u8; std::mem::size_of::<libc::sysinfo>()];
        raw[..SIZE].copy_from_slice(&bytes);
        // SAFETY: libc::sysinfo is plain old data; raw is as large as it.
        let k: libc::sysinfo = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
        // Rounded up, as do_sysinfo does with a nonzero tv_nsec.
        assert_eq!(k.uptime, 42);
        // One sample of 2 tasks from 0 (328 in FSHIFT) is 10496 in 1<<16
        // units; 1.00 is 65536.
        assert_eq!(k.loads, [10496, 65536, 0]);
        assert_eq!(
            (k.totalram, k.freeram, k.sharedram, k.bufferram),
            (256 << 20, 200 << 20, 4096, 0)
        );
        assert_eq!((k.totalswap, k.freeswap), (64 << 20, 32 << 20));
        assert_eq!(k.procs, u16::MAX, "more tasks than an unsigned short holds");
        assert_eq!((k.totalhigh, k.freehigh, k.mem_unit), (0, 0, 1));
    }

    #[test]
    fn the_real_call_fills_the_same_fields() {
        // The host's own answer, through the same layout: MemTotal and the
        // boot-time uptime agree with what the kernel returns.
        // SAFETY: sysinfo writes into a struct we own.
        let mut k: libc::sysinfo = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::sysinfo(&mut k) }, 0);
        assert_eq!(k.mem_unit, 1, "this kernel counts memory in bytes");
        let bytes: [u8; SIZE] = {
            // SAFETY: reading the first SIZE bytes of a struct at least that large.
            let p = std::ptr::addr_of!(k).cast::<u8>();
            let mut b = [0u8; SIZE];
            unsafe { std::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), SIZE) };
            b
        };
        let totalram = u64::from_ne_bytes(bytes[32..40].try_into().expect("8 bytes"));
        assert_eq!(totalram, k.totalram);
        let procs = u16::from_ne_bytes(bytes[80..82].try_into().expect("2 bytes"));
        assert_eq!(procs, k.procs);
        let unit = u32::from_ne_bytes(bytes[104..108].try_into().expect("4 bytes"));
        assert_eq!(unit, k.mem_unit);
    }
}
