//! Command-line definitions.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

pub use crate::integrate::binds::{DEFAULT_MOUNTPOINT, DEFAULT_SECCOMP_SOCKET};

#[derive(Debug, Parser)]
#[command(
    name = "proclens",
    version,
    about = "Container-aware /proc and /sys/devices/system/cpu over FUSE",
    long_about = "proclens serves proc/{meminfo,cpuinfo,stat,loadavg,uptime,diskstats,swaps} and \
sys/devices/system/cpu rendered per reader from the reader's cgroup, so free, top, uptime, \
htop, vmstat and iostat inside a container show the container.\n\n\
Example:\n  proclens mount &\n  docker run $(proclens docker-args) --memory 256m debian free -m"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount the filesystem and serve it in the foreground (as root, in the host pid namespace).
    #[command(
        after_help = "Example:\n  proclens mount                  # serves /var/lib/proclens\n  proclens mount /run/proclens -v"
    )]
    Mount {
        /// Where to mount; created if absent.
        #[arg(default_value = DEFAULT_MOUNTPOINT)]
        mountpoint: PathBuf,
        /// The socket runc hands containers' seccomp descriptors to
        /// (`linux.seccomp.listenerPath`, which proclens-runc sets), for
        /// answering their sysinfo(2) calls.
        #[arg(long, default_value = DEFAULT_SECCOMP_SOCKET)]
        seccomp_socket: PathBuf,
        #[command(flatten)]
        opts: ViewOpts,
    },
    /// Print what a process (or a process in a cgroup) would read through the mount.
    ///
    /// Load averages are history the running daemon keeps; a one-off `show`
    /// has none, so its loadavg starts from 0.00 like a container's first read.
    #[command(
        after_help = "Example:\n  proclens show meminfo --pid 4242\n  proclens show cpu/online --cgroup /system.slice/docker-abc.scope"
    )]
    Show {
        /// meminfo, cpuinfo, stat, loadavg, uptime, diskstats, swaps or cpu/online
        /// (also cpu/possible, cpu/present).
        file: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        opts: ViewOpts,
    },
    /// Host and container side by side: memory, swap, CPUs, load, uptime, disk I/O.
    #[command(after_help = "Example:\n  proclens diff --pid 4242\n")]
    Diff {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        opts: ViewOpts,
    },
    /// OCI createContainer hook: bind every proclens file into the container's rootfs.
    ///
    /// Reads the container state (JSON) on stdin, as the runtime passes it.
    /// Skips, exit 0, with one line on stderr, when the daemon does not serve
    /// the mount or the container has the annotation io.proclens.disable=true.
    #[command(
        after_help = "Example (podman, CRI-O): /usr/share/containers/oci/hooks.d/proclens.json
  {\"version\": \"1.0.0\", \"hook\": {\"path\": \"/usr/bin/proclens\", \"args\": [\"proclens\", \"oci-hook\"]},
   \"when\": {\"always\": true}, \"stages\": [\"createContainer\"]}"
    )]
    OciHook {
        #[command(flatten)]
        mp: MountpointArg,
    },
    /// Print the running daemon's counters for a person: reads per file, content latency,
    /// fallbacks to host files, containers tracked.
    ///
    /// The same numbers, in Prometheus text format, are in MOUNTPOINT/.proclens/metrics
    /// (root only), for node_exporter's textfile collector or a scrape.
    #[command(
        after_help = "Example:\n  proclens status\n  cat /var/lib/proclens/.proclens/metrics"
    )]
    Status {
        #[command(flatten)]
        mp: MountpointArg,
    },
    /// Print the -v flags that bind every proclens file, for docker run / podman run.
    #[command(
        after_help = "Example:\n  docker run $(proclens docker-args) --memory 256m debian free -m"
    )]
    DockerArgs {
        #[command(flatten)]
        mp: MountpointArg,
    },
    /// OCI runtime wrapper: add the proclens binds to a container's config.json, then run runc.
    ///
    /// Installed as /usr/bin/proclens-runc (a link to proclens), it takes runc's
    /// command line. For `create` and `run` it adds the proclens binds to the
    /// bundle's config.json (--bundle/-b, else the working directory): the same
    /// files and the same rules as `proclens oci-hook`, so nothing when the daemon
    /// does not serve the mount or the container sets io.proclens.disable=true, and
    /// no bind whose target would be missing or outside the rootfs. Then, for
    /// every command, it execs the real runtime with the same arguments. It never
    /// makes a container fail that would have started without it: any problem is
    /// one line on stderr, and the real runtime runs with the unchanged
    /// config.json.
    #[command(
        disable_help_flag = true,
        after_help = "Settings, as options before runc's command (taken out before the exec), or
in the environment:
  --proclens-runtime=PATH    PROCLENS_RUNC_RUNTIME     the real runtime
                                                       (default: runc from PATH)
  --proclens-mountpoint=DIR  PROCLENS_RUNC_MOUNTPOINT  where the daemon serves
                                                       (default: /var/lib/proclens)

Examples (more in /usr/share/doc/proclens/examples/):
  docker:      /etc/docker/daemon.json  {\"runtimes\": {\"proclens\": {\"path\": \"/usr/bin/proclens-runc\"}}}
               docker run --runtime proclens ...
  podman:      containers.conf  [engine.runtimes] proclens = [\"/usr/bin/proclens-runc\"]
               podman run --runtime proclens ...
  containerd:  BinaryName = \"/usr/bin/proclens-runc\" in a runc runtime's options
               ctr run --runc-binary /usr/bin/proclens-runc ..."
    )]
    Runc {
        /// runc's command line, passed on unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Print the volumes: and volumeMounts: YAML for a Kubernetes pod.
    #[command(after_help = "Example:\n  proclens k8s-volumes > proclens-volumes.yaml")]
    K8sVolumes {
        #[command(flatten)]
        mp: MountpointArg,
    },
    /// Write the man page or a shell completion script (used to build the package).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Debug, Args)]
pub struct MountpointArg {
    /// Where the daemon serves its files.
    #[arg(long, default_value = DEFAULT_MOUNTPOINT)]
    pub mountpoint: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// proclens.1 and one page per subcommand, into DIR.
    Man { dir: PathBuf },
    /// The completion script for SHELL, into DIR.
    Completions {
        shell: clap_complete::Shell,
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A process id in the host's pid namespace.
    #[arg(long)]
    pub pid: Option<u32>,
    /// A cgroup path as in /proc/PID/cgroup, e.g. /mycontainer.
    #[arg(long)]
    pub cgroup: Option<String>,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct ViewOpts {
    /// Do not cap the visible CPU count at ceil(CPU quota); show the whole cpuset.
    #[arg(long)]
    pub no_cfs_cpus: bool,
}
