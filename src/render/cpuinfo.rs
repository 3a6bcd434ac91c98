//! /proc/cpuinfo: only the visible CPUs' blocks, renumbered 0..n-1.

use std::fmt::Write as _;

/// `visible` lists host CPU numbers, in the order they become 0..n-1.
pub fn render(host: &str, visible: &[u32]) -> String {
    let n = visible.len();
    let mut blocks: Vec<(Option<u32>, &str)> = Vec::new();
    for block in host.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let cpu = block.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "processor").then(|| v.trim().parse().ok())?
        });
        blocks.push((cpu, block));
    }
    let mut out = String::with_capacity(host.len());
    for (i, host_cpu) in visible.iter().enumerate() {
        let Some((_, block)) = blocks.iter().find(|(c, _)| *c == Some(*host_cpu)) else {
            continue;
        };
        // Only three keys change: everything between them is copied whole.
        let mut copied = 0;
        let mut at = 0;
        for line in block.split_inclusive('\n') {
            let start = at;
            at += line.len();
            let key = match line.as_bytes().first() {
                Some(b'p' | b's' | b'c') => line.split_once(':').map(|(k, _)| k),
                _ => None,
            };
            let value = match key.map(str::trim_end) {
                Some("processor") => i,
                // x86 prints these per package; a container sees one package
                // of n CPUs (arch/x86/kernel/cpu/proc.c show_cpuinfo_core).
                Some("siblings" | "cpu cores") => n,
                _ => continue,
            };
            out.push_str(&block[copied..start]);
            let _ = write!(out, "{}: {value}", key.unwrap_or_default());
            if line.ends_with('\n') {
                out.push('\n');
            }
            copied = at;
        }
        out.push_str(block[copied..].trim_end_matches('\n'));
        out.push_str("\n\n");
    }
    // Blocks that describe no CPU (arm64 and s390 print a trailer or header).
    for (cpu, block) in &blocks {
        if cpu.is_none() {
            out.push_str(block.trim_end_matches('\n'));
            out.push_str("\n\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_visible_blocks_renumbered_with_one_package() {
        let host = "processor\t: 0\nflags\t\t: fpu vme\nsiblings\t: 4\ncpu cores\t: 2\n\n\
                    processor\t: 1\nflags\t\t: fpu vme\ncpu cores\t: 3\nsiblings\t: 4\n\n\
                    processor\t: 2\ncore id\t\t: 1\npower management:\n\n";
        assert_eq!(
            render(host, &[2, 1]),
            "processor\t: 0\ncore id\t\t: 1\npower management:\n\n\
             processor\t: 1\nflags\t\t: fpu vme\ncpu cores\t: 2\nsiblings\t: 2\n\n"
        );
    }

    #[test]
    fn blocks_of_no_cpu_follow_and_a_missing_cpu_is_left_out() {
        let host = "processor\t: 0\nBogoMIPS\t: 50.00\n\nHardware\t: x\nRevision\t: 1\n";
        assert_eq!(
            render(host, &[0, 7]),
            "processor\t: 0\nBogoMIPS\t: 50.00\n\nHardware\t: x\nRevision\t: 1\n\n"
        );
    }
}
