#!/usr/bin/env python3
"""Builds fuzz/seeds/<target>/ from the real files captured in tests/fixtures.
Each seed is one selector byte (which parser the target feeds) + a real file.
Rerun after new fixtures are captured; the output is checked in."""
import glob
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")
OUT = os.path.join(HERE, "seeds")


def files(pattern):
    return sorted(p for p in glob.glob(os.path.join(FIX, "*", "root", pattern), recursive=True) if os.path.isfile(p))


def add(target, selector, paths):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for p in paths:
        data = open(p, "rb").read()
        if len(data) > 64 * 1024:
            continue
        rel = os.path.relpath(p, FIX).replace("/", "_")
        name = f"{selector:02x}_{rel}" if selector is not None else rel
        with open(os.path.join(d, name), "wb") as f:
            f.write((bytes([selector]) if selector is not None else b"") + data)


shutil.rmtree(OUT, ignore_errors=True)
cg = "sys/fs/cgroup/**/"
add("cgroup_files", 0, files(cg + "memory.max") + files(cg + "memory.limit_in_bytes") + files(cg + "cpu.cfs_quota_us"))
add("cgroup_files", 1, files(cg + "memory.stat") + files(cg + "cpu.stat"))
add("cgroup_files", 2, files(cg + "cpu.max"))
add("cgroup_files", 3, files(cg + "cpuset.cpus*") + files(cg + "cpuset.effective_cpus"))
add("cgroup_files", 4, files(cg + "io.stat"))
add("cgroup_files", 5, files(cg + "blkio.throttle.io_service_bytes_recursive"))
add("cgroup_files", 6, files(cg + "blkio.throttle.io_serviced_recursive"))
add("cgroup_files", 7, files(cg + "cpuacct.usage_all"))
add("cgroup_files", 8, files(cg + "cpuacct.usage_percpu"))
add("proc_pid", 0, files("proc/[0-9]*/stat"))
add("proc_pid", 1, files("proc/[0-9]*/cgroup"))
add("proc_pid", 2, files("proc/[0-9]*/status") + files("proc/self/status"))
add("mountinfo", None, files("proc/self/mountinfo"))
add("host_files", 0, files("proc/meminfo"))
add("host_files", 1, files("proc/cpuinfo"))
add("host_files", 2, files("proc/stat"))
add("host_files", 3, files("proc/diskstats"))
add("host_files", 4, files("proc/swaps"))
