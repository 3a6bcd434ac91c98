//! /proc/cpuinfo: only the visible CPUs' blocks, renumbered 0..n-1.

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
        for line in block.lines() {
            match line.split_once(':') {
                Some((k, _)) if k.trim() == "processor" => out.push_str(&format!("{k}: {i}")),
                // x86 prints these per package; a container sees one package
                // of n CPUs (arch/x86/kernel/cpu/proc.c show_cpuinfo_core).
                Some((k, _)) if k.trim() == "siblings" || k.trim() == "cpu cores" => {
                    out.push_str(&format!("{k}: {n}"))
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        out.push('\n');
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
