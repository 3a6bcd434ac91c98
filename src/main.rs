use clap::Parser;
use proclens::cli::{self, args::Cli};
use std::io::Write;

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
    let journal = stderr_is_journal();
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    logger
        .format_timestamp(None)
        .target(env_logger::Target::Stderr);
    if journal {
        // journald stamps each line itself; the level goes in the syslog
        // prefix it reads, so `journalctl -p` filters and colours by it.
        logger.format(|buf, record| {
            let text = format!("{}: {}", record.target(), record.args());
            buf.write_all(syslog_prefixed(record.level(), &text).as_bytes())
        });
    }
    let logger = logger.build();
    log::set_max_level(logger.filter());
    log::set_boxed_logger(Box::new(Quiet(logger))).expect("the only logger");
    if let Err(e) = cli::run(cli) {
        let msg = format!("proclens: {e:#}\n");
        let msg = if journal {
            syslog_prefixed(log::Level::Error, &msg)
        } else {
            msg
        };
        let _ = std::io::stderr().write_all(msg.as_bytes());
        std::process::exit(1);
    }
}

/// Whether stderr is a stream to the journal: systemd sets `$JOURNAL_STREAM`
/// to the device and inode of that stream ("DEV:INO", systemd.exec(5)), so
/// a process compares them with its own stderr (the variable is inherited
/// by processes whose stderr went elsewhere).
fn stderr_is_journal() -> bool {
    let Some(want) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Some((dev, ino)) = want.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<libc::dev_t>(), ino.parse::<libc::ino_t>()) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// `text` with the sd-daemon(3) priority prefix (`<3>` error, `<4>`
/// warning, `<6>` info, `<7>` debug) on each of its lines (journald reads
/// the prefix per line), newline-terminated.
fn syslog_prefixed(level: log::Level, text: &str) -> String {
    let p = match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    };
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.trim_end_matches('\n').split('\n') {
        out.push_str(p);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The daemon's logger, with one of fuser's errors shown at debug level:
/// fuser answers every FUSE_INTERRUPT with ENOSYS, and when the
/// interrupted request was answered first the kernel no longer knows it
/// and refuses the reply with ENOENT ("Failed to send FUSE reply: No such
/// file or directory"). The reader got its answer or its signal; nothing
/// is lost, so it is no error of ours (tests fail on any error line).
struct Quiet(env_logger::Logger);

impl log::Log for Quiet {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        self.0.enabled(m)
    }

    fn log(&self, r: &log::Record<'_>) {
        let gone = r.level() == log::Level::Error
            && r.target() == "fuser::reply"
            && r.args().to_string().ends_with("(os error 2)");
        if !gone {
            return self.0.log(r);
        }
        let demoted = log::Record::builder()
            .args(*r.args())
            .level(log::Level::Debug)
            .target(r.target())
            .module_path(r.module_path())
            .file(r.file())
            .line(r.line())
            .build();
        if self.0.matches(&demoted) {
            self.0.log(&demoted);
        }
    }

    fn flush(&self) {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::{syslog_prefixed, Quiet};
    use log::{Level, Log};
    use std::sync::{Arc, Mutex};

    /// What a logger writes, shared with the test.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn replies_to_requests_the_kernel_dropped_are_debug_not_errors() {
        let sink = Sink::default();
        let quiet = Quiet(
            env_logger::Builder::new()
                .parse_filters("info")
                .format(|buf, r| {
                    use std::io::Write;
                    writeln!(buf, "{} {}: {}", r.level(), r.target(), r.args())
                })
                .target(env_logger::Target::Pipe(Box::new(sink.clone())))
                .build(),
        );
        let log = |target: &str, level: Level, msg: &str| {
            quiet.log(
                &log::Record::builder()
                    .args(format_args!("{msg}"))
                    .level(level)
                    .target(target)
                    .build(),
            )
        };
        let gone = "Failed to send FUSE reply: No such file or directory (os error 2)";
        log("fuser::reply", Level::Error, gone);
        log(
            "fuser::reply",
            Level::Error,
            "Failed to send FUSE reply: Broken pipe (os error 32)",
        );
        log("proclens::x", Level::Error, gone);
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        assert_eq!(
            text,
            format!(
                "ERROR fuser::reply: Failed to send FUSE reply: Broken pipe (os error 32)\n\
                 ERROR proclens::x: {gone}\n"
            )
        );
    }

    #[test]
    fn every_line_carries_the_priority_of_its_level() {
        assert_eq!(syslog_prefixed(Level::Error, "x: boom"), "<3>x: boom\n");
        assert_eq!(syslog_prefixed(Level::Warn, "w"), "<4>w\n");
        assert_eq!(syslog_prefixed(Level::Info, "i\n"), "<6>i\n");
        assert_eq!(syslog_prefixed(Level::Debug, "d"), "<7>d\n");
        assert_eq!(syslog_prefixed(Level::Trace, "t"), "<7>t\n");
        assert_eq!(
            syslog_prefixed(Level::Error, "first\nsecond\n"),
            "<3>first\n<3>second\n"
        );
    }
}
