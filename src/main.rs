//! The `all-docs` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = all_docs::cli::Cli::parse();
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
