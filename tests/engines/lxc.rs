//! LXC containers in an lxcpath of ours (`-P`), configured by a file of
//! ours that includes the shipped `proclens.conf`; no network, no AppArmor.
//! Their cgroups are LXC's defaults, `lxc.payload.<name>` and
//! `lxc.monitor.<name>` at the root of every hierarchy (LXC removes them
//! when the container stops, leaving `lxc.pivot`): what users get. (With
//! `lxc.cgroup.dir.container` LXC 5 would put the container in an inner
//! `.lxc` cgroup, which on cgroup v2 has no controllers of its own.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{cgroup_version, host_command, run_with_timeout, which, CgroupVersion};
use crate::engine::{quietly, wait_for, Running, Spec, ENGINE_TIMEOUT};
use crate::kernel::CgroupTree;

fn tool(name: &str) -> Command {
    host_command(which(name).unwrap_or_else(|| panic!("{name} (apt-get install lxc)")))
}

#[derive(Debug)]
pub struct LxcContainer {
    path: PathBuf,
    pub name: String,
    pid: i32,
}

/// The config: what `/usr/share/lxc/config/common.conf` would give
/// (procfs and sysfs mounted by `lxc.mount.auto`) without its
/// `common.conf.d`, whose lxcfs hook would cover the proclens mounts when
/// lxcfs runs; the limits in the keys of this host's cgroup version; then
/// `include`.
fn config(name: &str, rootfs: &Path, spec: &Spec, include: &Path) -> String {
    let limits = match cgroup_version() {
        CgroupVersion::V1 => format!(
            "lxc.cgroup.memory.limit_in_bytes = {}\n\
             lxc.cgroup.cpu.cfs_period_us = {}\n\
             lxc.cgroup.cpu.cfs_quota_us = {}\n\
             lxc.cgroup.cpuset.cpus = {}\n\
             lxc.cgroup.blkio.throttle.read_bps_device = {}:{} 1099511627776\n\
             lxc.cgroup.blkio.throttle.write_bps_device = {}:{} 1099511627776\n",
            spec.memory,
            spec.period_us,
            spec.quota_us,
            spec.cpu,
            spec.disk.major,
            spec.disk.minor,
            spec.disk.major,
            spec.disk.minor
        ),
        CgroupVersion::V2 => format!(
            "lxc.cgroup2.memory.max = {}\nlxc.cgroup2.cpu.max = {} {}\nlxc.cgroup2.cpuset.cpus = {}\n",
            spec.memory, spec.quota_us, spec.period_us, spec.cpu
        ),
    };
    format!(
        "lxc.uts.name = {name}\n\
         lxc.rootfs.path = dir:{rootfs}\n\
         lxc.net.0.type = empty\n\
         lxc.apparmor.profile = unconfined\n\
         lxc.autodev = 1\n\
         lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed\n\
         lxc.init.cmd = /usr/bin/sleep 1000000\n\
         {limits}\
         lxc.include = {include}\n",
        rootfs = rootfs.display(),
        include = include.display(),
    )
}

impl LxcContainer {
    /// `lxc-start -d` of a container `name` in the lxcpath `path`.
    pub fn start(
        path: &Path,
        name: &str,
        rootfs: &Path,
        spec: &Spec,
        include: &Path,
    ) -> LxcContainer {
        fs::create_dir_all(path).expect("mkdir lxcpath");
        let conf = path.join(format!("{name}.conf"));
        fs::write(&conf, config(name, rootfs, spec, include)).expect("lxc config");
        let mut c = LxcContainer {
            path: path.to_owned(),
            name: name.to_owned(),
            pid: 0,
        };
        let log = path.join(format!("{name}.log"));
        let out = run_with_timeout(
            tool("lxc-start")
                .arg("-P")
                .arg(path)
                .args(["-n", name, "-d", "-l", "INFO", "-o"])
                .arg(&log)
                .arg("-f")
                .arg(&conf),
            ENGINE_TIMEOUT,
        );
        if !out.status.success() {
            let log = fs::read_to_string(&log).unwrap_or_default();
            let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
            panic!(
                "lxc-start {name} failed with {}: {}\nerrors in its log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                errors.join("\n")
            );
        }
        wait_for("the LXC container's init", Duration::from_secs(60), || {
            let out = run_with_timeout(
                tool("lxc-info")
                    .arg("-P")
                    .arg(path)
                    .args(["-n", name, "-p", "-H"]),
                ENGINE_TIMEOUT,
            );
            match String::from_utf8_lossy(&out.stdout).trim().parse() {
                Ok(pid) => {
                    c.pid = pid;
                    true
                }
                Err(_) => false,
            }
        });
        c
    }
}

impl Running for LxcContainer {
    fn init_pid(&self) -> i32 {
        self.pid
    }

    fn exec(&self, script: &str) -> Output {
        run_with_timeout(
            tool("lxc-attach")
                .arg("-P")
                .arg(&self.path)
                .args(["-n", &self.name, "--clear-env", "--set-var"])
                .arg("PATH=/usr/bin:/bin")
                .args(["--", "sh", "-c", script]),
            ENGINE_TIMEOUT,
        )
    }
}

impl Drop for LxcContainer {
    fn drop(&mut self) {
        quietly(
            tool("lxc-stop")
                .arg("-P")
                .arg(&self.path)
                .args(["-n", &self.name, "-k"]),
        );
        // LXC removes them itself when the container stops; in case it
        // did not (the names are ours: the container's is unique).
        for kind in ["payload", "monitor"] {
            drop(CgroupTree(format!("lxc.{kind}.{}", self.name)));
        }
    }
}
