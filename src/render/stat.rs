//! /proc/stat: the container's own CPU lines and task counts; everything
//! else (btime, intr, ctxt, processes, softirq) from the host
//! (fs/proc/stat.c show_stat).

use super::RenderError;

/// One CPU line, in USER_HZ ticks, in the kernel's column order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

impl CpuTimes {
    fn columns(&self) -> [u64; 10] {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
            self.guest,
            self.guest_nice,
        ]
    }

    fn add(&mut self, o: &CpuTimes) {
        self.user += o.user;
        self.nice += o.nice;
        self.system += o.system;
        self.idle += o.idle;
        self.iowait += o.iowait;
        self.irq += o.irq;
        self.softirq += o.softirq;
        self.steal += o.steal;
        self.guest += o.guest;
        self.guest_nice += o.guest_nice;
    }
}

fn line(label: &str, t: &CpuTimes, ncols: usize) -> String {
    let mut s = String::from(label);
    for v in t.columns().iter().take(ncols) {
        s.push(' ');
        s.push_str(&v.to_string());
    }
    s
}

/// `cpus` are the visible CPUs' lines (cpu0..cpu{n-1}); the `cpu` line is
/// their sum, so the two always agree. Task counts of `None` keep the host's.
pub fn render(
    host: &str,
    cpus: &[CpuTimes],
    procs_running: Option<usize>,
    procs_blocked: Option<usize>,
) -> Result<String, RenderError> {
    let agg = host
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| RenderError("host stat has no \"cpu\" line".into()))?;
    // Keep the host's column count (older kernels print fewer than 10).
    let ncols = agg.split_whitespace().count() - 1;
    let mut total = CpuTimes::default();
    for c in cpus {
        total.add(c);
    }
    let mut out = String::with_capacity(host.len());
    for l in host.lines() {
        if l.starts_with("cpu ") {
            // The aggregate line has two spaces after "cpu".
            out.push_str(&line("cpu ", &total, ncols));
            out.push('\n');
            for (i, c) in cpus.iter().enumerate() {
                out.push_str(&line(&format!("cpu{i}"), c, ncols));
                out.push('\n');
            }
        } else if l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit) {
            // Host per-CPU lines are replaced above.
        } else if let (true, Some(n)) = (l.starts_with("procs_running "), procs_running) {
            out.push_str(&format!("procs_running {n}\n"));
        } else if let (true, Some(n)) = (l.starts_with("procs_blocked "), procs_blocked) {
            out.push_str(&format!("procs_blocked {n}\n"));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}
