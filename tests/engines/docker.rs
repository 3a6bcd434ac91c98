//! dockerd of our own: all its state below one directory, no networking
//! of the host touched, every container in a cgroup parent of ours.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{host_command, run_with_timeout, which};
use crate::engine::{engine, quietly, wait_for, Running, Started, ENGINE_TIMEOUT};

/// dockerd 20.10 writes its trust key here whatever its options say.
const KEY_JSON: &str = "/etc/docker/key.json";

#[derive(Debug)]
pub struct Dockerd {
    dir: PathBuf,
    daemon: Started,
    key_json_was_there: bool,
}

/// The client of the docker.io package (a newer one elsewhere in PATH
/// negotiates down too, but the pair is what Debian ships).
pub fn client() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if debian.is_file() {
        debian.to_owned()
    } else {
        which("docker").expect("docker (apt-get install docker.io)")
    }
}

impl Dockerd {
    /// Starts dockerd with `config` as its daemon.json, its state in
    /// `dir`, `/<cgroup_parent>` as every container's cgroup parent.
    pub fn start(dir: &Path, config: &Value, cgroup_parent: &str) -> Dockerd {
        fs::create_dir_all(dir).expect("mkdir docker dir");
        let conf = dir.join("daemon.json");
        fs::write(&conf, serde_json::to_vec_pretty(config).expect("json")).expect("daemon.json");
        let key_json_was_there = Path::new(KEY_JSON).exists();
        let log = dir.join("dockerd.log");
        let out = fs::File::create(&log).expect("dockerd log");
        let child = host_command(which("dockerd").expect("dockerd (apt-get install docker.io)"))
            .arg("--config-file")
            .arg(&conf)
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-forward=false",
                "--ip-masq=false",
                "--storage-driver=overlay2",
                // Not systemd's scopes, which dockerd 20.10 picks by itself
                // on cgroup v2 under systemd (the VM's systemd guest), and
                // which take no `/path` parent.
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ])
            .arg(format!("--cgroup-parent=/{cgroup_parent}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start dockerd");
        let mut d = Dockerd {
            dir: dir.to_owned(),
            daemon: Started {
                child,
                name: "dockerd",
                log,
            },
            key_json_was_there,
        };
        wait_for("dockerd answering", ENGINE_TIMEOUT, || {
            d.daemon.assert_running();
            run_with_timeout(
                d.docker()
                    .args(["version", "--format", "{{.Server.Version}}"]),
                Duration::from_secs(60),
            )
            .status
            .success()
        });
        d
    }

    /// The client, talking to this dockerd only.
    pub fn docker(&self) -> Command {
        let mut c = host_command(client());
        self.env(&mut c);
        c
    }

    /// DOCKER_HOST and DOCKER_CONFIG of this dockerd, for a shell.
    pub fn env(&self, c: &mut Command) {
        c.env(
            "DOCKER_HOST",
            format!("unix://{}", self.dir.join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", self.dir.join("client"));
    }

    /// `docker import TAR TAG`.
    pub fn import(&self, tar: &Path, tag: &str) {
        engine(self.docker().arg("import").arg(tar).arg(tag));
    }

    /// `docker run -d ARGS...`.
    pub fn run(&self, args: &[&str]) -> DockerContainer<'_> {
        let id = engine(self.docker().args(["run", "-d"]).args(args));
        DockerContainer::adopt(self, id)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // This dockerd has only our containers.
        if let Ok(out) =
            crate::common::try_run_with_timeout(self.docker().args(["ps", "-aq"]), ENGINE_TIMEOUT)
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                quietly(self.docker().args(["rm", "-f", id]));
            }
        }
        self.daemon.stop();
        if !self.key_json_was_there {
            let _ = fs::remove_file(KEY_JSON);
        }
    }
}

#[derive(Debug)]
pub struct DockerContainer<'d> {
    d: &'d Dockerd,
    pub id: String,
    pid: i32,
}

impl<'d> DockerContainer<'d> {
    /// A container started some other way (a shell line, a script).
    pub fn adopt(d: &'d Dockerd, id: String) -> DockerContainer<'d> {
        let mut c = DockerContainer { d, id, pid: 0 };
        let pid = engine(
            c.d.docker()
                .args(["inspect", "-f", "{{.State.Pid}}", &c.id]),
        );
        c.pid = pid
            .parse()
            .unwrap_or_else(|_| panic!("docker inspect: no pid in {pid:?}"));
        c
    }
}

impl Running for DockerContainer<'_> {
    fn init_pid(&self) -> i32 {
        self.pid
    }

    fn exec(&self, script: &str) -> Output {
        run_with_timeout(
            self.d.docker().args(["exec", &self.id, "sh", "-c", script]),
            ENGINE_TIMEOUT,
        )
    }
}

impl Drop for DockerContainer<'_> {
    fn drop(&mut self) {
        quietly(self.d.docker().args(["rm", "-f", &self.id]));
    }
}
