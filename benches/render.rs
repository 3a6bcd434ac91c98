//! Renderer and parser costs on the captured fixtures (cargo bench --bench render).

use criterion::{criterion_group, criterion_main, Criterion};
use proclens::cgroup::parse;
use proclens::view::{Options, VFile, Views};
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
    // cpuinfo and stat grow with the host's CPUs.
    for name in ["v1", "v2", "big"] {
        let views = Views::new(&fixture(name), Options::default()).expect("views");
        let caller = views.caller(reader(name)).expect("caller");
        for f in VFile::PROC.into_iter().chain([VFile::CpuOnline]) {
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
        b.iter(|| proclens::cgroup::mounts::parse_mountinfo(black_box(&mi)).expect("parse"))
    });
    c.bench_function("parse/cpu_list", |b| {
        b.iter(|| parse::cpu_list(black_box("0-63,128-191,255")).expect("parse"))
    });
}

criterion_group!(benches, views, parsers);
criterion_main!(benches);
