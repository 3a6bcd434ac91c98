//! The daemon's own counters, served as `.proclens/metrics` in Prometheus
//! text format (root only) and printed for a person by `proclens status`.
//! Plain atomics: counting costs a few nanoseconds on the read path.

use crate::container::VFile;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What an open was for, besides the virtual files.
const OTHER: [&str; 2] = ["block_stat", "sysfs"];

/// Upper bounds of the render latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3, 100e-3,
];

/// Which kind of file a read was of.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Virtual(VFile),
    BlockStat,
    Sysfs,
}

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::Virtual(f) => VFile::ALL.iter().position(|x| *x == f).unwrap_or(0),
            Kind::BlockStat => VFile::ALL.len(),
            Kind::Sysfs => VFile::ALL.len() + 1,
        }
    }

    fn label(i: usize) -> String {
        match VFile::ALL.get(i) {
            Some(f) => f.label(),
            None => OTHER[i - VFile::ALL.len()].to_owned(),
        }
    }
}

const KINDS: usize = VFile::ALL.len() + OTHER.len();

/// The opens of one kind of file and how long their content took.
#[derive(Debug, Default)]
struct PerFile {
    opens: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    render_ns: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    files: [PerFile; KINDS],
}

/// Gauges and counters kept elsewhere, sampled when the file is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct State {
    pub fallbacks: u64,
    pub cpu_accounts: usize,
    pub load_averages: usize,
    /// Descriptors kept open for fresh reads (`source::kept`).
    pub kept_descriptors: usize,
    /// sysinfo(2): (calls answered, handed back to the kernel, containers).
    pub sysinfo: Option<(u64, u64, usize)>,
    /// Pressure files held open for PSI triggers (`super::psi`).
    pub psi_triggers: usize,
    pub uptime: Duration,
}

impl Metrics {
    /// An open of `kind` whose content took `took` to produce; `ok` false
    /// when the reader got an error.
    pub fn opened(&self, kind: Kind, took: Duration, ok: bool) {
        let f = &self.files[kind.index()];
        f.opens.fetch_add(1, Relaxed);
        if !ok {
            f.errors.fetch_add(1, Relaxed);
        }
        let s = took.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|le| s <= *le) {
            f.buckets[b].fetch_add(1, Relaxed);
        }
        f.render_ns
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// The Prometheus text exposition (format version 0.0.4).
    pub fn render(&self, st: State) -> String {
        let mut o = String::with_capacity(8192);
        header(
            &mut o,
            "opens_total",
            "counter",
            "Files opened through the mount, by file.",
        );
        for (i, f) in self.files.iter().enumerate() {
            let _ = writeln!(
                o,
                "proclens_opens_total{{file=\"{}\"}} {}",
                Kind::label(i),
                f.opens.load(Relaxed)
            );
        }
        header(
            &mut o,
            "open_errors_total",
            "counter",
            "Opens answered with an error, by file.",
        );
        for (i, f) in self.files.iter().enumerate() {
            let _ = writeln!(
                o,
                "proclens_open_errors_total{{file=\"{}\"}} {}",
                Kind::label(i),
                f.errors.load(Relaxed)
            );
        }
        header(
            &mut o,
            "render_seconds",
            "histogram",
            "Time to produce a file's content for an open, by file.",
        );
        for (i, f) in self.files.iter().enumerate() {
            let label = Kind::label(i);
            let mut cumulative = 0;
            for (le, b) in BUCKETS.iter().zip(&f.buckets) {
                cumulative += b.load(Relaxed);
                let _ = writeln!(
                    o,
                    "proclens_render_seconds_bucket{{file=\"{label}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = f.opens.load(Relaxed);
            let _ = writeln!(
                o,
                "proclens_render_seconds_bucket{{file=\"{label}\",le=\"+Inf\"}} {count}\n\
                 proclens_render_seconds_sum{{file=\"{label}\"}} {}\n\
                 proclens_render_seconds_count{{file=\"{label}\"}} {count}",
                f.render_ns.load(Relaxed) as f64 / 1e9
            );
        }
        let (answered, continued, served) = st.sysinfo.unwrap_or_default();
        let scalars: [(&str, &str, &str, String); 9] = [
            (
                "fallbacks_total",
                "counter",
                "Reads that got the host's file because rendering failed.",
                st.fallbacks.to_string(),
            ),
            (
                "tracked_cpu_accounts",
                "gauge",
                "Containers whose /proc/stat counters are kept.",
                st.cpu_accounts.to_string(),
            ),
            (
                "tracked_load_averages",
                "gauge",
                "Containers whose load average is sampled.",
                st.load_averages.to_string(),
            ),
            (
                "kept_descriptors",
                "gauge",
                "Cgroup directories, host files and task stat files kept open for fresh reads.",
                st.kept_descriptors.to_string(),
            ),
            (
                "sysinfo_answered_total",
                "counter",
                "sysinfo(2) calls of containers answered with the container's numbers.",
                answered.to_string(),
            ),
            (
                "sysinfo_continued_total",
                "counter",
                "sysinfo(2) calls handed back to the kernel (the host's numbers for that call).",
                continued.to_string(),
            ),
            (
                "sysinfo_containers",
                "gauge",
                "Containers whose sysinfo(2) calls this worker answers.",
                served.to_string(),
            ),
            (
                "psi_triggers",
                "gauge",
                "Pressure files opened for writing through the mount, each holding a cgroup pressure file for a PSI trigger.",
                st.psi_triggers.to_string(),
            ),
            (
                "uptime_seconds",
                "gauge",
                "Seconds since this daemon process started serving.",
                format!("{:.3}", st.uptime.as_secs_f64()),
            ),
        ];
        for (name, kind, help, value) in scalars {
            header(&mut o, name, kind, help);
            let _ = writeln!(o, "proclens_{name} {value}");
        }
        o
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        o,
        "# HELP proclens_{name} {help}\n# TYPE proclens_{name} {kind}"
    );
}

/// One sample line: metric name, labels text (without braces), value.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (key, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    match key.split_once('{') {
        Some((name, labels)) => Some((name, labels.strip_suffix('}')?, value)),
        None => Some((key, "", value)),
    }
}

/// The value of label `name` in a labels text (`file="stat",le="0.5"`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// The smallest bucket bound holding quantile `q` of a cumulative
/// histogram, as a person reads it.
fn quantile(buckets: &[(f64, f64)], count: f64, q: f64) -> String {
    if count == 0.0 {
        return "-".to_owned();
    }
    buckets
        .iter()
        .find(|(_, c)| *c >= q * count)
        .map_or("-".to_owned(), |(le, _)| {
            if le.is_finite() {
                format!("<={:.0}", le * 1e6)
            } else {
                ">100000".to_owned()
            }
        })
}

/// `proclens status`: the metrics text as a short report for a person.
pub fn report(text: &str) -> Result<String, String> {
    let samples: Vec<(&str, &str, f64)> = text.lines().filter_map(sample).collect();
    let get = |name: &str| {
        samples
            .iter()
            .find(|(n, l, _)| *n == name && l.is_empty())
            .map(|s| s.2)
            .ok_or_else(|| format!("no {name} in the metrics"))
    };
    let of_file = |name: &str, file: &str| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| *n == name && label(l, "file") == Some(file))
            .map_or(0.0, |s| s.2)
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "proclens serving for {:.0} s",
        get("proclens_uptime_seconds")?
    );
    let _ = writeln!(
        o,
        "containers tracked: {} CPU accounts, {} load averages; {} descriptors kept open",
        get("proclens_tracked_cpu_accounts")?,
        get("proclens_tracked_load_averages")?,
        get("proclens_kept_descriptors")?
    );
    let _ = writeln!(
        o,
        "fallbacks to the host's file: {}",
        get("proclens_fallbacks_total")?
    );
    let _ = writeln!(
        o,
        "sysinfo(2): {} containers, {} calls answered, {} handed to the kernel",
        get("proclens_sysinfo_containers")?,
        get("proclens_sysinfo_answered_total")?,
        get("proclens_sysinfo_continued_total")?
    );
    let _ = writeln!(
        o,
        "time to produce a file's content for an open, in µs (every open renders anew):"
    );
    let _ = writeln!(
        o,
        "{:<14}{:>10}{:>8}{:>10}{:>10}{:>10}",
        "file", "opens", "errors", "mean", "median", "p99"
    );
    let files: Vec<&str> = samples
        .iter()
        .filter(|(n, _, _)| *n == "proclens_opens_total")
        .filter_map(|(_, l, _)| label(l, "file"))
        .collect();
    if files.is_empty() {
        return Err("no proclens_opens_total in the metrics".into());
    }
    for f in files {
        let count = of_file("proclens_render_seconds_count", f);
        let sum = of_file("proclens_render_seconds_sum", f);
        let buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|(n, l, _)| {
                *n == "proclens_render_seconds_bucket" && label(l, "file") == Some(f)
            })
            .filter_map(|(_, l, v)| Some((label(l, "le")?.parse().unwrap_or(f64::INFINITY), *v)))
            .collect();
        let mean = if count > 0.0 {
            format!("{:.1}", sum / count * 1e6)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            o,
            "{f:<14}{:>10}{:>8}{mean:>10}{:>10}{:>10}",
            of_file("proclens_opens_total", f),
            of_file("proclens_open_errors_total", f),
            quantile(&buckets, count, 0.5),
            quantile(&buckets, count, 0.99)
        );
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(text: &str, name: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter_map(sample)
            .filter(|(n, _, _)| *n == name)
            .map(|(_, l, v)| (l.to_owned(), v))
            .collect()
    }

    #[test]
    fn counters_reach_the_exposition_and_the_report() {
        let m = Metrics::default();
        m.opened(
            Kind::Virtual(VFile::Meminfo),
            Duration::from_micros(30),
            true,
        );
        m.opened(
            Kind::Virtual(VFile::Meminfo),
            Duration::from_micros(70),
            true,
        );
        m.opened(
            Kind::Virtual(VFile::CpuOnline),
            Duration::from_millis(3),
            false,
        );
        m.opened(Kind::BlockStat, Duration::from_secs(1), true);
        let text = m.render(State {
            fallbacks: 4,
            cpu_accounts: 5,
            load_averages: 6,
            kept_descriptors: 8,
            sysinfo: Some((9, 1, 2)),
            psi_triggers: 9,
            uptime: Duration::from_secs(7),
        });
        assert!(text.contains("\nproclens_psi_triggers 9\n"), "{text}");
        let opens = counts(&text, "proclens_opens_total");
        assert!(
            opens.contains(&("file=\"meminfo\"".into(), 2.0)),
            "{opens:?}"
        );
        assert!(opens.contains(&("file=\"cpu/online\"".into(), 1.0)));
        assert!(opens.contains(&("file=\"block_stat\"".into(), 1.0)));
        let errors = counts(&text, "proclens_open_errors_total");
        assert!(errors.contains(&("file=\"cpu/online\"".into(), 1.0)));
        assert!(errors.contains(&("file=\"meminfo\"".into(), 0.0)));
        // Histogram buckets are cumulative, per file; the 1 s rendering of
        // block_stat is only in +Inf.
        let b = counts(&text, "proclens_render_seconds_bucket");
        let at = |file: &str, le: &str| {
            b.iter()
                .find(|(l, _)| l == &format!("file=\"{file}\",le=\"{le}\""))
                .map(|x| x.1)
        };
        assert_eq!(at("meminfo", "0.00005"), Some(1.0));
        assert_eq!(at("meminfo", "0.0001"), Some(2.0));
        assert_eq!(at("cpu/online", "0.0025"), Some(0.0));
        assert_eq!(at("cpu/online", "0.01"), Some(1.0));
        assert_eq!(at("block_stat", "0.1"), Some(0.0));
        assert_eq!(at("block_stat", "+Inf"), Some(1.0));
        let every_family_typed = text.lines().filter_map(sample).all(|(n, _, _)| {
            let base = n.trim_end_matches("_bucket").trim_end_matches("_sum");
            let base = base.trim_end_matches("_count");
            text.contains(&format!("# TYPE {base} "))
        });
        assert!(every_family_typed, "{text}");

        let r = report(&text).expect("report");
        assert!(r.contains("5 CPU accounts, 6 load averages"), "{r}");
        assert!(r.contains("8 descriptors kept open"), "{r}");
        assert!(r.contains("fallbacks to the host's file: 4"), "{r}");
        assert!(
            r.contains("sysinfo(2): 2 containers, 9 calls answered, 1 handed to the kernel"),
            "{r}"
        );
        let row = |f: &str| -> Vec<String> {
            r.lines()
                .find(|l| l.split_whitespace().next() == Some(f))
                .unwrap_or_else(|| panic!("no row {f} in {r}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        // meminfo: 2 opens, mean 50 µs, median within 50 µs, p99 within 100.
        assert_eq!(
            row("meminfo"),
            ["meminfo", "2", "0", "50.0", "<=50", "<=100"]
        );
        assert_eq!(row("block_stat")[5], ">100000");
        assert_eq!(row("stat"), ["stat", "0", "0", "-", "-", "-"]);
    }

    #[test]
    fn report_names_what_is_missing() {
        let e = report("# nothing here\n").expect_err("empty metrics");
        assert!(e.contains("proclens_uptime_seconds"), "{e}");
    }
}
