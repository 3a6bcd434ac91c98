//! Parsers for the text formats of cgroup control files (see the kernel's
//! Documentation/admin-guide/cgroup-v2.rst, "Interface Files" / "Format").
//! They take `&str` and never touch the filesystem, so they are unit-tested
//! and fuzzed on captured text.

use std::collections::BTreeMap;

/// Why a piece of text could not be parsed. The caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err(msg: impl Into<String>) -> ParseError {
    ParseError(msg.into())
}

/// A single value that may be "max" (v2) or a v1 "unlimited" sentinel.
/// `max` and `-1` are unlimited (`None`), never 0.
pub fn limit(text: &str) -> Result<Option<u64>, ParseError> {
    let t = text.trim();
    match t {
        "max" | "-1" => Ok(None),
        _ => t
            .parse::<u64>()
            .map(Some)
            .map_err(|_| err(format!("expected a number or \"max\", got {t:?}"))),
    }
}

/// A single unsigned number.
pub fn number(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    t.parse()
        .map_err(|_| err(format!("expected a number, got {t:?}")))
}

/// A signed number (v1 `cpu.cfs_quota_us` is -1 when unlimited).
pub fn signed(text: &str) -> Result<i64, ParseError> {
    let t = text.trim();
    t.parse()
        .map_err(|_| err(format!("expected a number, got {t:?}")))
}

/// Flat keyed file: one `key value` pair per line (`memory.stat`, `cpu.stat`).
/// Lines whose value is not a number are an error: the kernel never writes them.
pub fn flat_keyed(text: &str) -> Result<BTreeMap<&str, u64>, ParseError> {
    let mut out = BTreeMap::new();
    flat_keyed_each(text, |k, v| {
        out.insert(k, v);
    })?;
    Ok(out)
}

/// [`flat_keyed`] without the map: `f` gets each pair in the file's order
/// (a key given twice, which the kernel never does, is given twice).
pub fn flat_keyed_each<'a>(
    text: &'a str,
    mut f: impl FnMut(&'a str, u64),
) -> Result<(), ParseError> {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
            return Err(err(format!("expected \"key value\", got {line:?}")));
        };
        let v = v
            .parse()
            .map_err(|_| err(format!("bad value for {k}: {v:?}")))?;
        f(k, v);
    }
    Ok(())
}

/// `cpu.max`: "$MAX $PERIOD", where $MAX may be "max". Returns (quota, period).
pub fn cpu_max(text: &str) -> Result<(Option<u64>, u64), ParseError> {
    let mut it = text.split_whitespace();
    let (Some(q), Some(p), None) = (it.next(), it.next(), it.next()) else {
        return Err(err(format!(
            "expected \"quota period\", got {:?}",
            text.trim()
        )));
    };
    let period = number(p)?;
    if period == 0 {
        return Err(err("period is 0"));
    }
    Ok((limit(q)?, period))
}

/// A CPU list such as "0-3,8,10-11" (kernel `cpulist_parse` format). Empty
/// text is an empty set. The result is sorted and free of duplicates.
pub fn cpu_list(text: &str) -> Result<Vec<u32>, ParseError> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let lo: u32 = lo
            .parse()
            .map_err(|_| err(format!("bad CPU list item {part:?}")))?;
        let hi: u32 = hi
            .parse()
            .map_err(|_| err(format!("bad CPU list item {part:?}")))?;
        if lo > hi || hi >= 1 << 16 {
            return Err(err(format!("bad CPU range {part:?}")));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats a sorted list of CPU numbers the way the kernel prints cpulists.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// Per-device I/O counters, in bytes and operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
    pub dbytes: u64,
    pub dios: u64,
}

impl IoCounters {
    pub fn is_zero(&self) -> bool {
        *self == IoCounters::default()
    }
}

/// Device number as written in cgroup files and /proc/diskstats.
pub type DevNum = (u32, u32);

fn dev_num(text: &str) -> Result<DevNum, ParseError> {
    let (a, b) = text
        .split_once(':')
        .ok_or_else(|| err(format!("bad device number {text:?}")))?;
    Ok((
        a.parse()
            .map_err(|_| err(format!("bad device number {text:?}")))?,
        b.parse()
            .map_err(|_| err(format!("bad device number {text:?}")))?,
    ))
}

/// v2 `io.stat`: nested keyed, "MAJ:MIN rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6".
/// Unknown keys (cost.*, the iocost controller's extras) are ignored.
pub fn io_stat(text: &str) -> Result<BTreeMap<DevNum, IoCounters>, ParseError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let dev = dev_num(it.next().unwrap_or_default())?;
        let mut c = IoCounters::default();
        for kv in it {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| err(format!("expected key=value, got {kv:?}")))?;
            let slot = match k {
                "rbytes" => &mut c.rbytes,
                "wbytes" => &mut c.wbytes,
                "rios" => &mut c.rios,
                "wios" => &mut c.wios,
                "dbytes" => &mut c.dbytes,
                "dios" => &mut c.dios,
                _ => continue,
            };
            *slot = v.parse().map_err(|_| err(format!("bad value in {kv:?}")))?;
        }
        out.insert(dev, c);
    }
    Ok(out)
}

/// Which v1 blkio file a table came from: bytes or operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkioUnit {
    Bytes,
    Ios,
}

/// v1 `blkio.*_recursive` tables: "MAJ:MIN Read|Write|Sync|Async|Discard|Total N"
/// lines and a final "Total N". Adds Read/Write/Discard into `acc`.
pub fn blkio_table(
    text: &str,
    unit: BlkioUnit,
    acc: &mut BTreeMap<DevNum, IoCounters>,
) -> Result<(), ParseError> {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Total", v] => {
                number(v)?;
            }
            [dev, op, v] => {
                let dev = dev_num(dev)?;
                let v = number(v)?;
                let c = acc.entry(dev).or_default();
                let (bytes, ios) = match *op {
                    "Read" => (&mut c.rbytes, &mut c.rios),
                    "Write" => (&mut c.wbytes, &mut c.wios),
                    "Discard" => (&mut c.dbytes, &mut c.dios),
                    "Sync" | "Async" | "Total" => continue,
                    _ => return Err(err(format!("unknown blkio operation {op:?}"))),
                };
                match unit {
                    BlkioUnit::Bytes => *bytes += v,
                    BlkioUnit::Ios => *ios += v,
                }
            }
            _ => return Err(err(format!("unexpected blkio line {line:?}"))),
        }
    }
    Ok(())
}

/// v1 `cpuacct.usage_all`: header "cpu user system", then "N user_ns system_ns".
pub fn cpuacct_usage_all(text: &str) -> Result<Vec<(u64, u64)>, ParseError> {
    let mut lines = text.lines();
    match lines
        .next()
        .map(str::split_whitespace)
        .map(Iterator::collect::<Vec<_>>)
    {
        Some(h) if h == ["cpu", "user", "system"] => {}
        _ => return Err(err("missing \"cpu user system\" header")),
    }
    let mut out = Vec::new();
    for (i, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [cpu, user, system] = f.as_slice() else {
            return Err(err(format!("unexpected line {line:?}")));
        };
        if number(cpu)? != i as u64 {
            return Err(err(format!("CPU {cpu} out of order")));
        }
        out.push((number(user)?, number(system)?));
    }
    Ok(out)
}

/// v1 `cpuacct.usage_percpu`: space separated nanoseconds, one per CPU.
pub fn number_list(text: &str) -> Result<Vec<u64>, ParseError> {
    text.split_whitespace().map(number).collect()
}

/// One line of a pressure stall file: the share of wall time some (or
/// all) tasks were stalled, averaged over 10, 60 and 300 s (percent, two
/// decimals), and the total stall time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Microseconds.
    pub total: u64,
}

/// A pressure stall file (`/proc/pressure/<res>`, a cgroup's
/// `<res>.pressure`; Documentation/accounting/psi.rst): a `some` line and,
/// on kernels that have it for this resource, a `full` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

fn psi_line(rest: &str) -> Result<PsiLine, ParseError> {
    let mut it = rest.split_whitespace();
    let mut field = |name: &str| -> Result<&str, ParseError> {
        it.next()
            .and_then(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| err(format!("expected {name}=... in {rest:?}")))
    };
    let avg = |v: &str| -> Result<f64, ParseError> {
        v.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| err(format!("bad average {v:?}")))
    };
    let line = PsiLine {
        avg10: avg(field("avg10")?)?,
        avg60: avg(field("avg60")?)?,
        avg300: avg(field("avg300")?)?,
        total: number(field("total")?)?,
    };
    match it.next() {
        None => Ok(line),
        Some(x) => Err(err(format!("unexpected {x:?} in {rest:?}"))),
    }
}

/// Parses a pressure stall file (kernel/sched/psi.c psi_show): `some`,
/// then an optional `full`, each once.
pub fn psi(text: &str) -> Result<Psi, ParseError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let some = lines
        .next()
        .and_then(|l| l.strip_prefix("some "))
        .ok_or_else(|| err("no \"some\" line first"))?;
    let full = match lines.next() {
        None => None,
        Some(l) => {
            Some(psi_line(l.strip_prefix("full ").ok_or_else(|| {
                err(format!("expected \"full\", got {l:?}"))
            })?)?)
        }
    };
    if let Some(l) = lines.next() {
        return Err(err(format!("unexpected line {l:?}")));
    }
    Ok(Psi {
        some: psi_line(some)?,
        full,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_max_is_none_not_zero() {
        assert_eq!(limit("max\n"), Ok(None));
        assert_eq!(limit("-1\n"), Ok(None));
        assert_eq!(limit("268435456\n"), Ok(Some(268435456)));
        assert!(limit("").is_err());
        assert!(limit("12k").is_err());
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(cpu_max("max 100000\n"), Ok((None, 100000)));
        assert_eq!(cpu_max("50000 100000\n"), Ok((Some(50000), 100000)));
        assert!(cpu_max("50000 0").is_err());
        assert!(cpu_max("50000").is_err());
    }

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(cpu_list("0-3,8,10-11\n"), Ok(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(cpu_list("\n"), Ok(vec![]));
        assert_eq!(cpu_list("1"), Ok(vec![1]));
        assert!(cpu_list("3-1").is_err());
        assert!(cpu_list("a").is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[0]), "0");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn flat_keyed_rejects_garbage() {
        let m = flat_keyed("anon 4096\nfile 8192\n").expect("parses");
        assert_eq!(m.get("anon"), Some(&4096));
        assert!(flat_keyed("anon\n").is_err());
        assert!(flat_keyed("anon x\n").is_err());
    }

    #[test]
    fn io_stat_ignores_cost_keys() {
        let m = io_stat(
            "254:0 rbytes=512 wbytes=16777216 rios=1 wios=16 dbytes=0 dios=0 cost.vrate=100\n",
        )
        .expect("parses");
        let c = m[&(254, 0)];
        assert_eq!((c.wbytes, c.wios, c.rbytes), (16777216, 16, 512));
        assert!(io_stat("254:0 rbytes\n").is_err());
    }

    #[test]
    fn blkio_tables_sum_per_device() {
        let mut acc = BTreeMap::new();
        let bytes = "254:0 Read 4096\n254:0 Write 16777216\n254:0 Sync 16777216\n254:0 Async 4096\n254:0 Discard 0\n254:0 Total 16781312\nTotal 16781312\n";
        let ios = "254:0 Read 1\n254:0 Write 16\n254:0 Sync 16\n254:0 Async 1\n254:0 Discard 0\n254:0 Total 17\nTotal 17\n";
        blkio_table(bytes, BlkioUnit::Bytes, &mut acc).expect("bytes");
        blkio_table(ios, BlkioUnit::Ios, &mut acc).expect("ios");
        let c = acc[&(254, 0)];
        assert_eq!(
            (c.rbytes, c.wbytes, c.rios, c.wios),
            (4096, 16777216, 1, 16)
        );
        assert!(blkio_table("254:0 Frob 1\n", BlkioUnit::Ios, &mut acc).is_err());
    }

    #[test]
    fn usage_all_needs_header_and_order() {
        assert_eq!(
            cpuacct_usage_all("cpu user system\n0 10 20\n1 30 40\n"),
            Ok(vec![(10, 20), (30, 40)])
        );
        assert!(cpuacct_usage_all("0 10 20\n").is_err());
        assert!(cpuacct_usage_all("cpu user system\n1 10 20\n").is_err());
    }
    #[test]
    fn pressure_files_as_the_kernel_writes_them() {
        // Captured: this host's /proc/pressure/io and a v2 cgroup's
        // cpu.pressure (tests/fixtures/v2).
        let p = psi("some avg10=0.00 avg60=0.18 avg300=0.51 total=48431025\nfull avg10=0.00 avg60=0.00 avg300=0.01 total=15055536\n")
            .expect("parses");
        assert_eq!(p.some.total, 48431025);
        assert_eq!(p.some.avg300, 0.51);
        assert_eq!(p.full.map(|f| f.total), Some(15055536));
        let cg = include_str!(
            "../../../tests/fixtures/v2/root/sys/fs/cgroup/proclens-fixture/cpu.pressure"
        );
        let p = psi(cg).expect("parses");
        assert_eq!((p.some.total, p.some.avg10), (16017723, 5.93));
        // Kernels before 5.13 have no "full" line for cpu.
        assert_eq!(
            psi("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n").map(|p| p.full),
            Ok(None)
        );
        for bad in [
            "",
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00\n",
            "some avg10=x avg60=0.00 avg300=0.00 total=0\n",
            "some avg60=0.00 avg10=0.00 avg300=0.00 total=0\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1 more=2\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
        ] {
            assert!(psi(bad).is_err(), "{bad:?}");
        }
    }
}
