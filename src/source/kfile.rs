//! Reading kernel-generated text files (procfs, cgroupfs, sysfs) on the
//! read path. Their size is unknown until read (stat says 0 or 4096), so
//! `std::fs::read_to_string`'s size hint is an fstat that tells nothing:
//! one of five syscalls per file (open, fstat, two reads, close), saved
//! here by reading into a buffer sized for such files.

use std::io::{ErrorKind, Read};
use std::path::Path;

/// Most such files fit; bigger ones (cpuinfo of a large host) grow the
/// buffer as `read_to_end` would.
const FIRST_READ: usize = 4096;

/// The whole file as UTF-8 text.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(FIRST_READ);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let len = buf.len();
        // Read into a zeroed tail: no unsafe, and zeroing 4 KiB is cheap.
        buf.resize(buf.capacity(), 0);
        match f.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                break;
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_small_and_large_files_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0,
            1,
            FIRST_READ - 1,
            FIRST_READ,
            FIRST_READ + 1,
            5 * FIRST_READ + 7,
        ] {
            let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let p = dir.path().join(format!("f{len}"));
            std::fs::write(&p, &text).expect("write");
            assert_eq!(read_text(&p).expect("read"), text, "length {len}");
        }
        let missing = read_text(&dir.path().join("nope")).expect_err("missing");
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).expect("write");
        let bad = read_text(&dir.path().join("bin")).expect_err("not utf-8");
        assert_eq!(bad.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn reads_procfs_like_std() {
        let p = Path::new("/proc/self/status");
        let ours = read_text(p).expect("read");
        assert!(
            ours.starts_with("Name:") && ours.contains("\nPid:"),
            "{ours}"
        );
        let cpuinfo = Path::new("/proc/cpuinfo");
        assert_eq!(
            read_text(cpuinfo).expect("read").lines().next(),
            std::fs::read_to_string(cpuinfo)
                .expect("read")
                .lines()
                .next()
        );
    }
}
