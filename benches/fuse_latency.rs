//! FUSE read latency, side by side: the median open+read+close of each file
//! as a container reads it (a process in its own cgroup with 256 MiB and one
//! pinned CPU, in its own mount namespace, the files bind-mounted as in a
//! container), for
//! - the kernel's own file,
//! - `floor`: a minimal libfuse server whose 1500-byte file differs per
//!   reader (`benches/floor.c`: direct I/O, no flush, attributes cached for
//!   1 s), so OPEN, READ and the READ at EOF and nothing else,
//! - `fuser-floor`: the same file served by fuser with proclens's own
//!   session settings (to tell fuser's cost from ours),
//! - proclens, rendering every read afresh,
//! - lxcfs (`-l --enable-cfs`),
//!
//! read in turn, one of each per round, so all see the same machine; once
//! with every daemon pinned to the reader's CPU (no cross-CPU wake-ups: the
//! cost of the work itself) and once with the daemons free to run anywhere.
//!
//! Run as root: `cargo bench --bench fuse_latency` (3000 rounds). Without
//! `--bench`, as `cargo test --all-targets` runs it, a short mode (200
//! rounds) checks the bench itself works. Needs lxcfs (or
//! `PROCLENS_BENCH_NO_LXCFS=1`) and cc with libfuse3-dev and pkg-config.

mod common;

use common::{pinned, Cgroup, Cpus, Daemon};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// (row name, path below a mount, the kernel's own file).
const FILES: [(&str, &str, &str); 8] = [
    ("meminfo", "proc/meminfo", "/proc/meminfo"),
    ("cpuinfo", "proc/cpuinfo", "/proc/cpuinfo"),
    ("stat", "proc/stat", "/proc/stat"),
    ("loadavg", "proc/loadavg", "/proc/loadavg"),
    ("uptime", "proc/uptime", "/proc/uptime"),
    ("diskstats", "proc/diskstats", "/proc/diskstats"),
    ("swaps", "proc/swaps", "/proc/swaps"),
    (
        "cpu/online",
        "sys/devices/system/cpu/online",
        "/sys/devices/system/cpu/online",
    ),
];

// ---- the floor: one file, rendered per reader at open ----------------------

struct Floor {
    handles: Mutex<HashMap<u64, Vec<u8>>>,
    next: AtomicU64,
}

fn floor_attr(ino: u64) -> FileAttr {
    let dir = ino == 1;
    FileAttr {
        ino: INodeNo(ino),
        size: if dir { 0 } else { 1500 },
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if dir { 0o555 } else { 0o444 },
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for Floor {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == "file" {
            reply.entry(&Duration::from_secs(1), &floor_attr(2), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply.attr(&Duration::from_secs(1), &floor_attr(ino.0));
    }

    fn open(&self, req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        // As long as the libfuse floor's (benches/floor.c): 1500 bytes
        // whose first line names the reader.
        let mut data = format!("reader {}\n", req.pid()).into_bytes();
        data.resize(1499, b'.');
        data.push(b'\n');
        self.handles.lock().expect("lock").insert(fh, data);
        reply.opened(
            FileHandle(fh),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH,
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let h = self.handles.lock().expect("lock");
        let data = h.get(&fh.0).map_or(&[][..], |d| &d[..]);
        let start = (offset as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().expect("lock").remove(&fh.0);
        reply.ok();
    }
}

/// Serves the fuser floor at `mp` until killed, with proclens's own
/// session settings.
fn serve_floor(mp: &Path) {
    std::fs::create_dir_all(mp).expect("floor mountpoint");
    let config = proclens::serve::fuse::session_config(vec![
        fuser::MountOption::FSName("floor".into()),
        fuser::MountOption::RO,
    ]);
    let fs = Floor {
        handles: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
    };
    fuser::Session::new(fs, mp, &config)
        .expect("mount the floor")
        .run()
        .expect("serve the floor");
}

// ---- the reader -------------------------------------------------------------

fn read_once(path: &Path, buf: &mut Vec<u8>) -> Duration {
    buf.clear();
    let t = Instant::now();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    t.elapsed()
}

/// Bind-mounts `src` over a new file `dst` (in our private mount namespace).
fn bind(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
    std::fs::write(dst, "").expect("bind target");
    nix::mount::mount(
        Some(src),
        dst,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("bind {} on {}: {e}", src.display(), dst.display()));
}

/// One source of the files: a name, its mount point, and whether it
/// serves every row (a daemon) or one file for all of them (a floor).
struct Source {
    name: String,
    mp: PathBuf,
    floor: bool,
}

/// Runs inside the cgroup, in a mount namespace of its own whose bind
/// mounts go with it; prints the table.
fn reader(rounds: usize, title: &str, sources: &[Source]) {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
    let scratch = tempfile::tempdir().expect("tempdir");
    println!("{title} (median µs of {rounds} rounds)");
    print!("{:<11}{:>9}", "file", "kernel");
    for s in sources {
        print!("{:>12}", s.name);
    }
    println!("{:>16}{:>16}", "proclens/floor", "lxcfs/proclens");

    let mut buf = Vec::with_capacity(1 << 16);
    // Both daemons must be showing this container, not the host.
    for s in sources.iter().filter(|s| !s.floor) {
        let meminfo = std::fs::read_to_string(s.mp.join("proc/meminfo")).expect("meminfo");
        let total = meminfo.lines().next().unwrap_or_default();
        assert!(
            total.split_whitespace().nth(1) == Some("262144"),
            "{} does not show the bench cgroup's 256 MiB: {total}",
            s.name
        );
    }
    let col = |name: &str| sources.iter().position(|s| s.name == name).map(|i| i + 1);
    for (row, rel, kernel) in FILES {
        let mut paths = vec![PathBuf::from(kernel)];
        for s in sources {
            let dst = scratch.path().join(&s.name).join(row.replace('/', "_"));
            let src = if s.floor {
                s.mp.join("file")
            } else {
                s.mp.join(rel)
            };
            bind(&src, &dst);
            paths.push(dst);
        }
        let mut samples = vec![Vec::with_capacity(rounds); paths.len()];
        for round in 0..rounds + 50 {
            for (i, p) in paths.iter().enumerate() {
                let d = read_once(p, &mut buf);
                // The first rounds warm caches (ours and the kernel's).
                if round >= 50 {
                    samples[i].push(d);
                }
            }
        }
        let med: Vec<f64> = samples
            .iter_mut()
            .map(|s| {
                s.sort();
                common::quantile(s, 0.5).as_secs_f64()
            })
            .collect();
        print!("{row:<11}");
        for m in &med {
            print!("{:>12.1}", m * 1e6);
        }
        let ratio = |a: Option<usize>, b: Option<usize>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}x", med[a] / med[b]),
            _ => "-".to_owned(),
        };
        println!(
            "{:>16}{:>16}",
            ratio(col("proclens"), col("floor")),
            ratio(col("lxcfs"), col("proclens"))
        );
        for (p, s) in paths
            .iter()
            .zip(std::iter::once(None).chain(sources.iter().map(Some)))
        {
            if s.is_some() {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    println!();
}

/// Builds the libfuse floor (`benches/floor.c`) into `dir`.
fn build_libfuse_floor(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/floor.c");
    let out = dir.join("libfuse-floor");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "fuse3"])
        .output()
        .unwrap_or_else(|e| panic!("pkg-config: {e} (apt-get install pkg-config libfuse3-dev)"));
    assert!(
        flags.status.success(),
        "pkg-config finds no fuse3: apt-get install libfuse3-dev"
    );
    let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
    let st = Command::new("cc")
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(flags.split_whitespace())
        .status()
        .expect("cc");
    assert!(st.success(), "building {} failed", src.display());
    out
}

/// The daemons and floors of one table, each pinned to `cpus`.
fn serve_all(root: &Path, exe: &Path, libfuse: &Path, cpus: Cpus) -> (Vec<Daemon>, Vec<Source>) {
    let mut daemons = vec![Daemon::proclens_on(&root.join("proclens"), cpus)];
    if common::want_lxcfs() {
        daemons.push(Daemon::lxcfs_on(&root.join("lxcfs"), cpus));
    }
    let fuser_mp = root.join("fuser-floor");
    let mut cmd = Command::new(exe);
    cmd.env("PROCLENS_BENCH_FLOOR", &fuser_mp);
    let child = pinned(&mut cmd, cpus)
        .spawn()
        .expect("start the fuser floor");
    daemons.push(Daemon::ready(child, &fuser_mp, "fuser-floor", "file"));
    let libfuse_mp = root.join("floor");
    std::fs::create_dir_all(&libfuse_mp).expect("mkdir");
    let mut cmd = Command::new(libfuse);
    cmd.arg(&libfuse_mp).stdout(Stdio::null());
    let child = pinned(&mut cmd, cpus)
        .spawn()
        .expect("start the libfuse floor");
    daemons.push(Daemon::ready(child, &libfuse_mp, "floor", "file"));
    let sources = daemons
        .iter()
        .map(|d| Source {
            name: d.name.to_owned(),
            mp: d.mp.clone(),
            floor: d.name.ends_with("floor"),
        })
        .collect();
    (daemons, sources)
}

fn main() {
    if let Ok(mp) = std::env::var("PROCLENS_BENCH_FLOOR") {
        return serve_floor(Path::new(&mp));
    }
    if let Ok(spec) = std::env::var("PROCLENS_BENCH_READER") {
        // rounds;title;cgroup procs files;name=mp=floor;...
        let parts: Vec<&str> = spec.split(';').collect();
        common::join(parts[2]);
        let sources: Vec<Source> = parts[3..]
            .iter()
            .filter_map(|p| {
                let mut it = p.splitn(3, '=');
                Some(Source {
                    name: it.next()?.to_owned(),
                    mp: PathBuf::from(it.next()?),
                    floor: it.next()? == "1",
                })
            })
            .collect();
        return reader(parts[0].parse().expect("rounds"), parts[1], &sources);
    }
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 3000 } else { 200 };
    common::require_root("the FUSE latency bench");
    let _lock = common::host_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let libfuse = build_libfuse_floor(tmp.path());

    let cg = Cgroup::new(&format!("proclens-bench-{}", std::process::id()));
    cg.limit_memory(256 << 20).pin("0");
    println!(
        "FUSE read latency: open+read+close through bind mounts, from a cgroup with 256 MiB and CPU 0;\n\
         every source read in turn in each round. floor: a minimal libfuse file that differs per \n\
         reader (benches/floor.c); fuser-floor: the same served by fuser with proclens's settings.\n"
    );
    for (title, cpus) in [
        ("Pinned: every daemon's threads on CPU 0 too", Cpus::Only(0)),
        ("Unpinned: the daemons on any CPU", Cpus::Any),
    ] {
        let root = tmp
            .path()
            .join(if cpus == Cpus::Any { "any" } else { "cpu0" });
        let (daemons, sources) = serve_all(&root, &exe, &libfuse, cpus);
        let mut spec = format!("{rounds};{title};{}", cg.env());
        for s in &sources {
            spec.push_str(&format!(
                ";{}={}={}",
                s.name,
                s.mp.to_string_lossy(),
                u8::from(s.floor)
            ));
        }
        let status = Command::new(&exe)
            .env("PROCLENS_BENCH_READER", spec)
            .status()
            .expect("reader");
        drop(daemons);
        assert!(status.success(), "the reader failed");
    }
    drop(cg);
}
