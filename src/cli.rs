//! The command line: clap definitions and dispatch. Every flag can also come from an
//! `ALL_DOCS_*` environment variable where it makes sense.

use clap::{ArgAction, Parser, Subcommand};

use crate::error::Error;
use crate::sim::SimArgs;
use crate::telemetry::LogFormat;

/// Build and keep a complete replica of an npm-style registry's metadata.
#[derive(Debug, Parser)]
#[command(name = "all-docs", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ALL_DOCS_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (repeat for less).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a registry simulator on 127.0.0.1 (both origins on one port), for tests and benchmarks.
    Sim(SimArgs),
}

impl Cli {
    pub fn verbosity(&self) -> i8 {
        self.verbose.min(8) as i8 - self.quiet.min(8) as i8
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Sim(args) if args.dump_index => crate::sim::dump_index(&args),
        Command::Sim(args) => crate::sim::run(args).await,
    }
}
