//! /proc/meminfo from the memory controller (DESIGN.md section 4, meminfo).

use super::RenderError;
use crate::source::cgroup::Memory;
use std::collections::HashMap;

/// Parses "Key:   123 kB" lines into kB values (lines without a unit, such
/// as HugePages_Total, are kept as plain numbers).
pub fn parse(host: &str) -> HashMap<&str, u64> {
    host.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let v = rest.split_whitespace().next()?.parse().ok()?;
            Some((k, v))
        })
        .collect()
}

pub use crate::source::host::HostMem;

/// (SwapTotal, SwapFree) in kB for the container. Swap the cgroup does not
/// account is unknown: the host's numbers are all there is to show.
pub fn swap_kb(host: &HostMem, mem: &Memory) -> (u64, u64) {
    let host_swap = host.swap_total;
    match mem.swap {
        None => (host_swap, host.swap_free),
        Some(sw) => {
            let t = sw.limit.map_or(host_swap, |l| (l / 1024).min(host_swap));
            (t, t - (sw.usage / 1024).min(t))
        }
    }
}

/// (MemTotal, MemFree) in kB for the container: the limit, clamped to the
/// host (a limit above its memory is no limit), and what the usage leaves
/// of it. `/proc/vmstat`'s `nr_free_pages` says the same in pages.
pub fn total_free_kb(host: &HostMem, mem: &Memory) -> Result<(u64, u64), RenderError> {
    let host_total = host
        .mem_total
        .ok_or_else(|| RenderError("host meminfo has no MemTotal".into()))?;
    let total = mem.limit.map_or(host_total, |l| (l / 1024).min(host_total));
    let used = (mem.usage / 1024).min(total);
    Ok((total, total - used))
}

/// The values proclens writes, in kB, by key (also what `sysinfo(2)` is
/// answered from, so that the two agree).
pub fn virtual_values(
    host: &HostMem,
    mem: &Memory,
) -> Result<Vec<(&'static str, u64)>, RenderError> {
    let kb = |b: Option<u64>| b.unwrap_or(0) / 1024;
    let s = &mem.stat;
    let (total, free) = total_free_kb(host, mem)?;
    // Reclaimable: the page cache on the LRU lists and reclaimable slab,
    // like the kernel's si_mem_available() without the watermark reserve.
    let file_lru = match (s.active_file, s.inactive_file) {
        (Some(a), Some(i)) => Some(a + i),
        _ => s.file.map(|f| f.saturating_sub(s.shmem.unwrap_or(0))),
    };
    let available = (free + kb(file_lru) + kb(s.slab_reclaimable)).min(total);
    let (swap_total, swap_free) = swap_kb(host, mem);
    let slab = kb(s.slab_reclaimable) + kb(s.slab_unreclaimable);
    Ok(vec![
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", available),
        ("Buffers", 0),
        ("Cached", kb(s.file)),
        ("SwapCached", kb(s.swapcached)),
        ("Active", kb(s.active_anon) + kb(s.active_file)),
        ("Inactive", kb(s.inactive_anon) + kb(s.inactive_file)),
        ("Active(anon)", kb(s.active_anon)),
        ("Inactive(anon)", kb(s.inactive_anon)),
        ("Active(file)", kb(s.active_file)),
        ("Inactive(file)", kb(s.inactive_file)),
        ("Unevictable", kb(s.unevictable)),
        ("SwapTotal", swap_total),
        ("SwapFree", swap_free),
        ("Dirty", kb(s.file_dirty)),
        ("Writeback", kb(s.file_writeback)),
        ("AnonPages", kb(s.anon)),
        ("Mapped", kb(s.file_mapped)),
        ("Shmem", kb(s.shmem)),
        ("KReclaimable", kb(s.slab_reclaimable)),
        ("Slab", slab),
        ("SReclaimable", kb(s.slab_reclaimable)),
        ("SUnreclaim", kb(s.slab_unreclaimable)),
        ("KernelStack", kb(s.kernel_stack)),
        ("PageTables", kb(s.pagetables)),
        ("AnonHugePages", kb(s.anon_thp)),
    ])
}

/// The value of `key` among [`virtual_values`] (0 if there is none).
pub fn value(values: &[(&'static str, u64)], key: &str) -> u64 {
    values.iter().find(|(k, _)| *k == key).map_or(0, |v| v.1)
}

/// Replaces the number of a "Key:    123 kB" line, keeping the column where
/// the number ends (the kernel right-aligns it to width 8 after a 16 column
/// label: fs/proc/meminfo.c show_val_kb).
#[cfg(test)]
fn replace_number(line: &str, value: u64) -> String {
    let mut out = String::with_capacity(line.len() + 4);
    write_number(&mut out, line, value);
    out
}

/// [`replace_number`] appended to `out`.
pub(super) fn write_number(out: &mut String, line: &str, value: u64) {
    let Some(colon) = line.find(':') else {
        out.push_str(line);
        return;
    };
    let rest = &line[colon + 1..];
    let num_start = rest.len() - rest.trim_start().len();
    let num_len = rest[num_start..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len() - num_start);
    let end = colon + 1 + num_start + num_len;
    // The label column is what precedes the 8-wide number on the host line;
    // wider numbers grow to the right, as with the kernel's printf.
    let label = (end.saturating_sub(8)).max(colon + 2);
    let mut digits = [0u8; 20];
    let n = decimal(value, &mut digits);
    out.push_str(&line[..=colon]);
    pad(out, label - (colon + 1));
    pad(out, 8usize.saturating_sub(n));
    // ASCII digits.
    out.push_str(std::str::from_utf8(&digits[20 - n..]).unwrap_or("0"));
    out.push_str(&line[end..]);
}

/// `v` in decimal at the end of `buf`; returns how many digits.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return buf.len() - i;
        }
    }
}

fn pad(out: &mut String, n: usize) {
    const SPACES: &str = "                                ";
    let mut n = n;
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

pub fn render(host: &str, mem: &Memory) -> Result<String, RenderError> {
    let values = virtual_values(&HostMem::scan(host), mem)?;
    let mut out = String::with_capacity(host.len() + 64);
    for line in host.lines() {
        // Keys are short: a byte loop finds the colon sooner than a searcher,
        // and comparing first bytes spares most of the string comparisons.
        let key = line
            .bytes()
            .position(|b| b == b':')
            .map_or(line, |i| &line[..i]);
        let first = key.as_bytes().first();
        match values
            .iter()
            .find(|(k, _)| k.as_bytes().first() == first && *k == key)
        {
            Some((_, v)) => write_number(&mut out, line, *v),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_keeps_kernel_columns() {
        assert_eq!(
            replace_number("MemTotal:       24731872 kB", 262144),
            "MemTotal:         262144 kB"
        );
        // A value wider than the column pushes right, with one space kept.
        assert_eq!(
            replace_number("Cached:                0 kB", 123456789),
            "Cached:         123456789 kB"
        );
        // The same as printf-style padding to the host line's columns, for
        // numbers of every length.
        let padded = |line: &str, v: u64| {
            let colon = line.find(':').expect("colon");
            let end = colon
                + 1
                + line[colon + 1..]
                    .find(|c: char| c.is_ascii_digit())
                    .expect("digit")
                + line[colon + 1..].trim_start().len()
                - line[colon + 1..]
                    .trim_start()
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .len();
            let label = end.saturating_sub(8).max(colon + 2);
            format!("{:<label$}{v:>8}{}", &line[..=colon], &line[end..])
        };
        for line in [
            "MemFree:         1234567 kB",
            "Cached:                0 kB",
            "HugePages_Total:       0",
            "VmallocTotal:   34359738367 kB",
        ] {
            for v in [0, 7, 10, 99_999_999, 100_000_000, u64::MAX] {
                assert_eq!(replace_number(line, v), padded(line, v), "{line} {v}");
            }
        }
        assert_eq!(replace_number("no colon", 5), "no colon");
    }
}
