//! Thin I/O wrappers: read a control file, hand its text to a parser, name
//! the file in any error. Effective limits are the minimum over the cgroup
//! and its ancestors (a child can never use more than its parent allows).

use super::mounts::Controller;
use super::parse::{self, BlkioUnit, DevNum, IoCounters, ParseError};
use super::placement::{Dir, Placement, Version};
use crate::source::kept::{Dirs, KeptDir};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// An error that names the file and what went wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("parsing {path}: {error}")]
    Parse {
        path: PathBuf,
        error: parse::ParseError,
    },
}

fn read_err(dir: &Path, name: &str, error: std::io::Error) -> Error {
    Error::Read {
        path: dir.join(name),
        error,
    }
}

fn parse_err(dir: &Path, name: &str, error: ParseError) -> Error {
    Error::Parse {
        path: dir.join(name),
        error,
    }
}

/// Control files read through kept directory descriptors (`kept.rs`); the
/// path is only ever built to name a file in an error.
#[derive(Debug, Clone, Copy)]
pub(super) struct Files<'a>(pub &'a Dirs);

impl Files<'_> {
    /// A missing file is `None` (an older kernel, a controller file that
    /// only exists below the root, swap accounting off).
    pub(super) fn text_opt(self, dir: &Path, name: &'static str) -> Result<Option<String>, Error> {
        self.0.read(dir, name).map_err(|e| read_err(dir, name, e))
    }

    pub(super) fn text(self, dir: &Path, name: &'static str) -> Result<String, Error> {
        self.text_opt(dir, name)?
            .ok_or_else(|| read_err(dir, name, std::io::Error::from(ErrorKind::NotFound)))
    }

    fn parsed<T>(
        self,
        dir: &Path,
        name: &'static str,
        f: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<T, Error> {
        let t = self.text(dir, name)?;
        f(&t).map_err(|e| parse_err(dir, name, e))
    }

    fn parsed_opt<T>(
        self,
        dir: &Path,
        name: &'static str,
        f: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<Option<T>, Error> {
        match self.text_opt(dir, name)? {
            None => Ok(None),
            Some(t) => f(&t).map(Some).map_err(|e| parse_err(dir, name, e)),
        }
    }
}

/// v1 writes "unlimited" as PAGE_COUNTER_MAX pages (0x7FFFFFFFFFFFF000 on
/// 4 KiB pages); anything this large is no limit at all.
const V1_UNLIMITED: u64 = 1 << 62;

fn v1_limit(t: &str) -> Result<Option<u64>, ParseError> {
    Ok(parse::limit(t)?.filter(|v| *v < V1_UNLIMITED))
}

/// The smallest limit over the chain; files missing at some level (the
/// hierarchy root has no memory.max) do not count.
fn min_over_chain(
    fs: Files,
    dir: &Dir,
    file: &'static str,
    f: impl Fn(&str) -> Result<Option<u64>, ParseError>,
) -> Result<Option<u64>, Error> {
    let mut best: Option<u64> = None;
    for d in dir.chain() {
        if let Some(Some(v)) = fs.parsed_opt(d, file, &f)? {
            best = Some(best.map_or(v, |b| b.min(v)));
        }
    }
    Ok(best)
}

/// The `memory.stat` breakdown, in bytes, with v2 key names. A field is
/// `None` when the kernel does not report it for this cgroup version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStat {
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub shmem: Option<u64>,
    pub file_mapped: Option<u64>,
    pub file_dirty: Option<u64>,
    pub file_writeback: Option<u64>,
    pub anon_thp: Option<u64>,
    pub active_anon: Option<u64>,
    pub inactive_anon: Option<u64>,
    pub active_file: Option<u64>,
    pub inactive_file: Option<u64>,
    pub unevictable: Option<u64>,
    pub slab_reclaimable: Option<u64>,
    pub slab_unreclaimable: Option<u64>,
    pub kernel_stack: Option<u64>,
    pub pagetables: Option<u64>,
    pub swapcached: Option<u64>,
}

impl MemStat {
    /// The field a `memory.stat` key of `version` fills. v2 keys are the
    /// field names; v1 gives the hierarchical `total_*` keys (they include
    /// the children, as a container's own view must), and has no slab,
    /// kernel stack or page table breakdown.
    fn field(&mut self, version: Version, key: &str) -> Option<&mut Option<u64>> {
        Some(match version {
            Version::V2 => match key {
                "anon" => &mut self.anon,
                "file" => &mut self.file,
                "shmem" => &mut self.shmem,
                "file_mapped" => &mut self.file_mapped,
                "file_dirty" => &mut self.file_dirty,
                "file_writeback" => &mut self.file_writeback,
                "anon_thp" => &mut self.anon_thp,
                "active_anon" => &mut self.active_anon,
                "inactive_anon" => &mut self.inactive_anon,
                "active_file" => &mut self.active_file,
                "inactive_file" => &mut self.inactive_file,
                "unevictable" => &mut self.unevictable,
                "slab_reclaimable" => &mut self.slab_reclaimable,
                "slab_unreclaimable" => &mut self.slab_unreclaimable,
                "kernel_stack" => &mut self.kernel_stack,
                "pagetables" => &mut self.pagetables,
                "swapcached" => &mut self.swapcached,
                _ => return None,
            },
            Version::V1 => match key.strip_prefix("total_")? {
                "rss" => &mut self.anon,
                "cache" => &mut self.file,
                "shmem" => &mut self.shmem,
                "mapped_file" => &mut self.file_mapped,
                "dirty" => &mut self.file_dirty,
                "writeback" => &mut self.file_writeback,
                "rss_huge" => &mut self.anon_thp,
                "active_anon" => &mut self.active_anon,
                "inactive_anon" => &mut self.inactive_anon,
                "active_file" => &mut self.active_file,
                "inactive_file" => &mut self.inactive_file,
                "unevictable" => &mut self.unevictable,
                _ => return None,
            },
        })
    }

    /// The breakdown from `memory.stat`'s pairs.
    pub fn from_pairs<'a>(
        version: Version,
        pairs: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> MemStat {
        let mut s = MemStat::default();
        for (k, v) in pairs {
            s.set(version, k, v);
        }
        s
    }

    fn set(&mut self, version: Version, key: &str, value: u64) {
        if let Some(f) = self.field(version, key) {
            *f = Some(value);
        }
    }

    /// `memory.stat`'s text, parsed in one pass without a map.
    pub fn parse(version: Version, text: &str) -> Result<MemStat, ParseError> {
        let mut s = MemStat::default();
        parse::flat_keyed_each(text, |k, v| s.set(version, k, v))?;
        Ok(s)
    }

    /// v2 `memory.stat` as a map.
    pub fn from_v2(m: &BTreeMap<&str, u64>) -> MemStat {
        MemStat::from_pairs(Version::V2, m.iter().map(|(k, v)| (*k, *v)))
    }

    /// v1 `memory.stat` as a map.
    pub fn from_v1(m: &BTreeMap<&str, u64>) -> MemStat {
        MemStat::from_pairs(Version::V1, m.iter().map(|(k, v)| (*k, *v)))
    }
}

/// Swap as the cgroup accounts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap {
    /// `None` is unlimited.
    pub limit: Option<u64>,
    pub usage: u64,
}

/// What the memory controller says about one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Effective limit (minimum over ancestors); `None` is unlimited.
    pub limit: Option<u64>,
    pub usage: u64,
    pub stat: MemStat,
    /// `None` when the kernel does not account swap for this cgroup.
    pub swap: Option<Swap>,
}

/// The memory controller's numbers (`memory.stat` parsed into the fields
/// meminfo and sysinfo use, nothing else).
pub(super) fn memory(fs: Files, dir: &Dir) -> Result<Memory, Error> {
    let p = &dir.path;
    let stat_text = fs.text(p, "memory.stat")?;
    let stat =
        MemStat::parse(dir.version, &stat_text).map_err(|e| parse_err(p, "memory.stat", e))?;
    memory_with(fs, dir, stat)
}

/// The memory controller's limits and usage, without reading `memory.stat`
/// (its breakdown is left empty): what swaps needs.
pub(super) fn memory_usage(fs: Files, dir: &Dir) -> Result<Memory, Error> {
    memory_with(fs, dir, MemStat::default())
}

/// The memory controller's numbers beside the `memory.stat` breakdown
/// `stat` already read.
fn memory_with(fs: Files, dir: &Dir, stat: MemStat) -> Result<Memory, Error> {
    let p = &dir.path;
    match dir.version {
        Version::V2 => {
            let limit = min_over_chain(fs, dir, "memory.max", parse::limit)?;
            let usage = fs.parsed(p, "memory.current", parse::number)?;
            let swap = match fs.parsed_opt(p, "memory.swap.current", parse::number)? {
                None => None,
                Some(usage) => Some(Swap {
                    limit: min_over_chain(fs, dir, "memory.swap.max", parse::limit)?,
                    usage,
                }),
            };
            Ok(Memory {
                limit,
                usage,
                stat,
                swap,
            })
        }
        Version::V1 => {
            let limit = min_over_chain(fs, dir, "memory.limit_in_bytes", v1_limit)?;
            let usage = fs.parsed(p, "memory.usage_in_bytes", parse::number)?;
            // memsw counts memory + swap; what is left over is the swap part.
            let swap = match fs.parsed_opt(p, "memory.memsw.usage_in_bytes", parse::number)? {
                None => None,
                Some(memsw_usage) => {
                    let memsw_limit =
                        min_over_chain(fs, dir, "memory.memsw.limit_in_bytes", v1_limit)?;
                    Some(Swap {
                        limit: match (memsw_limit, limit) {
                            (Some(ms), Some(m)) => Some(ms.saturating_sub(m)),
                            (Some(ms), None) => Some(ms),
                            (None, _) => None,
                        },
                        usage: memsw_usage.saturating_sub(usage),
                    })
                }
            };
            Ok(Memory {
                limit,
                usage,
                stat,
                swap,
            })
        }
    }
}

/// Every count of a cgroup's `memory.stat`, by its v2 name (bytes for
/// amounts, plain counts for events), plus `oom_kill`: what `/proc/vmstat`
/// can say of the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemCounters(pub BTreeMap<String, u64>);

impl MemCounters {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.get(key).copied()
    }

    /// v2 `memory.stat` as it is.
    pub fn from_v2(m: &BTreeMap<&str, u64>) -> MemCounters {
        MemCounters(m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
    }

    /// v1 `memory.stat`: its hierarchical `total_*` keys (the container
    /// with its children), under the v2 name of each. v1's `pgpgin` and
    /// `pgpgout` count pages charged to and uncharged from the cgroup, not
    /// paging I/O, so they are left out rather than mistaken for vmstat's.
    pub fn from_v1(m: &BTreeMap<&str, u64>) -> MemCounters {
        MemCounters(
            m.iter()
                .filter_map(|(k, v)| {
                    let name = match k.strip_prefix("total_")? {
                        "pgpgin" | "pgpgout" => return None,
                        "cache" => "file",
                        "rss" => "anon",
                        "rss_huge" => "anon_thp",
                        "mapped_file" => "file_mapped",
                        "dirty" => "file_dirty",
                        "writeback" => "file_writeback",
                        other => other,
                    };
                    Some((name.to_owned(), *v))
                })
                .collect(),
        )
    }
}

/// The memory controller's numbers and its counters, `oom_kill` from
/// `memory.events` (v2, the cgroup and its descendants) or
/// `memory.oom_control` (v1) when the kernel has it.
pub(super) fn memory_counters(fs: Files, dir: &Dir) -> Result<(Memory, MemCounters), Error> {
    let p = &dir.path;
    let stat_text = fs.text(p, "memory.stat")?;
    let map = parse::flat_keyed(&stat_text).map_err(|e| parse_err(p, "memory.stat", e))?;
    let (stat, mut counters) = match dir.version {
        Version::V2 => (MemStat::from_v2(&map), MemCounters::from_v2(&map)),
        Version::V1 => (MemStat::from_v1(&map), MemCounters::from_v1(&map)),
    };
    let m = memory_with(fs, dir, stat)?;
    let events = match dir.version {
        Version::V2 => "memory.events",
        Version::V1 => "memory.oom_control",
    };
    let oom = fs.parsed_opt(&dir.path, events, |t| {
        parse::flat_keyed(t).map(|m| m.get("oom_kill").copied())
    })?;
    if let Some(Some(n)) = oom {
        counters.0.insert("oom_kill".to_owned(), n);
    }
    Ok((m, counters))
}

/// What bounds a cgroup's CPU use.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuLimits {
    /// Host CPU numbers the cgroup may run on (its effective cpuset, within
    /// the online CPUs), sorted.
    pub cpus: Vec<u32>,
    /// CFS bandwidth as a number of CPUs (quota / period), the minimum over
    /// ancestors; `None` is unlimited.
    pub quota: Option<f64>,
}

fn cpuset(fs: Files, dir: &Dir) -> Result<Option<Vec<u32>>, Error> {
    let files: &[&str] = match dir.version {
        Version::V2 => &["cpuset.cpus.effective"],
        Version::V1 => &["cpuset.effective_cpus", "cpuset.cpus"],
    };
    for f in files {
        if let Some(cpus) = fs.parsed_opt(&dir.path, f, parse::cpu_list)? {
            return Ok(Some(cpus));
        }
    }
    Ok(None)
}

fn quota(fs: Files, dir: &Dir) -> Result<Option<f64>, Error> {
    let mut best: Option<f64> = None;
    for d in dir.chain() {
        let q = match dir.version {
            Version::V2 => fs
                .parsed_opt(d, "cpu.max", parse::cpu_max)?
                .and_then(|(q, p)| q.map(|q| q as f64 / p as f64)),
            // -1 is no quota; the period only matters with one.
            Version::V1 => match fs.parsed_opt(d, "cpu.cfs_quota_us", parse::signed)? {
                Some(q) if q > 0 => fs
                    .parsed_opt(d, "cpu.cfs_period_us", parse::number)?
                    .filter(|&p| p > 0)
                    .map(|p| q as f64 / p as f64),
                _ => None,
            },
        };
        if let Some(q) = q {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    }
    Ok(best)
}

pub(super) fn cpu_limits(fs: Files, p: &Placement, online: &[u32]) -> Result<CpuLimits, Error> {
    let mut cpus = match p.get(Controller::Cpuset) {
        Some(d) => cpuset(fs, d)?.unwrap_or_default(),
        None => Vec::new(),
    };
    cpus.retain(|c| online.contains(c));
    if cpus.is_empty() {
        cpus = online.to_vec();
    }
    let quota = match p.get(Controller::Cpu) {
        Some(d) => quota(fs, d)?,
        None => None,
    };
    Ok(CpuLimits { cpus, quota })
}

/// CPU time the cgroup has used, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuUsage {
    pub user: u64,
    pub system: u64,
    /// (user, system) per host CPU, where the kernel splits it (v1 cpuacct).
    pub per_cpu: Option<Vec<(u64, u64)>>,
}

pub(super) fn cpu_usage(fs: Files, p: &Placement) -> Result<Option<CpuUsage>, Error> {
    let Some(dir) = p
        .get(Controller::Cpuacct)
        .or_else(|| p.get(Controller::Cpu))
    else {
        return Ok(None);
    };
    match dir.version {
        Version::V2 => {
            let t = fs.text(&dir.path, "cpu.stat")?;
            let m = parse::flat_keyed(&t).map_err(|e| parse_err(&dir.path, "cpu.stat", e))?;
            let get = |k: &str| {
                m.get(k).copied().ok_or_else(|| {
                    parse_err(&dir.path, "cpu.stat", ParseError(format!("no {k} key")))
                })
            };
            Ok(Some(CpuUsage {
                user: get("user_usec")?.saturating_mul(1000),
                system: get("system_usec")?.saturating_mul(1000),
                per_cpu: None,
            }))
        }
        Version::V1 => {
            // The exact per-CPU time is cpuacct.usage_percpu. Since 5.x the
            // user/system columns of cpuacct.usage_all come from the tick-based
            // cpustat and run ahead of it for throttled groups
            // (kernel/sched/cpuacct.c cpuacct_cpuusage_read), so they only give
            // each CPU's split; cpuacct.stat (USER_HZ ticks) splits a CPU
            // that has no ticks yet, or everything on kernels without usage_all.
            let total = fs.parsed(&dir.path, "cpuacct.usage_percpu", parse::number_list)?;
            let split = fs.parsed_opt(&dir.path, "cpuacct.usage_all", parse::cpuacct_usage_all)?;
            // Read only when some CPU with time has no split of its own.
            let unsplit = total.iter().enumerate().any(|(cpu, t)| {
                *t > 0
                    && split
                        .as_ref()
                        .and_then(|s| s.get(cpu))
                        .is_none_or(|(u, s)| u + s == 0)
            });
            let overall = if unsplit {
                fs.parsed(&dir.path, "cpuacct.stat", |t| {
                    parse::flat_keyed(t).map(|m| {
                        (
                            m.get("user").copied().unwrap_or(0),
                            m.get("system").copied().unwrap_or(0),
                        )
                    })
                })?
            } else {
                (0, 0)
            };
            let per_cpu = total
                .iter()
                .enumerate()
                .map(|(cpu, t)| {
                    let ratio = split
                        .as_ref()
                        .and_then(|s| s.get(cpu).copied())
                        .filter(|(u, s)| u + s > 0)
                        .unwrap_or(overall);
                    split_time(*t, ratio)
                })
                .collect::<Vec<_>>();
            Ok(Some(CpuUsage {
                user: per_cpu.iter().map(|c| c.0).sum(),
                system: per_cpu.iter().map(|c| c.1).sum(),
                per_cpu: Some(per_cpu),
            }))
        }
    }
}

/// The time the cgroup's CFS quota held its tasks back, in nanoseconds,
/// summed over CPUs: `cpu.stat` `throttled_usec` (v2) or `throttled_time`
/// (v1, ns). 0 when the file does not say (no bandwidth control: nothing
/// was ever throttled).
/// `pids.current`: the tasks of the cgroup and its descendants as the
/// pids controller counts them (one read of a kept file), if it has one.
pub(super) fn task_count(fs: Files, dir: &Dir) -> Result<Option<u64>, Error> {
    fs.parsed_opt(&dir.path, "pids.current", parse::number)
}

pub(super) fn throttled(fs: Files, dir: &Dir) -> Result<u64, Error> {
    let (key, unit) = match dir.version {
        Version::V2 => ("throttled_usec", 1000),
        Version::V1 => ("throttled_time", 1),
    };
    let v = fs.parsed_opt(&dir.path, "cpu.stat", |t| {
        parse::flat_keyed(t).map(|m| m.get(key).copied())
    })?;
    Ok(v.flatten().unwrap_or(0).saturating_mul(unit))
}

/// Splits `total` ns into (user, system) in the proportion of `ratio`; all
/// user when the ratio is unknown (0:0).
fn split_time(total: u64, (u, s): (u64, u64)) -> (u64, u64) {
    if u + s == 0 {
        return (total, 0);
    }
    let user = (u128::from(total) * u128::from(u) / (u128::from(u) + u128::from(s))) as u64;
    (user, total - user)
}

pub(super) fn io(fs: Files, dir: &Dir) -> Result<BTreeMap<DevNum, IoCounters>, Error> {
    match dir.version {
        Version::V2 => Ok(fs
            .parsed_opt(&dir.path, "io.stat", parse::io_stat)?
            .unwrap_or_default()),
        Version::V1 => {
            // The throttle policy counts I/O to devices with a throttle rule;
            // bfq counts when it schedules the device. Prefer throttle, never
            // add both (they would count the same I/O twice).
            for files in [
                [
                    (
                        "blkio.throttle.io_service_bytes_recursive",
                        BlkioUnit::Bytes,
                    ),
                    ("blkio.throttle.io_serviced_recursive", BlkioUnit::Ios),
                ],
                [
                    ("blkio.bfq.io_service_bytes_recursive", BlkioUnit::Bytes),
                    ("blkio.bfq.io_serviced_recursive", BlkioUnit::Ios),
                ],
            ] {
                let mut acc = BTreeMap::new();
                for (file, unit) in files {
                    if let Some(t) = fs.text_opt(&dir.path, file)? {
                        parse::blkio_table(&t, unit, &mut acc)
                            .map_err(|e| parse_err(&dir.path, file, e))?;
                    }
                }
                if !acc.is_empty() {
                    return Ok(acc);
                }
            }
            Ok(BTreeMap::new())
        }
    }
}

/// Whether a v2 cgroup has descendants (`cgroup.stat`), so that a
/// container without any is not listed at all.
fn has_descendants(fs: Files, dir: &Dir) -> Result<bool, Error> {
    if dir.version == Version::V1 {
        return Ok(true);
    }
    let n = fs.parsed_opt(&dir.path, "cgroup.stat", |t| {
        parse::flat_keyed(t).map(|m| m.get("nr_descendants").copied())
    })?;
    Ok(n.flatten().is_none_or(|n| n > 0))
}

pub(super) fn tasks(fs: Files, dir: &Dir) -> Result<Vec<u32>, Error> {
    let file = match dir.version {
        Version::V1 => "tasks",
        Version::V2 => "cgroup.threads",
    };
    let walk = has_descendants(fs, dir)?;
    let mut out = Vec::new();
    let mut stack = vec![dir.path.clone()];
    let mut first = true;
    while let Some(d) = stack.pop() {
        // v1 task lists must be opened anew for each read (`read_once`).
        let list = |k: &KeptDir| match dir.version {
            Version::V1 => k.read_once(file),
            Version::V2 => k.read(file),
        };
        let listed = fs.0.with(&d, |k| {
            Ok((list(k)?, if walk { k.subdirs()? } else { Vec::new() }))
        });
        // A child cgroup removed while we walk is not an error; the cgroup
        // itself vanishing is (the caller falls back to the host file).
        let (t, subs) = match listed {
            Ok((Some(t), subs)) => (t, subs),
            _ if !first => continue,
            Ok((None, _)) => return Err(read_err(&d, file, ErrorKind::NotFound.into())),
            Err(e) => return Err(read_err(&d, file, e)),
        };
        first = false;
        for l in t.lines() {
            out.push(parse::number(l).map_err(|e| parse_err(&d, file, e))? as u32);
        }
        stack.extend(subs.iter().map(|n| d.join(n)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{MemStat, Version};

    /// The number on the line of `key` in a captured file, looked up
    /// without the parser under test.
    fn line(text: &str, key: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
    }

    fn pairs(s: &MemStat) -> [(Option<u64>, &'static str, &'static str); 17] {
        [
            (s.anon, "anon", "total_rss"),
            (s.file, "file", "total_cache"),
            (s.shmem, "shmem", "total_shmem"),
            (s.file_mapped, "file_mapped", "total_mapped_file"),
            (s.file_dirty, "file_dirty", "total_dirty"),
            (s.file_writeback, "file_writeback", "total_writeback"),
            (s.anon_thp, "anon_thp", "total_rss_huge"),
            (s.active_anon, "active_anon", "total_active_anon"),
            (s.inactive_anon, "inactive_anon", "total_inactive_anon"),
            (s.active_file, "active_file", "total_active_file"),
            (s.inactive_file, "inactive_file", "total_inactive_file"),
            (s.unevictable, "unevictable", "total_unevictable"),
            (s.slab_reclaimable, "slab_reclaimable", "-"),
            (s.slab_unreclaimable, "slab_unreclaimable", "-"),
            (s.kernel_stack, "kernel_stack", "-"),
            (s.pagetables, "pagetables", "-"),
            (s.swapcached, "swapcached", "-"),
        ]
    }

    #[test]
    fn memory_stat_fields_come_from_their_own_lines_in_both_versions() {
        let v2 = include_str!(
            "../../../tests/fixtures/v2/root/sys/fs/cgroup/proclens-fixture/memory.stat"
        );
        let v1 = include_str!(
            "../../../tests/fixtures/v1/root/sys/fs/cgroup/memory/proclens-fixture/memory.stat"
        );
        let s2 = MemStat::parse(Version::V2, v2).expect("v2 parses");
        let s1 = MemStat::parse(Version::V1, v1).expect("v1 parses");
        for (got, key, _) in pairs(&s2) {
            assert_eq!(got, line(v2, key), "v2 {key}");
        }
        for (got, _, key) in pairs(&s1) {
            assert_eq!(got, line(v1, key), "v1 {key}");
        }
        // v1's own-cgroup lines ("rss 4096") never stand in for the totals.
        assert!(line(v1, "rss").is_some() && s1.anon == line(v1, "total_rss"));
        assert!(s1.anon.is_some() && s2.anon.is_some());
        // The map-based path (vmstat's) agrees.
        let m = super::parse::flat_keyed(v1).expect("map");
        assert_eq!(MemStat::from_v1(&m), s1);
        assert!(MemStat::parse(Version::V2, "anon 1\nfile x\n").is_err());
        assert!(MemStat::parse(Version::V1, "total_rss\n").is_err());
    }
}
