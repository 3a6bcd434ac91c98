//! /proc/swaps: the header and, when the container has swap, one line for
//! it, laid out like mm/swapfile.c swap_show (sizes in KiB).

pub const NAME: &str = "none";

pub fn render(host: &str, total_kb: u64, used_kb: u64) -> String {
    let header = host
        .lines()
        .next()
        .unwrap_or("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority");
    let mut out = format!("{header}\n");
    if total_kb > 0 {
        let pad = 40usize.saturating_sub(NAME.len()).max(1);
        out.push_str(&format!(
            "{NAME}{:pad$}{}\t{}\t{}{}\t{}{}\n",
            " ",
            "partition",
            total_kb,
            if total_kb < 10_000_000 { "\t" } else { "" },
            used_kb,
            if used_kb < 10_000_000 { "\t" } else { "" },
            -1
        ));
    }
    out
}
