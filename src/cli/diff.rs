//! `proclens diff`: the host's and the container's numbers side by side,
//! taken from the same files a reader would see.

use crate::container::caller::Caller;
use crate::container::view::Views;
use crate::container::VFile;
use crate::render::meminfo;
use anyhow::{Context, Result};
use std::path::Path;

/// The numbers people compare, from one set of files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub mem_total_kb: u64,
    pub mem_used_kb: u64,
    pub mem_available_kb: u64,
    pub swap_total_kb: u64,
    pub swap_used_kb: u64,
    pub cpus: usize,
    pub load: String,
    pub uptime_s: f64,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
}

/// Whole disks only (partitions would count the same I/O twice): those
/// with an entry in /sys/block.
fn is_disk(sys_block: &Path, name: &str) -> bool {
    sys_block.join(name.replace('/', "!")).exists()
}

pub fn summarize(
    meminfo_text: &str,
    stat: &str,
    loadavg: &str,
    uptime: &str,
    diskstats: &str,
    sys_block: &Path,
) -> Summary {
    let m = meminfo::parse(meminfo_text);
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    let (mut r, mut w) = (0, 0);
    for l in diskstats.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 10 && is_disk(sys_block, f[2]) {
            r += f[5].parse::<u64>().unwrap_or(0) * 512;
            w += f[9].parse::<u64>().unwrap_or(0) * 512;
        }
    }
    Summary {
        mem_total_kb: g("MemTotal"),
        // procps-ng 4 `free`: used = total - available.
        mem_used_kb: g("MemTotal").saturating_sub(g("MemAvailable")),
        mem_available_kb: g("MemAvailable"),
        swap_total_kb: g("SwapTotal"),
        swap_used_kb: g("SwapTotal").saturating_sub(g("SwapFree")),
        cpus: stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count(),
        load: loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        uptime_s: uptime
            .split_whitespace()
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or(0.0),
        disk_read_bytes: r,
        disk_written_bytes: w,
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn bytes(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

fn duration(s: f64) -> String {
    let s = s as u64;
    format!(
        "{}d {:02}:{:02}:{:02}",
        s / 86400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

pub fn table(host: &Summary, ctr: &Summary) -> String {
    let rows: Vec<(&str, String, String)> = vec![
        (
            "memory total",
            mib(host.mem_total_kb),
            mib(ctr.mem_total_kb),
        ),
        ("memory used", mib(host.mem_used_kb), mib(ctr.mem_used_kb)),
        (
            "memory available",
            mib(host.mem_available_kb),
            mib(ctr.mem_available_kb),
        ),
        (
            "swap total",
            mib(host.swap_total_kb),
            mib(ctr.swap_total_kb),
        ),
        ("swap used", mib(host.swap_used_kb), mib(ctr.swap_used_kb)),
        ("cpus", host.cpus.to_string(), ctr.cpus.to_string()),
        ("load average", host.load.clone(), ctr.load.clone()),
        ("uptime", duration(host.uptime_s), duration(ctr.uptime_s)),
        (
            "disk read",
            bytes(host.disk_read_bytes),
            bytes(ctr.disk_read_bytes),
        ),
        (
            "disk written",
            bytes(host.disk_written_bytes),
            bytes(ctr.disk_written_bytes),
        ),
    ];
    let mut out = format!("{:<18} {:>20} {:>20}\n", "", "host", "container");
    for (k, h, c) in rows {
        out.push_str(&format!("{k:<18} {h:>20} {c:>20}\n"));
    }
    out
}

pub fn run(views: &Views, caller: &Caller) -> Result<String> {
    let host = views.host();
    let sys_block = host.root().join("sys/block");
    let hs = summarize(
        &host.read("/proc/meminfo")?,
        &host.read("/proc/stat")?,
        &host.read("/proc/loadavg")?,
        &host.read("/proc/uptime")?,
        &host.read("/proc/diskstats")?,
        &sys_block,
    );
    let r = |f: VFile| {
        views
            .render(f, caller)
            .with_context(|| format!("rendering {}", f.name()))
    };
    let cs = summarize(
        &r(VFile::Meminfo)?,
        &r(VFile::Stat)?,
        &r(VFile::Loadavg)?,
        &r(VFile::Uptime)?,
        &r(VFile::Diskstats)?,
        &sys_block,
    );
    Ok(format!(
        "container: {}\n{}",
        caller.describe_container(),
        table(&hs, &cs)
    ))
}
