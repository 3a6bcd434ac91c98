//! Per-container load averages: the kernel's algorithm, sampled every 5 s
//! (LOAD_FREQ) by one thread, only for containers that have read
//! /proc/loadavg, forgotten once their cgroup directory is gone.

use super::cputime::{hex_path, unhex_path};
use crate::render::loadavg::step;
use crate::source::cgroup::{Dir, Version};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// kernel/sched/loadavg.c: LOAD_FREQ is 5 s (+1 tick).
pub const INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Entry {
    dir: Dir,
    avg: [u64; 3],
}

#[derive(Debug, Default)]
pub struct Tracker {
    entries: Mutex<HashMap<PathBuf, Entry>>,
}

impl Tracker {
    /// Starts tracking `dir` if needed; returns its averages (fixed point).
    pub fn track(&self, dir: &Dir) -> [u64; 3] {
        let Ok(mut e) = self.entries.lock() else {
            return [0; 3];
        };
        e.entry(dir.path.clone())
            .or_insert_with(|| Entry {
                dir: dir.clone(),
                avg: [0; 3],
            })
            .avg
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The averages as state records (`l` lines), one per tracked cgroup.
    pub fn export(&self) -> String {
        let Ok(e) = self.entries.lock() else {
            return String::new();
        };
        e.values()
            .map(|x| {
                let v = match x.dir.version {
                    Version::V1 => 1,
                    Version::V2 => 2,
                };
                format!(
                    "l\t{}\t{}\t{v}\t{}\t{}\t{}\n",
                    hex_path(&x.dir.path),
                    hex_path(&x.dir.top),
                    x.avg[0],
                    x.avg[1],
                    x.avg[2]
                )
            })
            .collect()
    }

    /// Takes over the `l` records of [`Tracker::export`] found in `text`
    /// (other lines are skipped); returns how many.
    pub fn import(&self, text: &str) -> usize {
        let parse = |line: &str| -> Option<Entry> {
            let f: Vec<&str> = line.split('\t').collect();
            let ["l", path, top, v, a, b, c] = f[..] else {
                return None;
            };
            let version = match v {
                "1" => Version::V1,
                "2" => Version::V2,
                _ => return None,
            };
            Some(Entry {
                dir: Dir {
                    version,
                    path: unhex_path(path)?,
                    top: unhex_path(top)?,
                },
                avg: [a.parse().ok()?, b.parse().ok()?, c.parse().ok()?],
            })
        };
        let Ok(mut e) = self.entries.lock() else {
            return 0;
        };
        let mut n = 0;
        for entry in text.lines().filter_map(parse) {
            e.insert(entry.dir.path.clone(), entry);
            n += 1;
        }
        n
    }

    /// One sampling cycle. `count` returns the number of tasks in R or D
    /// state, or `None` when the cgroup is gone. The lock is not held while
    /// counting, so reads never wait for a cycle.
    pub fn sample(&self, count: impl Fn(&Dir) -> Option<u64>) {
        let dirs: Vec<Dir> = match self.entries.lock() {
            Ok(e) => e.values().map(|x| x.dir.clone()).collect(),
            Err(_) => return,
        };
        let counts: Vec<(PathBuf, Option<u64>)> =
            dirs.iter().map(|d| (d.path.clone(), count(d))).collect();
        let Ok(mut e) = self.entries.lock() else {
            return;
        };
        for (path, n) in counts {
            match n {
                Some(n) => {
                    if let Some(x) = e.get_mut(&path) {
                        step(&mut x.avg, n);
                    }
                }
                None => {
                    log::debug!("forgetting load average of {}: cgroup gone", path.display());
                    e.remove(&path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_samples_and_forgets() {
        let t = Tracker::default();
        let d = Dir {
            version: Version::V2,
            path: "/x/a".into(),
            top: "/x".into(),
        };
        assert_eq!(t.track(&d), [0; 3]);
        t.sample(|_| Some(2));
        assert_eq!(t.track(&d)[0], 328, "one kernel step of 2 tasks from 0");
        t.sample(|_| None);
        assert!(t.is_empty(), "a gone cgroup is forgotten");
    }

    #[test]
    fn export_reads_back() {
        let t = Tracker::default();
        let d = Dir {
            version: Version::V1,
            path: "/x/a b".into(),
            top: "/x".into(),
        };
        t.track(&d);
        t.sample(|_| Some(3));
        let text = t.export();
        let u = Tracker::default();
        assert_eq!(u.import(&format!("junk\n{text}a\tnot a load line\n")), 1);
        assert_eq!(u.track(&d), t.track(&d));
        assert_eq!(u.export(), text);
    }
}
