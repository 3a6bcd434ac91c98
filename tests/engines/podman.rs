//! Rootful podman with its storage and run state below one directory, its
//! settings in a containers.conf of ours (`CONTAINERS_CONF`), and a hooks
//! directory of ours. runc keeps its state where podman leaves it, in
//! runc's default /run/runc (the `podman container cleanup` conmon runs
//! when a container exits would not be told otherwise).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{host_command, run_with_timeout, which};
use crate::engine::{engine, processes_naming, quietly, Running, ENGINE_TIMEOUT};

#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
}

/// `nofile=N:N` and `nproc=N:N` no higher than what runc gets from
/// podman: podman's defaults raise them, which fails without
/// CAP_SYS_RESOURCE in the bounding set (the development VM has none).
/// podman 4.3 lowers its own RLIMIT_NPROC to 32768 before it starts
/// conmon (seen in /proc/<runc>/limits), so that is the most nproc can be.
fn ulimits() -> [String; 2] {
    let hard = |res| {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        let rc = unsafe { libc::getrlimit(res, &mut r) };
        assert_eq!(rc, 0, "getrlimit");
        r.rlim_max
    };
    [
        format!("nofile={0}:{0}", hard(libc::RLIMIT_NOFILE).min(1 << 20)),
        format!("nproc={0}:{0}", hard(libc::RLIMIT_NPROC).min(32768)),
    ]
}

impl Podman {
    /// `runtimes` is the `[engine.runtimes]` table to add (the shipped
    /// example's); `hook` the hooks.d file for the hook's cases.
    pub fn new(dir: &Path, runtimes: &str, hook: &str) -> Podman {
        for d in ["hooks", "no-hooks"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir podman dir");
        }
        fs::write(dir.join("hooks/proclens.json"), hook).expect("hooks.d file");
        let [nofile, nproc] = ulimits();
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"{nofile}\", \"{nproc}\"]\n\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\n{runtimes}"
        );
        fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        Podman {
            dir: dir.to_owned(),
        }
    }

    /// `podman` with our state, conf and (unless `hooks`) an empty hooks
    /// directory, so that a hook installed on the host plays no part.
    pub fn podman(&self, hooks: bool) -> Command {
        let mut c = host_command(which("podman").expect("podman (apt-get install podman)"));
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .arg("--storage-driver=overlay")
            .arg("--hooks-dir")
            .arg(self.dir.join(if hooks { "hooks" } else { "no-hooks" }));
        c
    }

    pub fn import(&self, tar: &Path, tag: &str) {
        engine(self.podman(false).arg("import").arg(tar).arg(tag));
    }

    /// `podman [GLOBAL...] run -d ARGS...`.
    pub fn run(&self, hooks: bool, global: &[&str], args: &[&str]) -> PodmanContainer<'_> {
        let id = engine(
            self.podman(hooks)
                .args(global)
                .args(["run", "-d"])
                .args(args),
        );
        let id = id.lines().last().unwrap_or("").to_owned();
        let pid = engine(
            self.podman(false)
                .args(["inspect", "-f", "{{.State.Pid}}", &id]),
        );
        PodmanContainer {
            p: self,
            pid: pid
                .parse()
                .unwrap_or_else(|_| panic!("podman inspect: no pid in {pid:?}")),
            id,
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        quietly(self.podman(false).args(["rm", "-fa", "-t", "0"]));
        quietly(self.podman(false).args(["rmi", "-af"]));
        // conmon runs `podman container cleanup` when a container exits;
        // let those finish before the state goes.
        let deadline = Instant::now() + ENGINE_TIMEOUT;
        while !processes_naming(&self.dir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[derive(Debug)]
pub struct PodmanContainer<'p> {
    p: &'p Podman,
    pub id: String,
    pid: i32,
}

impl Running for PodmanContainer<'_> {
    fn init_pid(&self) -> i32 {
        self.pid
    }

    fn exec(&self, script: &str) -> Output {
        run_with_timeout(
            self.p
                .podman(false)
                .args(["exec", &self.id, "sh", "-c", script]),
            ENGINE_TIMEOUT,
        )
    }
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        quietly(self.p.podman(false).args(["rm", "-f", "-t", "0", &self.id]));
    }
}
