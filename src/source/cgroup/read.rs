//! Thin I/O wrappers: read a control file, hand its text to a parser, name
//! the file in any error. Effective limits are the minimum over the cgroup
//! and its ancestors (a child can never use more than its parent allows).

use super::mounts::Controller;
use super::parse::{self, BlkioUnit, DevNum, IoCounters, ParseError};
use super::placement::{Dir, Placement, Version};
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

pub(super) fn text(path: &Path) -> Result<String, Error> {
    crate::source::kfile::read_text(path).map_err(|error| Error::Read {
        path: path.to_owned(),
        error,
    })
}

/// Like [`text`], but a missing file is `None` (an older kernel, a
/// controller file that only exists below the root, swap accounting off).
pub(super) fn text_opt(path: &Path) -> Result<Option<String>, Error> {
    match crate::source::kfile::read_text(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

fn parsed<T>(path: &Path, f: impl FnOnce(&str) -> Result<T, ParseError>) -> Result<T, Error> {
    let t = text(path)?;
    f(&t).map_err(|error| Error::Parse {
        path: path.to_owned(),
        error,
    })
}

fn parsed_opt<T>(
    path: &Path,
    f: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<Option<T>, Error> {
    match text_opt(path)? {
        None => Ok(None),
        Some(t) => f(&t).map(Some).map_err(|error| Error::Parse {
            path: path.to_owned(),
            error,
        }),
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
    dir: &Dir,
    file: &str,
    f: impl Fn(&str) -> Result<Option<u64>, ParseError>,
) -> Result<Option<u64>, Error> {
    let mut best: Option<u64> = None;
    for d in dir.chain() {
        if let Some(Some(v)) = parsed_opt(&d.join(file), &f)? {
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
    /// v2 `memory.stat` keys are the field names.
    pub fn from_v2(m: &BTreeMap<&str, u64>) -> MemStat {
        let g = |k: &str| m.get(k).copied();
        MemStat {
            anon: g("anon"),
            file: g("file"),
            shmem: g("shmem"),
            file_mapped: g("file_mapped"),
            file_dirty: g("file_dirty"),
            file_writeback: g("file_writeback"),
            anon_thp: g("anon_thp"),
            active_anon: g("active_anon"),
            inactive_anon: g("inactive_anon"),
            active_file: g("active_file"),
            inactive_file: g("inactive_file"),
            unevictable: g("unevictable"),
            slab_reclaimable: g("slab_reclaimable"),
            slab_unreclaimable: g("slab_unreclaimable"),
            kernel_stack: g("kernel_stack"),
            pagetables: g("pagetables"),
            swapcached: g("swapcached"),
        }
    }

    /// v1 `memory.stat`: the hierarchical `total_*` keys (they include the
    /// children, as a container's own view must). v1 has no slab, kernel
    /// stack or page table breakdown.
    pub fn from_v1(m: &BTreeMap<&str, u64>) -> MemStat {
        let g = |k: &str| m.get(k).copied();
        MemStat {
            anon: g("total_rss"),
            file: g("total_cache"),
            shmem: g("total_shmem"),
            file_mapped: g("total_mapped_file"),
            file_dirty: g("total_dirty"),
            file_writeback: g("total_writeback"),
            anon_thp: g("total_rss_huge"),
            active_anon: g("total_active_anon"),
            inactive_anon: g("total_inactive_anon"),
            active_file: g("total_active_file"),
            inactive_file: g("total_inactive_file"),
            unevictable: g("total_unevictable"),
            ..MemStat::default()
        }
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

pub(super) fn memory(dir: &Dir) -> Result<Memory, Error> {
    let p = &dir.path;
    match dir.version {
        Version::V2 => {
            let limit = min_over_chain(dir, "memory.max", parse::limit)?;
            let usage = parsed(&p.join("memory.current"), parse::number)?;
            let stat = parsed(&p.join("memory.stat"), |t| {
                parse::flat_keyed(t).map(|m| MemStat::from_v2(&m))
            })?;
            let swap = match parsed_opt(&p.join("memory.swap.current"), parse::number)? {
                None => None,
                Some(usage) => Some(Swap {
                    limit: min_over_chain(dir, "memory.swap.max", parse::limit)?,
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
            let limit = min_over_chain(dir, "memory.limit_in_bytes", v1_limit)?;
            let usage = parsed(&p.join("memory.usage_in_bytes"), parse::number)?;
            let stat = parsed(&p.join("memory.stat"), |t| {
                parse::flat_keyed(t).map(|m| MemStat::from_v1(&m))
            })?;
            // memsw counts memory + swap; what is left over is the swap part.
            let swap = match parsed_opt(&p.join("memory.memsw.usage_in_bytes"), parse::number)? {
                None => None,
                Some(memsw_usage) => {
                    let memsw_limit = min_over_chain(dir, "memory.memsw.limit_in_bytes", v1_limit)?;
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

fn cpuset(dir: &Dir) -> Result<Option<Vec<u32>>, Error> {
    let files: &[&str] = match dir.version {
        Version::V2 => &["cpuset.cpus.effective"],
        Version::V1 => &["cpuset.effective_cpus", "cpuset.cpus"],
    };
    for f in files {
        if let Some(cpus) = parsed_opt(&dir.path.join(f), parse::cpu_list)? {
            return Ok(Some(cpus));
        }
    }
    Ok(None)
}

fn quota(dir: &Dir) -> Result<Option<f64>, Error> {
    let mut best: Option<f64> = None;
    for d in dir.chain() {
        let q = match dir.version {
            Version::V2 => parsed_opt(&d.join("cpu.max"), parse::cpu_max)?
                .and_then(|(q, p)| q.map(|q| q as f64 / p as f64)),
            Version::V1 => {
                let q = parsed_opt(&d.join("cpu.cfs_quota_us"), parse::signed)?;
                let p = parsed_opt(&d.join("cpu.cfs_period_us"), parse::number)?;
                match (q, p) {
                    (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
                    _ => None,
                }
            }
        };
        if let Some(q) = q {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    }
    Ok(best)
}

pub(super) fn cpu_limits(p: &Placement, online: &[u32]) -> Result<CpuLimits, Error> {
    let mut cpus = match p.get(Controller::Cpuset) {
        Some(d) => cpuset(d)?.unwrap_or_default(),
        None => Vec::new(),
    };
    cpus.retain(|c| online.contains(c));
    if cpus.is_empty() {
        cpus = online.to_vec();
    }
    let quota = match p.get(Controller::Cpu) {
        Some(d) => quota(d)?,
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

pub(super) fn cpu_usage(p: &Placement) -> Result<Option<CpuUsage>, Error> {
    let Some(dir) = p
        .get(Controller::Cpuacct)
        .or_else(|| p.get(Controller::Cpu))
    else {
        return Ok(None);
    };
    match dir.version {
        Version::V2 => {
            let path = dir.path.join("cpu.stat");
            let t = text(&path)?;
            let m = parse::flat_keyed(&t).map_err(|error| Error::Parse {
                path: path.clone(),
                error,
            })?;
            let get = |k: &str| {
                m.get(k).copied().ok_or_else(|| Error::Parse {
                    path: path.clone(),
                    error: ParseError(format!("no {k} key")),
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
            let total = parsed(&dir.path.join("cpuacct.usage_percpu"), parse::number_list)?;
            let split = parsed_opt(
                &dir.path.join("cpuacct.usage_all"),
                parse::cpuacct_usage_all,
            )?;
            let overall = parsed(&dir.path.join("cpuacct.stat"), |t| {
                parse::flat_keyed(t).map(|m| {
                    (
                        m.get("user").copied().unwrap_or(0),
                        m.get("system").copied().unwrap_or(0),
                    )
                })
            })?;
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

/// Splits `total` ns into (user, system) in the proportion of `ratio`; all
/// user when the ratio is unknown (0:0).
fn split_time(total: u64, (u, s): (u64, u64)) -> (u64, u64) {
    if u + s == 0 {
        return (total, 0);
    }
    let user = (u128::from(total) * u128::from(u) / (u128::from(u) + u128::from(s))) as u64;
    (user, total - user)
}

pub(super) fn io(dir: &Dir) -> Result<BTreeMap<DevNum, IoCounters>, Error> {
    match dir.version {
        Version::V2 => {
            Ok(parsed_opt(&dir.path.join("io.stat"), parse::io_stat)?.unwrap_or_default())
        }
        Version::V1 => {
            // The throttle policy counts I/O to devices with a throttle rule;
            // bfq counts when it schedules the device. Prefer throttle, never
            // add both (they would count the same I/O twice).
            for policy in ["blkio.throttle", "blkio.bfq"] {
                let mut acc = BTreeMap::new();
                for (file, unit) in [
                    ("io_service_bytes_recursive", BlkioUnit::Bytes),
                    ("io_serviced_recursive", BlkioUnit::Ios),
                ] {
                    let path = dir.path.join(format!("{policy}.{file}"));
                    if let Some(t) = text_opt(&path)? {
                        parse::blkio_table(&t, unit, &mut acc)
                            .map_err(|error| Error::Parse { path, error })?;
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

pub(super) fn tasks(dir: &Dir) -> Result<Vec<u32>, Error> {
    let file = match dir.version {
        Version::V1 => "tasks",
        Version::V2 => "cgroup.threads",
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.path.clone()];
    let mut first = true;
    while let Some(d) = stack.pop() {
        // A child cgroup removed while we walk is not an error; the cgroup
        // itself vanishing is (the caller falls back to the host file).
        let t = if first {
            Some(text(&d.join(file))?)
        } else {
            text_opt(&d.join(file))?
        };
        first = false;
        let Some(t) = t else { continue };
        for l in t.lines() {
            out.push(parse::number(l).map_err(|error| Error::Parse {
                path: d.join(file),
                error,
            })? as u32);
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    Ok(out)
}
