//! The command line: clap definitions and dispatch. Every flag can also come from an
//! `ALL_DOCS_*` environment variable where it makes sense.

use clap::{ArgAction, Parser, Subcommand};

use std::path::PathBuf;

use crate::commands::{FollowArgs, ReplicateArgs, ShowArgs};
use crate::config::{Global, Replica};
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
    #[arg(long, global = true, value_enum, default_value = "text", env = "ALL_DOCS_LOG_FORMAT")]
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
    /// Replicate the whole registry into the store: partitions, then every changed packument.
    /// Resumable: run it again after a crash or Ctrl-C.
    Replicate {
        #[command(flatten)]
        global: Global,
        #[command(flatten)]
        args: ReplicateArgs,
    },
    /// Keep the replica fresh after `replicate`: apply the change feed from the stored checkpoint
    /// (deletions become tombstones), polling until stopped. Resumable.
    Follow {
        #[command(flatten)]
        global: Global,
        #[command(flatten)]
        args: FollowArgs,
    },
    /// Key-range partitions of `_all_docs`.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Single package documents.
    #[command(subcommand)]
    Packument(PackumentCommand),
    /// The replica, a folder or a bucket (`--store`).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print one stored package document (metadata on stderr, document on stdout), one version
    /// of it (`NAME@VERSION`, `NAME@TAG`), or what a jq filter selects from either (`--select`).
    Show {
        #[command(flatten)]
        args: ShowArgs,
        #[command(flatten)]
        replica: Replica,
    },
    /// Run a registry simulator on 127.0.0.1 (both origins on one port), for tests and benchmarks.
    Sim(SimArgs),
    /// Run the benchmark scenarios against the simulator and write BENCHMARKS.md.
    Bench(crate::bench::BenchArgs),
    /// Serve the Pub/Sub push endpoints (the Cloud Run service): POST /work/{partition-set,
    /// partition,packument,changes}, GET /healthz, /readyz.
    Serve(crate::service::cli::ServeArgs),
    /// Publish work items to Pub/Sub (e.g. `--partitions 64` to start a whole run).
    Publish(crate::service::cli::PublishArgs),
    /// Development helpers.
    #[command(subcommand)]
    Dev(DevCommand),
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Create the topics, push subscriptions (retry + dead-letter policies) and dead-letter
    /// subscriptions on a Pub/Sub emulator, as terraform/ does in a project.
    PubsubSetup(crate::service::cli::PubSubSetupArgs),
}

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Replicate, partitioned by a pivots file (JSON or JavaScript array, `null` first).
    Refresh {
        #[arg(long, value_name = "FILE")]
        pivots: PathBuf,
        #[command(flatten)]
        global: Global,
    },
    /// Write equal-count pivots from the replica's index (or the upstream's, if it is empty).
    Plan {
        /// Number of partitions.
        #[arg(long, value_name = "N")]
        count: usize,
        /// Write here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        global: Global,
    },
    /// Each stored range of `_all_docs`: its ends, row count, size and when it was listed.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: crate::commands::Report,
        #[command(flatten)]
        replica: Replica,
    },
}

#[derive(Debug, Subcommand)]
pub enum PackumentCommand {
    /// Fetch the packages named in LIST (a JSON array, or one name per line; `-` for stdin).
    FetchList {
        #[arg(value_name = "LIST")]
        list: PathBuf,
        #[command(flatten)]
        global: Global,
    },
    /// Copy the stored documents of the packages in LIST to OUTDIR/<name>.json.
    Export {
        #[arg(value_name = "LIST")]
        list: PathBuf,
        #[arg(value_name = "OUTDIR")]
        outdir: PathBuf,
        #[command(flatten)]
        replica: Replica,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print `name<TAB>rev` for every live packument, in byte order.
    CreateIndex(Replica),
    /// Re-hash every stored entry and report corrupt ones (exit 1 if any); remove temporary
    /// files that interrupted writes left and nothing has touched for an hour.
    Validate(Replica),
    /// Counts and sizes of the replica (JSON, or a table for people).
    Stats {
        #[arg(long, value_enum, default_value = "json")]
        format: crate::commands::Report,
        #[command(flatten)]
        replica: Replica,
    },
}

impl Cli {
    pub fn verbosity(&self) -> i8 {
        self.verbose.min(8) as i8 - self.quiet.min(8) as i8
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    use crate::commands as c;
    let quiet = cli.quiet > 0;
    match &cli.command {
        Command::Sim(args) if args.dump_index => crate::sim::dump_index(args),
        Command::Sim(args) => crate::sim::run(args.clone()).await,
        Command::Replicate { global, args } => c::replicate(global, args, quiet).await,
        Command::Follow { global, args } => c::follow(global, args).await,
        Command::Partition(PartitionCommand::Refresh { pivots, global }) => {
            c::partition_refresh(global, pivots, quiet).await
        }
        Command::Partition(PartitionCommand::Plan { count, output, global }) => {
            c::partition_plan(global, *count, output.as_deref()).await
        }
        Command::Packument(PackumentCommand::FetchList { list, global }) => c::fetch_list(global, list, quiet).await,
        Command::Packument(PackumentCommand::Export { list, outdir, replica }) => {
            c::export(replica, list, outdir).await
        }
        Command::Cache(CacheCommand::CreateIndex(replica)) => c::create_index(replica).await,
        Command::Cache(CacheCommand::Validate(replica)) => c::validate(replica).await,
        Command::Cache(CacheCommand::Stats { format, replica }) => c::stats(replica, *format).await,
        Command::Partition(PartitionCommand::List { format, replica }) => c::partition_list(replica, *format).await,
        Command::Show { args, replica } => c::show(replica, args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Serve(args) => crate::service::cli::serve(args).await,
        Command::Publish(args) => crate::service::cli::publish(args).await,
        Command::Dev(DevCommand::PubsubSetup(args)) => crate::service::cli::pubsub_setup(args).await,
    }
}
