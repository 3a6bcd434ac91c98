//! The command line: its arguments (`args`), and what each command does
//! with the layers below: `mount` starts the supervisor, `show` and `diff`
//! render on the spot, `status` reads the running daemon's counters, and
//! the engine helpers print or apply the bind list.

pub mod args;
pub mod diff;

use crate::container::caller::Caller;
use crate::container::view::{Options, Views};
use crate::container::VFile;
use anyhow::{bail, Context, Result};
use args::{Cli, Command, Generate, Target, ViewOpts};
use std::path::Path;
use std::sync::Arc;

fn options(o: ViewOpts) -> Options {
    Options {
        cfs: !o.no_cfs_cpus,
    }
}

fn caller(views: &Views, t: &Target) -> Result<Arc<Caller>> {
    match (t.pid, &t.cgroup) {
        (Some(pid), _) => views
            .caller(pid)
            .with_context(|| format!("resolving pid {pid}")),
        (None, Some(cg)) => views
            .caller_in_cgroup(cg)
            .with_context(|| format!("resolving cgroup {cg}")),
        (None, None) => bail!("give --pid or --cgroup"),
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Mount {
            mountpoint,
            seccomp_socket,
            opts,
        } => crate::lifecycle::supervisor::run(&mountpoint, options(opts), &seccomp_socket),
        Command::Show { file, target, opts } => {
            let f = VFile::from_cli(&file).with_context(|| {
                format!("unknown file {file:?}: one of meminfo cpuinfo stat loadavg uptime diskstats swaps vmstat cpu/online cpu/possible cpu/present pressure/cpu pressure/memory pressure/io")
            })?;
            let views = Views::new(Path::new("/"), options(opts))?;
            let c = caller(&views, &target)?;
            // On stderr: stdout is the file, byte for byte.
            eprintln!("proclens: container {}", c.describe_container());
            match views.render(f, &c) {
                Ok(s) => print!("{s}"),
                Err(e) => {
                    eprintln!(
                        "proclens: {e}; the reader gets the host's {}",
                        f.host_path()
                    );
                    print!("{}", views.host().read(&f.host_path())?);
                }
            }
            Ok(())
        }
        Command::Diff { target, opts } => {
            let views = Views::new(Path::new("/"), options(opts))?;
            let c = caller(&views, &target)?;
            print!("{}", diff::run(&views, &c)?);
            Ok(())
        }
        Command::OciHook { mp } => crate::integrate::ocihook::run(&mp.mountpoint),
        Command::DockerArgs { mp } => {
            println!("{}", crate::integrate::binds::docker_args(&mp.mountpoint));
            Ok(())
        }
        Command::K8sVolumes { mp } => {
            print!("{}", crate::integrate::binds::k8s_volumes(&mp.mountpoint));
            Ok(())
        }
        Command::Status { mp } => {
            let path = mp.mountpoint.join(".proclens/metrics");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (is proclens mount serving there?)",
                    path.display()
                )
            })?;
            print!(
                "{}",
                crate::serve::metrics::report(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            );
            Ok(())
        }
        Command::Runc { args } => runc_wrapper(args),
        Command::Generate { what } => generate(what),
    }
}

/// `proclens-runc ARGS` (the binary under that name) or `proclens runc
/// ARGS`: the runtime wrapper, which ends by exec'ing the real runtime.
/// `--help` alone shows the wrapper's own help; runc's is `runc --help`.
pub fn runc_wrapper(args: Vec<std::ffi::OsString>) -> ! {
    if args.len() == 1 && (args[0] == "--help" || args[0] == "-h") {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        if let Some(sub) = cmd.find_subcommand_mut("runc") {
            let sub = sub.clone().name(crate::integrate::runc::NAME);
            print!("{}", sub.clone().render_long_help());
            std::process::exit(0);
        }
    }
    crate::integrate::runc::run(args)
}

/// Writes the man pages or a completion script from the clap definitions.
fn generate(what: Generate) -> Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    match what {
        Generate::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
        Generate::Completions { shell, dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut cmd = cmd;
            clap_complete::generate_to(shell, &mut cmd, "proclens", &dir)
                .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
        }
    }
    Ok(())
}
