//! containerd of our own (no CRI plugin, its root, state and sockets below
//! one directory) driven by `ctr`, containers made from a rootfs
//! directory, runc's state below the same directory (`--runc-root`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{host_command, run_with_timeout, which};
use crate::engine::{engine, quietly, wait_for, Running, Spec, Started, ENGINE_TIMEOUT};

#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    daemon: Started,
}

impl Containerd {
    /// Starts containerd with `env` added to its environment (which its
    /// shims, and so the runtime, inherit).
    pub fn start(dir: &Path, env: &[(&str, &Path)]) -> Containerd {
        fs::create_dir_all(dir).expect("mkdir containerd dir");
        let d = dir.display();
        let conf = dir.join("config.toml");
        fs::write(
            &conf,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
                 [debug]\n  address = \"{d}/debug.sock\"\n"
            ),
        )
        .expect("config.toml");
        let log = dir.join("containerd.log");
        let out = fs::File::create(&log).expect("containerd log");
        let mut cmd = host_command(
            which("containerd").expect("containerd (apt-get install containerd, or docker.io)"),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start containerd");
        let mut c = Containerd {
            dir: dir.to_owned(),
            daemon: Started {
                child,
                name: "containerd",
                log,
            },
        };
        wait_for("containerd answering", ENGINE_TIMEOUT, || {
            c.daemon.assert_running();
            run_with_timeout(c.ctr().arg("version"), Duration::from_secs(60))
                .status
                .success()
        });
        c
    }

    pub fn ctr(&self) -> Command {
        let mut c = host_command(which("ctr").expect("ctr (apt-get install containerd)"));
        c.arg("--address").arg(self.dir.join("containerd.sock"));
        c
    }

    /// `ctr run -d` of `rootfs` (a directory the container owns) as `id`
    /// under the cgroup `/<parent>/<id>`, with the limits ctr has flags
    /// for (it has none for a cpuset or a throttle rule: the parent cgroup
    /// holds those).
    pub fn run(
        &self,
        id: &str,
        runtime: &Path,
        rootfs: &Path,
        parent: &str,
        spec: &Spec,
        extra: &[&str],
    ) -> CtrContainer<'_> {
        let cpus = spec.quota_us as f64 / spec.period_us as f64;
        engine(
            self.ctr()
                .args(["run", "-d", "--runc-binary"])
                .arg(runtime)
                .arg("--runc-root")
                .arg(self.dir.join("runc"))
                .arg(format!("--memory-limit={}", spec.memory))
                .arg(format!("--cpus={cpus}"))
                .arg(format!("--cgroup=/{parent}/{id}"))
                .arg("--env=PATH=/usr/bin:/bin")
                .args(extra)
                .arg("--rootfs")
                .arg(rootfs)
                .args([id, "sleep", "1000000"]),
        );
        let mut c = CtrContainer {
            c: self,
            id: id.to_owned(),
            pid: 0,
        };
        let tasks = engine(self.ctr().args(["task", "ls"]));
        c.pid = tasks
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(1)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no task {id} in ctr task ls:\n{tasks}"));
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.daemon.stop();
    }
}

static EXEC_IDS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
pub struct CtrContainer<'c> {
    c: &'c Containerd,
    pub id: String,
    pid: i32,
}

impl Running for CtrContainer<'_> {
    fn init_pid(&self) -> i32 {
        self.pid
    }

    fn exec(&self, script: &str) -> Output {
        let exec_id = format!("x{}", EXEC_IDS.fetch_add(1, Ordering::Relaxed));
        run_with_timeout(
            self.c
                .ctr()
                .args(["task", "exec", "--exec-id", &exec_id, &self.id])
                .args(["sh", "-c", script]),
            ENGINE_TIMEOUT,
        )
    }
}

impl Drop for CtrContainer<'_> {
    fn drop(&mut self) {
        quietly(
            self.c
                .ctr()
                .args(["task", "kill", "-s", "SIGKILL", &self.id]),
        );
        let stopped = || {
            run_with_timeout(self.c.ctr().args(["task", "ls"]), ENGINE_TIMEOUT)
                .stdout
                .split(|&b| b == b'\n')
                .all(|l| {
                    let l = String::from_utf8_lossy(l);
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() != Some(&self.id.as_str()) || f.get(2) == Some(&"STOPPED")
                })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !stopped() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        quietly(self.c.ctr().args(["task", "delete", &self.id]));
        quietly(self.c.ctr().args(["container", "delete", &self.id]));
    }
}
