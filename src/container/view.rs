//! Ties callers, cgroup readers, state and renderers together: given a
//! virtual file and a reader, produce the bytes that reader sees. A failure
//! to render gives the reader the host's file, logged once a minute per
//! cause, never a crash or a torn file. Knows nothing of FUSE: a front end
//! hands it a pid and gets bytes back.

use super::caller::{self, Caller, Resolver};
use super::cputime::{Account, Sample, Waits};
use super::loadavg::Tracker;
use super::vfile::VFile;
use crate::render::{self, meminfo, RenderError};
use crate::source::cgroup::{self, Cgroups, Dir, Placement};
use crate::source::host::{self, Host};
use crate::source::kept::Budget;
use crate::source::proc;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Caller(#[from] caller::Error),
    #[error(transparent)]
    Cgroup(#[from] cgroup::Error),
    #[error(transparent)]
    Host(#[from] host::Error),
    #[error("{file}: {error}")]
    Render {
        file: &'static str,
        error: RenderError,
    },
    #[error("renderer panicked: {0}")]
    Panic(String),
    #[error("opening {path} for a trigger: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Cap the visible CPU count at ceil(quota/period) (lxcfs --enable-cfs).
    pub cfs: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { cfs: true }
    }
}

/// One container's CPU account. Its lock is held from reading the cgroup's
/// CPU time to reading the lines, so samples apply in the order they were
/// taken and every reader sees counters at least as large as the last.
type AccountSlot = Arc<Mutex<Account>>;

/// What one sample of a container's CPU account is made of.
#[derive(Debug)]
struct CpuRead {
    usage: cgroup::CpuUsage,
    tasks: Option<proc::TaskSample>,
    throttled: u64,
    now: u64,
}

/// How often the same failure is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Views {
    host: Host,
    cgroups: Cgroups,
    resolver: Resolver,
    opts: Options,
    ticks: u64,
    tasks: proc::Tasks,
    accounts: Mutex<HashMap<(PathBuf, u64), AccountSlot>>,
    load: Tracker,
    /// Set while a successor daemon takes over the state: CPU lines and
    /// load averages hold still, so neither daemon shows less than the other.
    frozen: std::sync::atomic::AtomicBool,
    fallbacks: AtomicU64,
    logged: Mutex<HashMap<String, Instant>>,
}

/// The CPUs a container sees and how much CPU time it may use per second.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuView {
    pub visible: Vec<u32>,
    pub rate: f64,
}

impl Views {
    /// Everything below `root` (`/` in production).
    pub fn new(root: &Path, opts: Options) -> Result<Views, Error> {
        let budget = Budget::for_process();
        Ok(Views {
            host: Host::new(root, budget.host),
            cgroups: Cgroups::discover(root, budget.dir_fds)?,
            resolver: Resolver::new(root)?,
            tasks: proc::Tasks::new(root, budget.tasks),
            opts,
            ticks: host::clk_tck(),
            accounts: Mutex::new(HashMap::new()),
            load: Tracker::default(),
            frozen: Default::default(),
            fallbacks: AtomicU64::new(0),
            logged: Mutex::new(HashMap::new()),
        })
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// How many reads got the host's file because rendering failed.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub fn caller(&self, pid: u32) -> Result<Arc<Caller>, Error> {
        Ok(self.resolver.resolve(&self.cgroups, pid)?)
    }

    /// A reader in cgroup `path`: a process found in it (one inside a
    /// container's pid namespace if there is one, since the runtime's own
    /// helper processes sit in the cgroup too), else the cgroup on its own,
    /// seen from the host's pid namespace.
    pub fn caller_in_cgroup(&self, path: &str) -> Result<Arc<Caller>, Error> {
        let container = self.cgroups.membership_of_path(path);
        let placement = self.cgroups.locate(&container);
        let mut first = None;
        if let Some(dir) = placement.tasks_dir() {
            for pid in self.cgroups.tasks(dir)?.into_iter().take(64) {
                // Only processes whose container holds this cgroup (a
                // process below it, in a container of its own, reads
                // something else).
                let Ok(c) = self.caller(pid) else { continue };
                if !c
                    .placement
                    .tasks_dir()
                    .is_some_and(|d| dir.path.starts_with(&d.path))
                {
                    continue;
                }
                if !c.host {
                    return Ok(c);
                }
                first.get_or_insert(c);
            }
        }
        Ok(first.unwrap_or_else(|| {
            Arc::new(Caller {
                pid: 0,
                starttime: 0,
                placement,
                container,
                why: super::unit::Why::Own,
                host: true,
                init_start: 0,
                ns_pid: 0,
            })
        }))
    }

    /// The bytes `pid` reads for `file`, rendered now from inputs read
    /// now; never fails over a cgroup problem (the host file is served
    /// instead), only when the host file itself cannot be read.
    pub fn read(&self, file: VFile, pid: u32) -> Result<Vec<u8>, Error> {
        let caller = match self.caller(pid) {
            Ok(c) => c,
            Err(e) => return self.fallback(file.name(), &file.host_path(), pid, &e),
        };
        self.render_or_host(file, &caller).map(|(d, _)| d)
    }

    /// The rendering for `c`, or the host's file when rendering fails
    /// (false).
    fn render_or_host(&self, file: VFile, c: &Caller) -> Result<(Vec<u8>, bool), Error> {
        match guarded(|| self.render(file, c)) {
            Ok(s) => Ok((s.into_bytes(), true)),
            Err(e) => Ok((
                self.fallback(file.name(), &file.host_path(), c.pid, &e)?,
                false,
            )),
        }
    }

    /// `/sys/block/<disk>/stat` for `pid`: the container's I/O on that disk.
    pub fn read_block_stat(&self, disk: &str, pid: u32) -> Result<Vec<u8>, Error> {
        let host_path = format!("/sys/block/{disk}/stat");
        self.serve("block stat", &host_path, pid, |c| {
            let host = self.host.read(&host_path)?;
            let Some(io) = self.cgroups.io(&c.placement)? else {
                return Ok(host);
            };
            let dev_path = format!("/sys/block/{disk}/dev");
            let dev = self.host.read(&dev_path)?;
            let dev = dev
                .trim()
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .ok_or_else(|| Error::Render {
                    file: "block stat",
                    error: RenderError(format!("{dev_path}: bad device number {dev:?}")),
                })?;
            let counters = io.get(&dev).copied().unwrap_or_default();
            Ok(render::diskstats::block_stat(&host, &counters))
        })
    }

    /// Renders with `f` for the caller `pid`; on any failure or panic, logs
    /// and serves the host's file at `host_path` instead.
    fn serve(
        &self,
        what: &'static str,
        host_path: &str,
        pid: u32,
        f: impl FnOnce(&Caller) -> Result<String, Error>,
    ) -> Result<Vec<u8>, Error> {
        match guarded(|| f(&*self.caller(pid)?)) {
            Ok(s) => Ok(s.into_bytes()),
            Err(e) => self.fallback(what, host_path, pid, &e),
        }
    }

    /// The host's file at `host_path`, after noting why `pid` gets it.
    fn fallback(&self, what: &str, host_path: &str, pid: u32, e: &Error) -> Result<Vec<u8>, Error> {
        self.note_fallback(what, host_path, pid, e);
        Ok(self.host.read(host_path)?.into_bytes())
    }

    fn note_fallback(&self, what: &str, host_path: &str, pid: u32, e: &Error) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let key = format!("{what}: {e}");
        let Ok(mut logged) = self.logged.lock() else {
            return;
        };
        let now = Instant::now();
        if logged
            .get(&key)
            .is_none_or(|t| now.duration_since(*t) >= LOG_EVERY)
        {
            logged.insert(key, now);
            if logged.len() > 1024 {
                logged.retain(|_, t| now.duration_since(*t) < LOG_EVERY);
            }
            log::warn!(
                "pid {pid} gets the host's {host_path} (fallback #{}): {e}",
                self.fallbacks()
            );
        }
    }

    pub fn cpu_view(&self, p: &Placement) -> Result<CpuView, Error> {
        let online = self.host.online_cpus()?;
        let limits = self.cgroups.cpu_limits(p, &online)?;
        let mut n = limits.cpus.len();
        let mut rate = n as f64;
        if let Some(q) = limits.quota {
            rate = rate.min(q);
            if self.opts.cfs {
                n = n.min((q - 1e-9).ceil().max(1.0) as usize);
            }
        }
        Ok(CpuView {
            visible: limits.cpus[..n].to_vec(),
            rate,
        })
    }

    /// Renders `file` for `caller`, or says why it cannot.
    pub fn render(&self, file: VFile, c: &Caller) -> Result<String, Error> {
        #[cfg(debug_assertions)]
        super::testhook::panic_if_asked(file.name(), c.pid);
        let p = &c.placement;
        let rerr = |error| Error::Render {
            file: file.name(),
            error,
        };
        Ok(match file {
            VFile::Meminfo => {
                let host = self.host.read("/proc/meminfo")?;
                match self.cgroups.memory(p)? {
                    Some(m) => meminfo::render(&host, &m).map_err(rerr)?,
                    None => host,
                }
            }
            VFile::Swaps => {
                let host = self.host.read("/proc/swaps")?;
                match self.cgroups.memory_usage(p)? {
                    Some(m) => {
                        let (total, free) = meminfo::swap_kb(&self.host.mem()?, &m);
                        render::swaps::render(&host, total, total - free)
                    }
                    None => host,
                }
            }
            VFile::Cpuinfo => {
                let host = self.host.read("/proc/cpuinfo")?;
                render::cpuinfo::render(&host, &self.cpu_view(p)?.visible)
            }
            VFile::CpuOnline | VFile::CpuPossible | VFile::CpuPresent => {
                render::sysfs::cpu_range(self.cpu_view(p)?.visible.len())
            }
            VFile::Stat => {
                let host = self.host.read("/proc/stat")?;
                let Some((lines, tasks)) = self.account(c, |a| a.times(self.ticks))? else {
                    return Ok(host);
                };
                // The root cgroup holds every task: the host's counts are its counts.
                let (running, blocked) = match tasks {
                    Some(t) => (Some(t.running), Some(t.blocked)),
                    None => (None, None),
                };
                render::stat::render(&host, &lines, running, blocked).map_err(rerr)?
            }
            VFile::Uptime => {
                let now = self.host.boottime_ns();
                let start = self.ticks_to_ns(c.init_start);
                let Some((idle, _)) = self.account(c, Account::idle_ns)? else {
                    return Ok(self.host.read("/proc/uptime")?);
                };
                render::uptime::render(now.saturating_sub(start), idle)
            }
            VFile::Loadavg => {
                let host = self.host.read("/proc/loadavg")?;
                // No task accounting, or the root cgroup: the host's load is it.
                let Some(dir) = p.tasks_dir().filter(|d| !d.is_root()) else {
                    return Ok(host);
                };
                let avg = self.load.track(dir);
                let (running, _, total) = self.task_states(p, c.pid)?;
                // The last field is the most recent pid of the reader's pid
                // namespace (fs/proc/loadavg.c); a container must not learn the
                // host's. The reader itself is the best recent pid we know there.
                let last_pid = if c.host {
                    host.split_whitespace().nth(4).unwrap_or("0").to_owned()
                } else {
                    c.ns_pid.to_string()
                };
                render::loadavg::render(avg, running, total, &last_pid)
            }
            VFile::Vmstat => {
                let host = self.host.read("/proc/vmstat")?;
                let Some((mem, counters)) = self.cgroups.memory_counters(p)? else {
                    return Ok(host);
                };
                let host_mem = self.host.mem()?;
                let io = self.cgroups.io(p)?;
                // The PMD size (2 MiB on x86-64) where the kernel says.
                let thp_size = self
                    .host
                    .read_opt("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")?
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(2 << 20);
                render::vmstat::render(
                    &host,
                    &render::vmstat::Inputs {
                        host_mem,
                        mem: &mem,
                        counters: &counters,
                        io: io.as_ref(),
                        page_size: host::page_size(),
                        thp_size,
                    },
                )
                .map_err(rerr)?
            }
            VFile::PressureCpu | VFile::PressureMemory | VFile::PressureIo => {
                let r = file.pressure().ok_or_else(|| {
                    rerr(render::RenderError(format!(
                        "{file:?} is not a pressure file"
                    )))
                })?;
                let own = match self.pressure_dir(c) {
                    Some(d) => self.cgroups.pressure(&d, r)?,
                    None => None,
                };
                match own {
                    Some(text) => render::pressure::render(&text).map_err(rerr)?,
                    // No cgroup of its own in the unified hierarchy, or no
                    // PSI there: the host's, as its own /proc would show.
                    None => self.host.read(r.proc_path())?,
                }
            }
            VFile::Diskstats => {
                let host = self.host.read("/proc/diskstats")?;
                match self.cgroups.io(p)? {
                    Some(io) => render::diskstats::render(&host, &io),
                    None => host,
                }
            }
        })
    }

    /// What the container of `c` answers to `sysinfo(2)`, from the same
    /// numbers as its meminfo, swaps, loadavg and uptime; `None` for a
    /// reader that is the host (the kernel's own answer is right there).
    pub fn sysinfo(&self, c: &Caller) -> Result<Option<render::sysinfo::Sysinfo>, Error> {
        let p = &c.placement;
        let Some(dir) = p.tasks_dir().filter(|d| !d.is_root() && !c.host) else {
            return Ok(None);
        };
        let host = self.host.mem()?;
        let (total, free, shared, buffers, swap_total, swap_free) = match self.cgroups.memory(p)? {
            Some(m) => {
                let v = meminfo::virtual_values(&host, &m).map_err(|error| Error::Render {
                    file: "sysinfo",
                    error,
                })?;
                let g = |key: &str| meminfo::value(&v, key);
                (
                    g("MemTotal"),
                    g("MemFree"),
                    g("Shmem"),
                    g("Buffers"),
                    g("SwapTotal"),
                    g("SwapFree"),
                )
            }
            // No memory controller: the host's numbers, as its meminfo.
            None => (
                host.mem_total.unwrap_or(0),
                host.mem_free,
                host.shmem,
                host.buffers,
                host.swap_total,
                host.swap_free,
            ),
        };
        let now = self.host.boottime_ns();
        let loads = self.load.track(dir);
        // The pids controller's count is one read; walking the task lists
        // of the subtree is the way without it.
        let procs = match self.cgroups.task_count(p)? {
            Some(n) => n,
            None => self.cgroups.tasks(dir)?.len() as u64,
        };
        Ok(Some(render::sysinfo::Sysinfo {
            uptime_ns: now.saturating_sub(self.ticks_to_ns(c.init_start)),
            loads,
            totalram: total * 1024,
            freeram: free * 1024,
            sharedram: shared * 1024,
            bufferram: buffers * 1024,
            totalswap: swap_total * 1024,
            freeswap: swap_free * 1024,
            procs,
        }))
    }

    /// Where `c`'s pressure stalls are: its container's cgroup in the
    /// unified hierarchy; `None` for the root cgroup (the host) and where
    /// there is none (the host's files are then what it reads).
    fn pressure_dir(&self, c: &Caller) -> Option<Dir> {
        self.cgroups.unified(&c.container).filter(|d| !d.is_root())
    }

    /// Opens, for a PSI trigger of the reader `pid`, the file its reads of
    /// `r` come from: its container's `<res>.pressure`, else the host's
    /// `/proc/pressure/<res>` (the same fallback as reads), read-write. The
    /// kernel gives a trigger its opener's privileges (psi_trigger_create
    /// checks CAP_SYS_RESOURCE in the file's credentials: since 6.5 windows
    /// that are not multiples of 2 s need it, before that any write-open of
    /// a pressure file did), so this thread opens it with CAP_SYS_RESOURCE
    /// effective exactly when `privileged` (the reader has it). Returns the
    /// file and a key naming the container, for counting its triggers.
    pub fn open_pressure(
        &self,
        r: cgroup::Resource,
        pid: u32,
        privileged: bool,
    ) -> Result<(std::fs::File, String), Error> {
        let c = self.caller(pid)?;
        let (path, key) = match self.pressure_dir(&c) {
            Some(d) if d.path.join(r.cgroup_file()).exists() => {
                let key = d.path.to_string_lossy().into_owned();
                (d.path.join(r.cgroup_file()), key)
            }
            _ => (
                self.host.root().join(r.proc_path().trim_start_matches('/')),
                "host".to_owned(),
            ),
        };
        let open = || {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
        };
        let file = match crate::source::caps::with_effective(
            crate::source::caps::CAP_SYS_RESOURCE,
            privileged,
            open,
        ) {
            Ok(f) => f,
            // Not in our permitted set (a daemon started without it): the
            // kernel decides as for an unprivileged opener.
            Err(e) => {
                log::debug!("CAP_SYS_RESOURCE for a trigger of pid {pid}: {e}");
                open()
            }
        }
        .map_err(|error| Error::Open {
            path: path.clone(),
            error,
        })?;
        Ok((file, key))
    }

    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(1_000_000_000 / self.ticks.max(1))
    }

    /// Advances the caller's CPU account to now and reads it with `f`; also
    /// gives the sample of the container's tasks taken for it (`None` for
    /// the root cgroup, whose tasks are the host's). `None` when the cgroup
    /// has no CPU accounting at all.
    fn account<T>(
        &self,
        c: &Caller,
        f: impl FnOnce(&Account) -> T,
    ) -> Result<Option<(T, Option<proc::TaskSample>)>, Error> {
        let p = &c.placement;
        let Some(dir) = p
            .get(cgroup::Controller::Cpuacct)
            .or_else(|| p.get(cgroup::Controller::Cpu))
        else {
            return Ok(None);
        };
        let cpu = self.cpu_view(p)?;
        // The directory's inode tells a recreated cgroup of the same name
        // from the old one.
        let key = (dir.path.clone(), self.cgroups.ino(&dir.path)?);
        let slot = {
            let accounts = self
                .accounts
                .lock()
                .map_err(|_| Error::Panic("CPU account lock poisoned".into()))?;
            accounts.get(&key).cloned()
        };
        // Everything one sample says, read now: the CPU time, the tasks and
        // their waits for a CPU (not for the host, whose tasks are everyone's),
        // the throttling, then the clock.
        let read = || -> Result<Option<CpuRead>, Error> {
            let Some(usage) = self.cgroups.cpu_usage(p)? else {
                return Ok(None);
            };
            let tasks = match p.tasks_dir().filter(|d| !d.is_root()) {
                Some(d) => Some(
                    self.tasks
                        .sample(&self.cgroups.tasks(d)?, c.pid, !dir.is_root()),
                ),
                None => None,
            };
            let throttled = self.cgroups.throttled(p)?;
            Ok(Some(CpuRead {
                usage,
                tasks,
                throttled,
                now: self.host.boottime_ns(),
            }))
        };
        let ns_per_tick = self.ticks_to_ns(1);
        fn sample<'a>(r: &'a CpuRead, cpu: &'a CpuView, ns_per_tick: u64) -> Sample<'a> {
            Sample {
                now: r.now,
                usage: &r.usage,
                visible: &cpu.visible,
                rate: cpu.rate,
                waits: r
                    .tasks
                    .as_ref()
                    .and_then(|t| t.waits.as_deref())
                    .map(|tasks| Waits {
                        tasks,
                        throttled: r.throttled,
                        ns_per_tick,
                    }),
            }
        }
        if let Some(slot) = slot {
            let mut a = slot.lock().unwrap_or_else(|e| e.into_inner());
            let Some(r) = read()? else {
                return Ok(None);
            };
            if !self.frozen.load(Ordering::SeqCst) {
                a.advance(&sample(&r, &cpu, ns_per_tick));
            }
            return Ok(Some((f(&a), r.tasks)));
        }
        let Some(r) = read()? else {
            return Ok(None);
        };
        let start = self.ticks_to_ns(c.init_start);
        let slot = {
            let mut accounts = self
                .accounts
                .lock()
                .map_err(|_| Error::Panic("CPU account lock poisoned".into()))?;
            accounts
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Account::new(
                        start,
                        &sample(&r, &cpu, ns_per_tick),
                    )))
                })
                .clone()
        };
        let a = slot.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Some((f(&a), r.tasks)))
    }

    /// (running, blocked, total) tasks of the container, from each task's
    /// state. The reader is running from its own point of view (the kernel
    /// counts `current`), though it sleeps in FUSE while we look.
    fn task_states(&self, p: &Placement, reader: u32) -> Result<(usize, usize, usize), Error> {
        let Some(dir) = p.tasks_dir() else {
            return Ok((0, 0, 0));
        };
        Ok(self.count_states(dir, reader)?)
    }

    fn count_states(&self, dir: &Dir, reader: u32) -> Result<(usize, usize, usize), cgroup::Error> {
        let tids = self.cgroups.tasks(dir)?;
        let (r, d) = self.tasks.count(&tids, reader);
        Ok((r, d, tids.len()))
    }

    /// One load-average cycle, and pruning of state for cgroups now gone.
    pub fn sample(&self) {
        self.load.sample(|dir| match self.count_states(dir, 0) {
            Ok((r, d, _)) => Some((r + d) as u64),
            // The task list of a removed cgroup is gone with it.
            Err(cgroup::Error::Read { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            // Another read error on a live cgroup counts as no active tasks.
            Err(_) => Some(0),
        });
        // An account lives as long as its very cgroup: not past a cgroup
        // made again at the same path (another inode).
        if let Ok(mut a) = self.accounts.lock() {
            a.retain(|(path, ino), _| std::fs::metadata(path).is_ok_and(|m| m.ino() == *ino));
        }
        self.cgroups.prune();
        self.host.prune();
        self.tasks.prune();
        self.resolver.purge();
    }

    /// Freezes the per-container state and returns it as text for
    /// [`Views::import_state`] in a successor (format in `cputime.rs`).
    pub fn export_state(&self) -> String {
        self.frozen.store(true, Ordering::SeqCst);
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = format!("{}\n", super::cputime::STATE_HEADER);
        for ((path, ino), a) in accounts.iter() {
            let a = a.lock().unwrap_or_else(|e| e.into_inner());
            out += &a.to_record(path, *ino);
            out.push('\n');
        }
        out + &self.load.export()
    }

    /// Lets the state advance again after [`Views::export_state`].
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Takes over a predecessor's state; returns (CPU accounts, load
    /// averages) read, or None for a dump of an unknown format.
    pub fn import_state(&self, text: &str) -> Option<(usize, usize)> {
        if text.lines().next() != Some(super::cputime::STATE_HEADER) {
            return None;
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let before = accounts.len();
        accounts.extend(
            text.lines()
                .filter_map(Account::from_record)
                .map(|(p, i, a)| ((p, i), Arc::new(Mutex::new(a)))),
        );
        Some((accounts.len() - before, self.load.import(text)))
    }

    /// Descriptors kept open for fresh reads.
    pub fn kept_descriptors(&self) -> usize {
        self.cgroups.kept_descriptors()
            + self.host.kept_descriptors()
            + self.tasks.kept_descriptors()
    }

    /// Per-container state held: (CPU accounts, load averages).
    pub fn state_counts(&self) -> (usize, usize) {
        let accounts = self.accounts.lock().map_or(0, |a| a.len());
        (accounts, self.load.len())
    }
}

/// Runs a renderer, turning a panic into an error: one bad rendering must
/// not take the daemon (or a FUSE worker) down.
fn guarded(f: impl FnOnce() -> Result<String, Error>) -> Result<String, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Panic(msg))
    })
}
