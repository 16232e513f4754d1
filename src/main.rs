//! The `all-docs` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = all_docs::cli::Cli::parse();
    raise_open_files_limit();
    // Lives until `main` returns, after the runtime: dropping it flushes traces and metrics.
    let _telemetry = all_docs::telemetry::init(cli.log_format, cli.verbosity());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("all-docs: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(all_docs::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("all-docs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Raises the soft limit on open files to the hard limit (or to 10 240 where that is refused,
/// as on macOS with an unlimited hard limit), much as Go and the JVM do when they start: the
/// service holds a descriptor per connection and a replication one per request and write in
/// flight, and the usual soft default of 1024 is a leftover of select(2) that a busy process
/// outgrows. Failing to raise it is not an error: the old limit stays.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max {
                return;
            }
            let old = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                limit.rlim_cur = limit.rlim_max.min(10_240).max(old);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}
