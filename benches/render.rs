//! Renderer and parser costs on the captured fixtures (cargo bench --bench
//! render): whole renderings with the fixture tree's file reads, the pure
//! renderers on their own, and every parser on captured text. `big` is the
//! v1 container on a 256-CPU host with 300 disks (tests/fixtures/make-big.py).

use criterion::{criterion_group, criterion_main, Criterion};
use proclens::container::view::{Options, Views};
use proclens::container::VFile;
use proclens::render;
use proclens::source::cgroup::parse;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("root")
}

fn reader(name: &str) -> u32 {
    let env = std::fs::read_to_string(fixture(name).join("../capture.env")).expect("capture.env");
    env.split_whitespace()
        .find_map(|kv| kv.strip_prefix("reader="))
        .and_then(|v| v.parse().ok())
        .expect("reader")
}

fn views(c: &mut Criterion) {
    // "big" is the v1 container on a 256-CPU host (tests/fixtures/make-big.py):
    // cpuinfo and stat grow with the host's CPUs. v1, v2 and big were
    // captured before vmstat and the pressure files were served: those
    // come from the psi captures (tests/fixtures/capture-psi.sh), with stat
    // again for its steal.
    let first: Vec<VFile> = VFile::PROC
        .into_iter()
        .filter(|f| *f != VFile::Vmstat)
        .chain([VFile::CpuOnline])
        .collect();
    let psi: Vec<VFile> = [VFile::Vmstat, VFile::Stat]
        .into_iter()
        .chain(VFile::PRESSURE)
        .collect();
    for (name, files) in [
        ("v1", &first),
        ("v2", &first),
        ("big", &first),
        ("psi-v1", &psi),
        ("psi-v2", &psi),
    ] {
        let views = Views::new(&fixture(name), Options::default()).expect("views");
        let caller = views.caller(reader(name)).expect("caller");
        for &f in files {
            c.bench_function(&format!("{name}/render/{}", f.name()), |b| {
                b.iter(|| views.render(black_box(f), &caller).expect("render"))
            });
        }
    }
}

fn parsers(c: &mut Criterion) {
    let root = fixture("v2");
    let stat = std::fs::read_to_string(root.join("sys/fs/cgroup/proclens-fixture/app/memory.stat"))
        .expect("memory.stat");
    c.bench_function("parse/flat_keyed memory.stat", |b| {
        b.iter(|| parse::flat_keyed(black_box(&stat)).expect("parse"))
    });
    let io = std::fs::read_to_string(root.join("sys/fs/cgroup/proclens-fixture/app/io.stat"))
        .expect("io.stat");
    c.bench_function("parse/io_stat", |b| {
        b.iter(|| parse::io_stat(black_box(&io)).expect("parse"))
    });
    let mi = std::fs::read_to_string(fixture("v1").join("proc/self/mountinfo")).expect("mountinfo");
    c.bench_function("parse/mountinfo", |b| {
        b.iter(|| proclens::source::cgroup::mounts::parse_mountinfo(black_box(&mi)).expect("parse"))
    });
    c.bench_function("parse/cpu_list", |b| {
        b.iter(|| parse::cpu_list(black_box("0-63,128-191,255")).expect("parse"))
    });
}

fn text(name: &str, rel: &str) -> String {
    std::fs::read_to_string(fixture(name).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The pure renderers, inputs already read: what is left is formatting.
fn renderers(c: &mut Criterion) {
    for name in ["v1", "big"] {
        let cpuinfo = text(name, "proc/cpuinfo");
        let visible: Vec<u32> = vec![0];
        c.bench_function(&format!("{name}/pure/cpuinfo"), |b| {
            b.iter(|| render::cpuinfo::render(black_box(&cpuinfo), &visible))
        });
        let diskstats = text(name, "proc/diskstats");
        let mut io = BTreeMap::new();
        let blkio = text(
            name,
            "sys/fs/cgroup/blkio/proclens-fixture/blkio.throttle.io_service_bytes_recursive",
        );
        parse::blkio_table(&blkio, parse::BlkioUnit::Bytes, &mut io).expect("blkio");
        c.bench_function(&format!("{name}/pure/diskstats"), |b| {
            b.iter(|| render::diskstats::render(black_box(&diskstats), &io))
        });
        let meminfo = text(name, "proc/meminfo");
        c.bench_function(&format!("{name}/parse/meminfo"), |b| {
            b.iter(|| render::meminfo::parse(black_box(&meminfo)))
        });
        let stat = text(name, "sys/fs/cgroup/memory/proclens-fixture/memory.stat");
        let mem = proclens::source::cgroup::Memory {
            limit: Some(256 << 20),
            usage: 100 << 20,
            stat: proclens::source::cgroup::MemStat::from_v1(
                &parse::flat_keyed(&stat).expect("memory.stat"),
            ),
            swap: None,
        };
        c.bench_function(&format!("{name}/pure/meminfo"), |b| {
            b.iter(|| render::meminfo::render(black_box(&meminfo), &mem).expect("render"))
        });
    }
    c.bench_function("pure/loadavg", |b| {
        b.iter(|| render::loadavg::render(black_box([2048, 1024, 512]), 3, 120, "4242"))
    });
    c.bench_function("pure/uptime", |b| {
        b.iter(|| render::uptime::render(black_box(123_456_789_000), 98_765_432_000))
    });
    c.bench_function("pure/cpu_range", |b| {
        b.iter(|| render::sysfs::cpu_range(black_box(64)))
    });
}

/// The parsers of what proclens reads per request besides cgroup files.
fn caller_parsers(c: &mut Criterion) {
    let pid = reader("v1");
    let stat = text("v1", &format!("proc/{pid}/stat"));
    c.bench_function("parse/proc_pid_stat", |b| {
        b.iter(|| proclens::source::proc::parse_stat(black_box(&stat)).expect("parse"))
    });
    let cgroup = text("v1", &format!("proc/{pid}/cgroup"));
    c.bench_function("parse/proc_pid_cgroup", |b| {
        b.iter(|| {
            proclens::source::cgroup::mounts::parse_proc_cgroup(black_box(&cgroup)).expect("parse")
        })
    });
    let status = text("v1", &format!("proc/{pid}/status"));
    c.bench_function("parse/nspid", |b| {
        b.iter(|| proclens::source::proc::parse_innermost_pid(black_box(&status)))
    });
    let all = text(
        "big",
        "sys/fs/cgroup/cpuacct/proclens-fixture/cpuacct.usage_all",
    );
    c.bench_function("big/parse/cpuacct.usage_all", |b| {
        b.iter(|| parse::cpuacct_usage_all(black_box(&all)).expect("parse"))
    });
    let percpu = text(
        "big",
        "sys/fs/cgroup/cpuacct/proclens-fixture/cpuacct.usage_percpu",
    );
    c.bench_function("big/parse/cpuacct.usage_percpu", |b| {
        b.iter(|| parse::number_list(black_box(&percpu)).expect("parse"))
    });
    c.bench_function("parse/limit", |b| {
        b.iter(|| parse::limit(black_box("9223372036854771712\n")).expect("parse"))
    });
    c.bench_function("parse/cpu_max", |b| {
        b.iter(|| parse::cpu_max(black_box("150000 100000\n")).expect("parse"))
    });
}

criterion_group!(benches, views, parsers, renderers, caller_parsers);
criterion_main!(benches);
