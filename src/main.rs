use clap::Parser;
use proclens::cli::{self, args::Cli};

fn main() {
    // Under the name proclens-runc the binary is the OCI runtime wrapper,
    // whose command line is runc's: clap never sees it.
    let mut args = std::env::args_os();
    if args
        .next()
        .is_some_and(|argv0| proclens::integrate::runc::is_wrapper(&argv0))
    {
        cli::runc_wrapper(args.collect());
    }
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .target(env_logger::Target::Stderr)
        .init();
    if let Err(e) = cli::run(cli) {
        eprintln!("proclens: {e:#}");
        std::process::exit(1);
    }
}
