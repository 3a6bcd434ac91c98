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
            Some(f) if VFile::CPU.contains(f) => format!("cpu/{}", f.name()),
            Some(f) => f.name().to_owned(),
            None => OTHER[i - VFile::ALL.len()].to_owned(),
        }
    }
}

const KINDS: usize = VFile::ALL.len() + OTHER.len();

#[derive(Debug, Default)]
pub struct Metrics {
    opens: [AtomicU64; KINDS],
    errors: [AtomicU64; KINDS],
    buckets: [AtomicU64; BUCKETS.len()],
    render_ns: AtomicU64,
    renders: AtomicU64,
}

/// Gauges and counters kept elsewhere, sampled when the file is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct State {
    /// Reads served a cached rendering, and reads that rendered anew.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub fallbacks: u64,
    pub cpu_accounts: usize,
    pub load_averages: usize,
    pub uptime: Duration,
}

impl Metrics {
    /// An open of `kind` whose content took `took` to produce; `ok` false
    /// when the reader got an error.
    pub fn opened(&self, kind: Kind, took: Duration, ok: bool) {
        let i = kind.index();
        self.opens[i].fetch_add(1, Relaxed);
        if !ok {
            self.errors[i].fetch_add(1, Relaxed);
        }
        let s = took.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|le| s <= *le) {
            self.buckets[b].fetch_add(1, Relaxed);
        }
        self.render_ns
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
        self.renders.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format version 0.0.4).
    pub fn render(&self, st: State) -> String {
        let mut o = String::with_capacity(4096);
        let per_file = [
            (
                "opens_total",
                "Files opened through the mount, by file.",
                &self.opens,
            ),
            (
                "open_errors_total",
                "Opens answered with an error, by file.",
                &self.errors,
            ),
        ];
        for (name, help, counts) in per_file {
            header(&mut o, name, "counter", help);
            for (i, n) in counts.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "proclens_{name}{{file=\"{}\"}} {}",
                    Kind::label(i),
                    n.load(Relaxed)
                );
            }
        }
        header(
            &mut o,
            "render_seconds",
            "histogram",
            "Time to produce a file's content for an open.",
        );
        let mut cumulative = 0;
        for (le, b) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += b.load(Relaxed);
            let _ = writeln!(
                o,
                "proclens_render_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.renders.load(Relaxed);
        let _ = writeln!(o, "proclens_render_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            o,
            "proclens_render_seconds_sum {}\nproclens_render_seconds_count {count}",
            self.render_ns.load(Relaxed) as f64 / 1e9
        );
        let scalars: [(&str, &str, &str, String); 6] = [
            (
                "render_cache_hits_total",
                "counter",
                "Reads served a rendering made for the same container within the cache lifetime.",
                st.cache_hits.to_string(),
            ),
            (
                "render_cache_misses_total",
                "counter",
                "Reads that rendered anew.",
                st.cache_misses.to_string(),
            ),
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
    let by_file = |name: &str| -> Vec<(String, f64)> {
        samples
            .iter()
            .filter(|(n, _, _)| *n == name)
            .filter_map(|(_, l, v)| {
                let f = l.strip_prefix("file=\"")?.strip_suffix('"')?;
                Some((f.to_owned(), *v))
            })
            .collect()
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "proclens serving for {:.0} s",
        get("proclens_uptime_seconds")?
    );
    let _ = writeln!(
        o,
        "containers tracked: {} CPU accounts, {} load averages",
        get("proclens_tracked_cpu_accounts")?,
        get("proclens_tracked_load_averages")?
    );
    let (hits, misses) = (
        get("proclens_render_cache_hits_total")?,
        get("proclens_render_cache_misses_total")?,
    );
    let _ = writeln!(
        o,
        "render cache: {hits} hits, {misses} misses ({:.0}% hits)",
        if hits + misses > 0.0 {
            hits * 100.0 / (hits + misses)
        } else {
            0.0
        }
    );
    let _ = writeln!(
        o,
        "fallbacks to the host's file: {}",
        get("proclens_fallbacks_total")?
    );
    let count = get("proclens_render_seconds_count")?;
    let sum = get("proclens_render_seconds_sum")?;
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(n, _, _)| *n == "proclens_render_seconds_bucket")
        .filter_map(|(_, l, v)| {
            let le = l.strip_prefix("le=\"")?.strip_suffix('"')?;
            Some((le.parse().unwrap_or(f64::INFINITY), *v))
        })
        .collect();
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * count)
            .map_or("-".to_owned(), |(le, _)| {
                if le.is_finite() {
                    format!("<= {:.0} µs", le * 1e6)
                } else {
                    "> 100 ms".to_owned()
                }
            })
    };
    let _ = writeln!(
        o,
        "content per open: mean {:.1} µs, median {}, 99th percentile {}",
        if count > 0.0 { sum / count * 1e6 } else { 0.0 },
        quantile(0.5),
        quantile(0.99)
    );
    let errors = by_file("proclens_open_errors_total");
    let _ = writeln!(o, "{:<14}{:>12}{:>10}", "file", "opens", "errors");
    for (f, n) in by_file("proclens_opens_total") {
        let e = errors.iter().find(|(g, _)| *g == f).map_or(0.0, |x| x.1);
        let _ = writeln!(o, "{f:<14}{n:>12}{e:>10}");
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
            cache_hits: 2,
            cache_misses: 1,
            fallbacks: 4,
            cpu_accounts: 5,
            load_averages: 6,
            uptime: Duration::from_secs(7),
        });
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
        // Histogram buckets are cumulative; the 1 s rendering is only in +Inf.
        let b = counts(&text, "proclens_render_seconds_bucket");
        let at = |le: &str| {
            b.iter()
                .find(|(l, _)| l == &format!("le=\"{le}\""))
                .map(|x| x.1)
        };
        assert_eq!(at("0.00005"), Some(1.0));
        assert_eq!(at("0.0001"), Some(2.0));
        assert_eq!(at("0.0025"), Some(2.0));
        assert_eq!(at("0.01"), Some(3.0));
        assert_eq!(at("+Inf"), Some(4.0));
        let every_family_typed = text.lines().filter_map(sample).all(|(n, _, _)| {
            let base = n.trim_end_matches("_bucket").trim_end_matches("_sum");
            let base = base.trim_end_matches("_count");
            text.contains(&format!("# TYPE {base} "))
        });
        assert!(every_family_typed, "{text}");

        let r = report(&text).expect("report");
        assert!(r.contains("5 CPU accounts, 6 load averages"), "{r}");
        assert!(r.contains("2 hits, 1 misses (67% hits)"), "{r}");
        assert!(r.contains("fallbacks to the host's file: 4"), "{r}");
        assert!(r.contains("median <= 100 µs"), "{r}");
        assert!(r.contains("99th percentile > 100 ms"), "{r}");
    }

    #[test]
    fn report_names_what_is_missing() {
        let e = report("# nothing here\n").expect_err("empty metrics");
        assert!(e.contains("proclens_uptime_seconds"), "{e}");
    }
}
