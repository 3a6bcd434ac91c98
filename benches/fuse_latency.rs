//! FUSE read latency, side by side: the median open+read+close of each file
//! as a container reads it (a process in its own cgroup with 256 MiB and one
//! pinned CPU, in its own mount namespace, the files bind-mounted as in a
//! container), for
//! - the kernel's own file,
//! - the floor: a minimal FUSE file whose content differs per reader, served
//!   by fuser the way proclens is (same worker threads, direct I/O, no
//!   flush, attributes cached for 1 s), so OPEN, READ and the READ at EOF,
//! - proclens,
//! - lxcfs (`-l --enable-cfs`), when installed,
//!
//! read in turn, one of each per round, so all four see the same machine.
//!
//! Run as root: `cargo bench --bench fuse_latency` (3000 rounds). Without
//! `--bench`, as `cargo test --all-targets` runs it, a short mode (200
//! rounds) checks the bench itself works.

mod common;

use common::{us, Cgroup, Daemon};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
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
        size: if dir { 0 } else { 64 },
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
        let data = format!("content for pid {}\n", req.pid()).into_bytes();
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

/// Serves the floor at `mp` until killed, with proclens's own session
/// settings.
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

/// Runs inside the cgroup, in a mount namespace of its own whose bind
/// mounts go with it; prints the table.
fn reader(rounds: usize, mounts: &[(String, PathBuf)], floor: &Path) {
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
    let floor_file = scratch.path().join("floor");
    bind(&floor.join("file"), &floor_file);

    let names: Vec<&str> = mounts.iter().map(|(n, _)| n.as_str()).collect();
    print!("{:<11}{:>9}{:>9}", "file", "kernel", "floor");
    for n in &names {
        print!("{n:>10}");
    }
    let lxcfs = names.contains(&"lxcfs");
    if lxcfs {
        print!("{:>11}", "lxcfs/ours");
    }
    print!("{:>12}{:>16}", "ours/floor", "uncached/floor");
    println!("   (median µs, {rounds} rounds)");

    let mut buf = Vec::with_capacity(1 << 16);
    // Both daemons must be showing this container, not the host.
    for (name, mp) in mounts {
        let meminfo = std::fs::read_to_string(mp.join("proc/meminfo")).expect("meminfo");
        let total = meminfo.lines().next().unwrap_or_default();
        assert!(
            total.split_whitespace().nth(1) == Some("262144"),
            "{name} does not show the bench cgroup's 256 MiB: {total}"
        );
    }
    for (row, rel, kernel) in FILES {
        let mut paths = vec![PathBuf::from(kernel), floor_file.clone()];
        for (name, mp) in mounts {
            let dst = scratch.path().join(name).join(row.replace('/', "_"));
            bind(&mp.join(rel), &dst);
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
        let med: Vec<Duration> = samples
            .iter_mut()
            .map(|s| {
                s.sort();
                common::quantile(s, 0.5)
            })
            .collect();
        print!("{row:<11}");
        for m in &med {
            print!("{:>9.1}", us(*m));
        }
        // Columns: kernel, floor, then the mounts in order.
        let (floor, ours, uncached) = (
            med[1].as_secs_f64(),
            med[2].as_secs_f64(),
            med[3].as_secs_f64(),
        );
        if lxcfs {
            print!("{:>10.1}x", med[4].as_secs_f64() / ours);
        }
        println!("{:>11.2}x{:>15.2}x", ours / floor, uncached / floor);
    }
}

fn main() {
    if let Ok(mp) = std::env::var("PROCLENS_BENCH_FLOOR") {
        return serve_floor(Path::new(&mp));
    }
    if let Ok(spec) = std::env::var("PROCLENS_BENCH_READER") {
        // rounds;cgroup procs files;floor;name=mp;name=mp
        let parts: Vec<&str> = spec.split(';').collect();
        common::join(parts[1]);
        let mounts: Vec<(String, PathBuf)> = parts[3..]
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(n, m)| (n.to_owned(), PathBuf::from(m)))
            .collect();
        return reader(
            parts[0].parse().expect("rounds"),
            &mounts,
            Path::new(parts[2]),
        );
    }
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 3000 } else { 200 };
    common::require_root("the FUSE latency bench");
    let _lock = common::host_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");

    let mut daemons = vec![
        Daemon::proclens(&tmp.path().join("proclens")),
        // The same daemon rendering every read: what a reader gets when no
        // other read of its container came in the last 20 ms.
        Daemon::proclens_with(
            &tmp.path().join("uncached"),
            &["--cache-ms", "0"],
            "uncached",
        ),
    ];
    if common::want_lxcfs() {
        daemons.push(Daemon::lxcfs(&tmp.path().join("lxcfs")));
    }
    let floor_mp = tmp.path().join("floor");
    let floor_child = Command::new(&exe)
        .env("PROCLENS_BENCH_FLOOR", &floor_mp)
        .spawn()
        .expect("start the floor");
    let _floor = Daemon::ready(floor_child, &floor_mp, "floor", "file");

    let cg = Cgroup::new(&format!("proclens-bench-{}", std::process::id()));
    cg.limit_memory(256 << 20).pin("0");
    let mut spec = format!("{rounds};{};{}", cg.env(), floor_mp.to_string_lossy());
    for d in &daemons {
        spec.push_str(&format!(";{}={}", d.name, d.mp.to_string_lossy()));
    }
    println!(
        "FUSE read latency, open+read+close through bind mounts, from a cgroup with 256 MiB and CPU 0"
    );
    let status = Command::new(&exe)
        .env("PROCLENS_BENCH_READER", spec)
        .status()
        .expect("reader");
    drop(daemons);
    drop(_floor);
    drop(cg);
    assert!(status.success(), "the reader failed");
}
