//! Per-container load averages: the kernel's algorithm, sampled every 5 s
//! (LOAD_FREQ) by one thread, only for containers that have read
//! /proc/loadavg, forgotten once their cgroup directory is gone.

use crate::cgroup::Dir;
use crate::render::loadavg::step;
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
    use crate::cgroup::Version;

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
}
