//! Per-container CPU lines for /proc/stat that never go backwards.
//!
//! user and system come from the cgroup's CPU time; what the container's
//! allowance (wall time x min(quota, cpuset size)) leaves unused is split
//! into steal and idle, integrated sample by sample, so a quota or cpuset
//! change alters the rate from then on and never rewrites the past. Each
//! line only ever grows by non-negative deltas, which is what top, mpstat
//! and psutil rely on.
//!
//! Steal is what it is in a VM: time the container's tasks were runnable
//! but not running, the CPU given to someone else, while the container was
//! under its allowance. It is the growth of its tasks' run delay (schedstat:
//! time spent waiting on a run queue) less the time its own quota held it
//! back (cpu.stat throttled time: throttling by its own quota means it used
//! its allowance, which stays busy-or-idle), and never more than the
//! unused allowance: taken out of idle, never out of user or system.

use crate::render::stat::CpuTimes;
use crate::source::cgroup::CpuUsage;
use crate::source::proc::TaskTime;
use std::collections::HashMap;

/// One visible CPU's counters, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Line {
    pub user: u64,
    pub system: u64,
    pub idle: u64,
    pub steal: u64,
}

/// How long the container's tasks waited for a CPU, at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Waits<'a> {
    /// Its tasks now, each with its run delay so far.
    pub tasks: &'a [TaskTime],
    /// Nanoseconds its own CFS quota held it back so far (summed over CPUs).
    pub throttled: u64,
    /// Nanoseconds per clock tick, the unit of the tasks' start times.
    pub ns_per_tick: u64,
}

/// What was sampled at one instant.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// CLOCK_BOOTTIME, ns.
    pub now: u64,
    pub usage: &'a CpuUsage,
    /// Host CPUs shown as cpu0..cpu{n-1}.
    pub visible: &'a [u32],
    /// CPUs' worth of time the cgroup may use: min(quota, cpuset size).
    pub rate: f64,
    /// `None` where the kernel does not say (no schedstat, the host).
    pub waits: Option<Waits<'a>>,
}

/// The integrated state of one container.
#[derive(Debug, Clone)]
pub struct Account {
    last_now: u64,
    last_user: u64,
    last_system: u64,
    last_per_cpu: Option<Vec<(u64, u64)>>,
    /// Each task's (start time, run delay) at the last sample with waits.
    last_waits: HashMap<u32, (u64, u64)>,
    /// The throttled time then; `None`: no baseline (no waits last time).
    last_throttled: Option<u64>,
    lines: Vec<Line>,
}

/// Splits `total` over `n` slots as evenly as integers allow.
fn spread(total: u64, n: usize) -> impl Iterator<Item = u64> {
    let n = n.max(1) as u64;
    (0..n).map(move |i| total / n + u64::from(i < total % n))
}

/// Per-line (user, system) of `per_cpu` counters: each visible CPU gets its
/// host CPU's time, and time spent on CPUs no longer visible is spread evenly
/// so that the sum is the cgroup's total.
fn split(
    user: u64,
    system: u64,
    per_cpu: Option<&[(u64, u64)]>,
    visible: &[u32],
) -> Vec<(u64, u64)> {
    let n = visible.len().max(1);
    let mut out = vec![(0u64, 0u64); n];
    let (mut ru, mut rs) = (user, system);
    if let Some(pc) = per_cpu {
        for (slot, cpu) in out.iter_mut().zip(visible) {
            if let Some(&(u, s)) = pc.get(*cpu as usize) {
                let (u, s) = (u.min(ru), s.min(rs));
                *slot = (u, s);
                ru -= u;
                rs -= s;
            }
        }
    }
    for ((slot, u), s) in out.iter_mut().zip(spread(ru, n)).zip(spread(rs, n)) {
        slot.0 += u;
        slot.1 += s;
    }
    out
}

impl Account {
    /// First sight of a container started at `start` (boot-relative ns): its
    /// unused allowance so far is what it could have used at today's rate
    /// minus what it did; of that, its tasks' waits (all of theirs: they
    /// started with the container or after it) less its throttling are
    /// steal, the rest idle.
    pub fn new(start: u64, s: &Sample) -> Account {
        let n = s.visible.len().max(1);
        let used = s.usage.user + s.usage.system;
        let allowance = (s.now.saturating_sub(start) as f64 * s.rate) as u64;
        let unused = allowance.saturating_sub(used);
        let mut a = Account {
            last_now: s.now,
            last_user: s.usage.user,
            last_system: s.usage.system,
            last_per_cpu: s.usage.per_cpu.clone(),
            last_waits: HashMap::new(),
            last_throttled: None,
            lines: Vec::new(),
        };
        let stall = match &s.waits {
            Some(w) => {
                a.note_waits(w);
                w.tasks
                    .iter()
                    .map(|t| t.run_delay)
                    .sum::<u64>()
                    .saturating_sub(w.throttled)
            }
            None => 0,
        };
        let steal = stall.min(unused);
        a.lines = split(
            s.usage.user,
            s.usage.system,
            s.usage.per_cpu.as_deref(),
            s.visible,
        )
        .into_iter()
        .zip(spread(unused - steal, n))
        .zip(spread(steal, n))
        .map(|(((user, system), idle), steal)| Line {
            user,
            system,
            idle,
            steal,
        })
        .collect();
        a
    }

    /// Remembers `w` as the baseline of the next sample.
    fn note_waits(&mut self, w: &Waits) {
        self.last_waits = w
            .tasks
            .iter()
            .map(|t| (t.tid, (t.starttime, t.run_delay)))
            .collect();
        self.last_throttled = Some(w.throttled);
    }

    /// How long the tasks waited since the last sample, less the time the
    /// quota held them back meanwhile. A task seen before adds the growth
    /// of its run delay; one started since the last sample (`since`) all of
    /// it; one older but not seen before (no baseline) nothing. A task that
    /// exited since takes its last wait with it.
    fn stalled_since(&mut self, w: &Waits, since: u64) -> u64 {
        let waited: u64 = w
            .tasks
            .iter()
            .map(|t| match self.last_waits.get(&t.tid) {
                Some((start, rd)) if *start == t.starttime => t.run_delay.saturating_sub(*rd),
                // Start times are whole ticks, rounded down.
                _ if (t.starttime + 1).saturating_mul(w.ns_per_tick) > since => t.run_delay,
                _ => 0,
            })
            .sum();
        let throttled = self
            .last_throttled
            .map_or(0, |t| w.throttled.saturating_sub(t));
        let known = self.last_throttled.is_some();
        self.note_waits(w);
        if known {
            waited.saturating_sub(throttled)
        } else {
            0
        }
    }

    /// Adds what happened since the last sample. A sample taken before the
    /// last one applied changes nothing (its counters would be older).
    pub fn advance(&mut self, s: &Sample) {
        if s.now < self.last_now {
            return;
        }
        let n = s.visible.len().max(1);
        // Fewer CPUs visible now: fold the vanished lines into the others
        // so the totals keep growing.
        if self.lines.len() > n {
            let gone: Vec<Line> = self.lines.drain(n..).collect();
            for (i, g) in gone.iter().enumerate() {
                let l = &mut self.lines[i % n];
                l.user += g.user;
                l.system += g.system;
                l.idle += g.idle;
                l.steal += g.steal;
            }
        }
        self.lines.resize(n, Line::default());
        let dt = s.now.saturating_sub(self.last_now);
        // Kernel counters only grow, but a recreated cgroup restarts them:
        // a negative delta counts as none.
        let du = s.usage.user.saturating_sub(self.last_user);
        let ds = s.usage.system.saturating_sub(self.last_system);
        let per_cpu_delta: Option<Vec<(u64, u64)>> = match (&s.usage.per_cpu, &self.last_per_cpu) {
            (Some(now), Some(then)) => Some(
                now.iter()
                    .enumerate()
                    .map(|(i, (u, sy))| {
                        let (pu, ps) = then.get(i).copied().unwrap_or((0, 0));
                        (u.saturating_sub(pu), sy.saturating_sub(ps))
                    })
                    .collect(),
            ),
            _ => None,
        };
        let busy = split(du, ds, per_cpu_delta.as_deref(), s.visible);
        let allowance = (dt as f64 * s.rate) as u64;
        let unused = allowance.saturating_sub(du + ds);
        let stall = match &s.waits {
            Some(w) => self.stalled_since(w, self.last_now),
            None => {
                // No baseline across a sample that could not say.
                self.last_waits.clear();
                self.last_throttled = None;
                0
            }
        };
        let steal = stall.min(unused);
        for (((l, (u, sy)), i), st) in self
            .lines
            .iter_mut()
            .zip(busy)
            .zip(spread(unused - steal, n))
            .zip(spread(steal, n))
        {
            l.user += u;
            l.system += sy;
            l.idle += i;
            l.steal += st;
        }
        self.last_now = s.now;
        self.last_user = s.usage.user;
        self.last_system = s.usage.system;
        self.last_per_cpu = s.usage.per_cpu.clone();
    }

    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    pub fn idle_ns(&self) -> u64 {
        self.lines.iter().map(|l| l.idle).sum()
    }

    /// The lines in USER_HZ ticks.
    pub fn times(&self, ticks_per_sec: u64) -> Vec<CpuTimes> {
        let ns_per_tick = 1_000_000_000 / ticks_per_sec.max(1);
        self.lines
            .iter()
            .map(|l| CpuTimes {
                user: l.user / ns_per_tick,
                system: l.system / ns_per_tick,
                idle: l.idle / ns_per_tick,
                steal: l.steal / ns_per_tick,
                ..CpuTimes::default()
            })
            .collect()
    }
}

/// Hex of a path's bytes: state records are one line of tab-separated
/// fields, and a cgroup path may hold any byte but NUL.
pub(crate) fn hex_path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn unhex_path(s: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(std::ffi::OsString::from_vec(bytes).into())
}

/// The first line of a state dump; a successor that does not know the
/// version starts afresh instead of misreading it.
pub const STATE_HEADER: &str = "proclens-state 1";

impl Account {
    /// One state record (`a` line) for the account of the cgroup directory
    /// `path` with inode `ino`; [`Account::from_record`] reads it back.
    pub fn to_record(&self, path: &std::path::Path, ino: u64) -> String {
        let per_cpu = match &self.last_per_cpu {
            None => "-".to_owned(),
            Some(v) => v
                .iter()
                .map(|(u, s)| format!("{u}:{s}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        let lines = self
            .lines
            .iter()
            .map(|l| format!("{}:{}:{}:{}", l.user, l.system, l.idle, l.steal))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "a\t{}\t{ino}\t{}\t{}\t{}\t{per_cpu}\t{lines}",
            hex_path(path),
            self.last_now,
            self.last_user,
            self.last_system
        )
    }

    /// Parses a record of [`Account::to_record`]: (path, inode, account).
    /// Lines of three numbers (a predecessor without steal) have none so
    /// far. The waits' baseline is not handed over: the first sample after
    /// takes one, and shows no steal for the time in between.
    pub fn from_record(line: &str) -> Option<(std::path::PathBuf, u64, Account)> {
        let f: Vec<&str> = line.split('\t').collect();
        let [tag, path, ino, now, user, system, per_cpu, lines] = f[..] else {
            return None;
        };
        if tag != "a" {
            return None;
        }
        let pair = |x: &str| -> Option<(u64, u64)> {
            let (a, b) = x.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let last_per_cpu = match per_cpu {
            "-" => None,
            v => Some(v.split(',').map(pair).collect::<Option<Vec<_>>>()?),
        };
        let lines = lines
            .split(',')
            .map(|x| {
                let mut it = x.split(':').map(|n| n.parse::<u64>().ok());
                let l = Line {
                    user: it.next()??,
                    system: it.next()??,
                    idle: it.next()??,
                    steal: match it.next() {
                        None => 0,
                        Some(v) => v?,
                    },
                };
                it.next().is_none().then_some(l)
            })
            .collect::<Option<Vec<Line>>>()?;
        Some((
            unhex_path(path)?,
            ino.parse().ok()?,
            Account {
                last_now: now.parse().ok()?,
                last_user: user.parse().ok()?,
                last_system: system.parse().ok()?,
                last_per_cpu,
                last_waits: HashMap::new(),
                last_throttled: None,
                lines,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(user: u64, system: u64, per_cpu: Option<Vec<(u64, u64)>>) -> CpuUsage {
        CpuUsage {
            user,
            system,
            per_cpu,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn saturating_a_half_cpu_quota_leaves_no_idle() {
        // Rule (DESIGN 4, stat): idle = allowance - used. 0.5 CPU for 10 s
        // is 5 s of allowance; a container that used 5 s has no idle.
        let u = usage(4 * S, S, None);
        let a = Account::new(
            0,
            &Sample {
                now: 10 * S,
                usage: &u,
                visible: &[1],
                rate: 0.5,
                waits: None,
            },
        );
        assert_eq!(
            a.lines(),
            &[Line {
                user: 4 * S,
                system: S,
                idle: 0,
                steal: 0
            }]
        );
    }

    #[test]
    fn idle_container_is_all_idle_over_its_cpus() {
        // 2 CPUs for 10 s, nothing used: 20 s idle, 10 s per line.
        let u = usage(0, 0, None);
        let mut a = Account::new(
            0,
            &Sample {
                now: 10 * S,
                usage: &u,
                visible: &[0, 1],
                rate: 2.0,
                waits: None,
            },
        );
        assert_eq!(a.idle_ns(), 20 * S);
        a.advance(&Sample {
            now: 11 * S,
            usage: &u,
            visible: &[0, 1],
            rate: 2.0,
            waits: None,
        });
        assert_eq!(a.lines()[0].idle, 11 * S);
        assert_eq!(a.lines()[1].idle, 11 * S);
    }

    #[test]
    fn v1_per_cpu_time_lands_on_its_line() {
        // Host CPUs 2 and 3 visible as cpu0 and cpu1.
        let u = usage(30, 3, Some(vec![(0, 0), (0, 0), (10, 1), (20, 2)]));
        let a = Account::new(
            0,
            &Sample {
                now: 0,
                usage: &u,
                visible: &[2, 3],
                rate: 2.0,
                waits: None,
            },
        );
        assert_eq!((a.lines()[0].user, a.lines()[0].system), (10, 1));
        assert_eq!((a.lines()[1].user, a.lines()[1].system), (20, 2));
    }

    fn task(tid: u32, starttime: u64, run_delay: u64) -> TaskTime {
        TaskTime {
            tid,
            starttime,
            run_delay,
        }
    }

    /// 10 ms ticks.
    const TICK: u64 = 10_000_000;

    fn waits(tasks: &[TaskTime], throttled: u64) -> Option<Waits<'_>> {
        Some(Waits {
            tasks,
            throttled,
            ns_per_tick: TICK,
        })
    }

    #[test]
    fn never_backwards_when_cpuset_quota_and_waits_change() {
        let mut t = 0;
        let mut used = 0;
        let mut delay = 0;
        let mut throttled = 0;
        let u0 = usage(0, 0, None);
        let mut a = Account::new(
            0,
            &Sample {
                now: 0,
                usage: &u0,
                visible: &[0, 1, 2, 3],
                rate: 4.0,
                waits: None,
            },
        );
        let mut prev_total = 0;
        let mut prev_lines = a.lines().to_vec();
        for step in 0..200u64 {
            t += S / 10;
            used += S / 20 * (step % 3);
            delay += S / 7 * (step % 5);
            throttled += S / 30 * (step % 2);
            let visible: Vec<u32> = (0..(1 + step % 4) as u32).collect();
            let rate = 0.25 + (step % 7) as f64 * 0.5;
            let u = usage(used / 2, used - used / 2, None);
            // Tasks come and go; every fourth sample cannot say.
            let tasks = [
                task(1, 0, delay),
                task(2 + (step / 10) as u32, step, delay / 3),
            ];
            a.advance(&Sample {
                now: t,
                usage: &u,
                visible: &visible,
                rate,
                waits: if step % 4 == 3 {
                    None
                } else {
                    waits(&tasks, throttled)
                },
            });
            let total: u64 = a
                .lines()
                .iter()
                .map(|l| l.user + l.system + l.idle + l.steal)
                .sum();
            assert!(total >= prev_total, "total went backwards at step {step}");
            // Steal is taken out of idle: user and system stay the cgroup's.
            let busy: u64 = a.lines().iter().map(|l| l.user + l.system).sum();
            assert_eq!(busy, used, "step {step}");
            for (i, l) in a.lines().iter().enumerate() {
                if visible.len() >= prev_lines.len() || i < visible.len() {
                    if let Some(p) = prev_lines.get(i) {
                        assert!(
                            l.user >= p.user
                                && l.system >= p.system
                                && l.idle >= p.idle
                                && l.steal >= p.steal,
                            "line {i} went backwards at step {step}"
                        );
                    }
                }
            }
            prev_total = total;
            prev_lines = a.lines().to_vec();
        }
        assert!(
            a.lines().iter().map(|l| l.steal).sum::<u64>() > 0,
            "some of the waits were steal"
        );
    }

    /// The case: two busy loops in a container allowed 1.5 CPUs,
    /// the host giving it 0.5 CPU for a second: each loop waited 0.75 s.
    #[test]
    fn the_wait_under_the_allowance_is_steal_not_idle() {
        let u0 = usage(0, 0, None);
        let t0 = [task(10, 0, 0), task(11, 0, 0)];
        let mut a = Account::new(
            0,
            &Sample {
                now: 0,
                usage: &u0,
                visible: &[0, 1],
                rate: 1.5,
                waits: waits(&t0, 0),
            },
        );
        let u1 = usage(S / 2, 0, None);
        let t1 = [task(10, 0, 3 * S / 4), task(11, 0, 3 * S / 4)];
        a.advance(&Sample {
            now: S,
            usage: &u1,
            visible: &[0, 1],
            rate: 1.5,
            waits: waits(&t1, 0),
        });
        // 1.5 s of allowance, 0.5 s used, 1.5 s waited: 1 s is steal, and
        // no more (the rest of the waiting is beyond its allowance).
        let steal: u64 = a.lines().iter().map(|l| l.steal).sum();
        assert_eq!((steal, a.idle_ns()), (S, 0));
        // Half of it on each visible CPU.
        assert_eq!(a.lines()[0].steal, S / 2);
        // Then the host leaves it alone: it uses its allowance, no steal.
        let u2 = usage(S / 2 + 3 * S / 2, 0, None);
        a.advance(&Sample {
            now: 2 * S,
            usage: &u2,
            visible: &[0, 1],
            rate: 1.5,
            waits: waits(&t1, 0),
        });
        let steal2: u64 = a.lines().iter().map(|l| l.steal).sum();
        assert_eq!((steal2, a.idle_ns()), (S, 0));
    }

    #[test]
    fn throttling_by_its_own_quota_is_not_steal() {
        // 0.5 CPU, one task that bursts for the first half second (its
        // quota lets it run half of that, it waits the other half,
        // throttled) and sleeps the second.
        let u0 = usage(0, 0, None);
        let t0 = [task(10, 0, 0)];
        let mut a = Account::new(
            0,
            &Sample {
                now: 0,
                usage: &u0,
                visible: &[0],
                rate: 0.5,
                waits: waits(&t0, 0),
            },
        );
        let u1 = usage(S / 4, 0, None);
        let t1 = [task(10, 0, S / 4)];
        a.advance(&Sample {
            now: S,
            usage: &u1,
            visible: &[0],
            rate: 0.5,
            waits: waits(&t1, S / 4),
        });
        assert_eq!((a.lines()[0].steal, a.idle_ns()), (0, S / 4));
    }

    #[test]
    fn a_task_started_since_counts_all_its_wait_an_unknown_older_one_none() {
        let u0 = usage(0, 0, None);
        let t0 = [task(10, 0, 5 * S)];
        let mut a = Account::new(
            0,
            &Sample {
                now: 10 * S,
                usage: &u0,
                visible: &[0, 1],
                rate: 2.0,
                waits: waits(&t0, 0),
            },
        );
        // First sight: the waits so far (5 s) are steal, out of 20 s idle.
        assert_eq!(a.lines().iter().map(|l| l.steal).sum::<u64>(), 5 * S);
        // Task 10 exited; 11 started at 10.5 s (1050 ticks) and waited
        // 0.2 s; 12 is older (started at 1 s) but was never seen.
        let t1 = [task(11, 1050, S / 5), task(12, 100, 3 * S)];
        a.advance(&Sample {
            now: 11 * S,
            usage: &u0,
            visible: &[0, 1],
            rate: 2.0,
            waits: waits(&t1, 0),
        });
        assert_eq!(
            a.lines().iter().map(|l| l.steal).sum::<u64>(),
            5 * S + S / 5
        );
        // A tid given to another task (started at 11.5 s) is a new task.
        let t2 = [task(11, 1150, S / 10), task(12, 100, 3 * S + S / 10)];
        a.advance(&Sample {
            now: 12 * S,
            usage: &u0,
            visible: &[0, 1],
            rate: 2.0,
            waits: waits(&t2, 0),
        });
        assert_eq!(
            a.lines().iter().map(|l| l.steal).sum::<u64>(),
            5 * S + S / 5 + S / 10 + S / 10
        );
    }

    #[test]
    fn a_sample_without_waits_has_no_steal_and_no_baseline_after() {
        let u0 = usage(0, 0, None);
        let t0 = [task(10, 0, 0)];
        let mut a = Account::new(
            0,
            &Sample {
                now: 0,
                usage: &u0,
                visible: &[0],
                rate: 1.0,
                waits: waits(&t0, 0),
            },
        );
        a.advance(&Sample {
            now: S,
            usage: &u0,
            visible: &[0],
            rate: 1.0,
            waits: None,
        });
        // The next window starts a baseline: the 0.5 s waited across the
        // blind sample is not put in one window.
        let t2 = [task(10, 0, S / 2)];
        a.advance(&Sample {
            now: 2 * S,
            usage: &u0,
            visible: &[0],
            rate: 1.0,
            waits: waits(&t2, 0),
        });
        assert_eq!((a.lines()[0].steal, a.idle_ns()), (0, 2 * S));
        let t3 = [task(10, 0, S / 2 + S / 4)];
        a.advance(&Sample {
            now: 3 * S,
            usage: &u0,
            visible: &[0],
            rate: 1.0,
            waits: waits(&t3, 0),
        });
        assert_eq!(a.lines()[0].steal, S / 4);
    }

    #[test]
    fn a_record_reads_back_as_the_same_account() {
        let u = usage(30, 3, Some(vec![(0, 0), (10, 1), (20, 2)]));
        let w = [task(4, 0, S)];
        let mut a = Account::new(
            0,
            &Sample {
                now: 5 * S,
                usage: &u,
                visible: &[1, 2],
                rate: 1.5,
                waits: waits(&w, 0),
            },
        );
        assert!(a.lines()[0].steal > 0, "a record with steal");
        a.advance(&Sample {
            now: 6 * S,
            usage: &u,
            visible: &[1, 2],
            rate: 1.5,
            waits: None,
        });
        let path = std::path::Path::new("/sys/fs/cgroup/cpu/a b\t\n/c");
        let rec = a.to_record(path, 42);
        assert_eq!(rec.lines().count(), 1, "one line per record: {rec:?}");
        let (p, ino, b) = Account::from_record(&rec).expect("parses");
        assert_eq!((p.as_path(), ino), (path, 42));
        assert_eq!(b.lines(), a.lines());
        assert_eq!(b.to_record(path, 42), rec);
        assert!(Account::from_record("a\tzz\t1\t2\t3\t4\t-\t1:2:3").is_none());
        assert!(Account::from_record(&format!("{rec}:9")).is_none());
        // A predecessor's record without steal reads as none so far.
        let (_, _, old) = Account::from_record("a\t2f\t7\t1\t2\t3\t-\t1:2:3,4:5:6")
            .expect("the format without steal");
        assert_eq!(
            old.lines(),
            &[
                Line {
                    user: 1,
                    system: 2,
                    idle: 3,
                    steal: 0
                },
                Line {
                    user: 4,
                    system: 5,
                    idle: 6,
                    steal: 0
                }
            ]
        );
    }
}
