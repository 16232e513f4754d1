//! `replicate`, `partition refresh|plan` and `packument fetch-list`: filling the replica.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use super::{
    live_names, open_store, parse_wrapped_sim, read_name_list, read_pivots, setup, setup_registry_only, with_progress,
    write_atomic, Setup,
};
use crate::config::Global;
use crate::error::Error;
use crate::handlers::HandlerError;
use crate::pivots::{self, Pivots};
use crate::queue::local::{RunOptions, Runner};
use crate::registry::client::FetchError;
use crate::registry::origin::Origin;
use crate::store::Access;

#[derive(Debug, Clone, clap::Args)]
pub struct ReplicateArgs {
    /// Partition by these pivots (a JSON or JavaScript array file).
    #[arg(long, value_name = "FILE", env = "ALL_DOCS_PIVOTS")]
    pub pivots: Option<PathBuf>,
    /// Partition into about N equal-count ranges of the replica's index (a built-in split
    /// when the replica is empty); ignored with --pivots.
    #[arg(long, value_name = "N", default_value_t = 16, env = "ALL_DOCS_PARTITIONS")]
    pub partitions: usize,
    /// Start a simulated registry of N packages on 127.0.0.1 and replicate it (no network).
    #[arg(long, value_name = "N", env = "ALL_DOCS_SIMULATE")]
    pub simulate: Option<usize>,
    /// Only list the partitions (store their rows); fetch no package documents.
    #[arg(long)]
    pub list_only: bool,
}

/// Pivots used when the replica has no index yet: cuts that follow the upstream's byte-order
/// layout (39 % of names are scoped, so `@` gets several ranges).
const DEFAULT_PIVOTS: &[&str] = &[
    "0", "@", "@c", "@f", "@l", "@r", "@v", "A", "a", "c", "e", "g", "j", "m", "p", "r", "s", "t", "v",
];

/// How many partitions the built-in split makes (for the enumeration benchmark's bound).
pub fn default_partition_count() -> usize {
    DEFAULT_PIVOTS.len() + 1
}

/// `replicate`: the whole job.
pub async fn replicate(g: &Global, args: &ReplicateArgs, quiet: bool) -> Result<(), Error> {
    let mut sim = None;
    let origins = match args.simulate {
        Some(n) => {
            let running = crate::sim::spawn(parse_wrapped_sim(n)).await?;
            // A fixed id: the simulator's port changes on every run, its corpus does not.
            let o = Origin::parse(&running.url)
                .map_err(|e| Error::Internal(e.to_string()))?
                .with_id("sim");
            tracing::info!(url = %running.url, packages = n, "simulated registry started");
            sim = Some(running);
            Some((o.clone(), o))
        }
        None => None,
    };
    let mut s = setup(g, origins).await?;
    s._sim = sim;
    let pivots = match &args.pivots {
        Some(path) => read_pivots(path)?,
        None => plan_from_replica(&s, args.partitions).await?,
    };
    run_partitions(&s, pivots, args.list_only, quiet).await?;
    if let Some(sim) = s._sim.take() {
        sim.stop().await;
    }
    Ok(())
}

/// Runs a partition-set of `pivots` in this process, with the progress display.
async fn run_partitions(s: &Setup, pivots: Pivots, list_only: bool, quiet: bool) -> Result<(), Error> {
    let opts = RunOptions {
        partition_parallelism: 4,
        packument_parallelism: s.ctx.client_concurrency() * 2,
        list_only,
    };
    with_progress(s, quiet, |progress| async move {
        // The partition-set first records where `follow` starts, before the enumeration, so
        // every change made while it runs is replayed afterwards; only that can fail it.
        Runner::new(&s.ctx, opts, &progress)
            .replicate(pivots)
            .await
            .map_err(|e| match e {
                HandlerError::Fetch(FetchError::Cancelled { .. }) => {
                    Error::Incomplete("interrupted; run the same command again to resume where it stopped".into())
                }
                e => Error::Incomplete(format!("recording the change-feed checkpoint before enumerating: {e}")),
            })
    })
    .await
}

/// `partition refresh --pivots FILE`: the same job, partitioned by a pivots file.
pub async fn partition_refresh(g: &Global, pivots_file: &Path, quiet: bool) -> Result<(), Error> {
    let s = setup(g, None).await?;
    let pivots = read_pivots(pivots_file)?;
    run_partitions(&s, pivots, false, quiet).await
}

/// Equal-count pivots from the replica's index, or the built-in split for an empty replica.
async fn plan_from_replica(s: &Setup, count: usize) -> Result<Pivots, Error> {
    let names = live_names(&*s.ctx.store, s.ctx.registry.id()).await?;
    if names.len() < count.max(1) * 100 {
        let mut p: Pivots = vec![None];
        p.extend(DEFAULT_PIVOTS.iter().map(|s| Some((*s).to_owned())));
        return Ok(p);
    }
    let refs: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    Ok(pivots::plan(&refs, count))
}

/// `partition plan --count N`: equal-count pivots from the replica (or the upstream).
pub async fn partition_plan(g: &Global, count: usize, output: Option<&Path>) -> Result<(), Error> {
    if count == 0 {
        return Err(Error::usage("--count must be at least 1"));
    }
    // Write access: planning is the first step of filling a replica that may not exist yet.
    let store = open_store(g, Access::Write).await?;
    let registry = g.registry()?;
    let mut names: Vec<String> = live_names(&*store, registry.id())
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if names.is_empty() {
        let s = setup(g, None).await?;
        tracing::info!("the replica is empty: listing the upstream's _all_docs to plan");
        let rows = crate::registry::alldocs::list_range(&s.ctx.client, &s.ctx.replicate, None, None)
            .await
            .map_err(|e| Error::Incomplete(e.to_string()))?;
        names = rows.into_iter().map(|r| r.id).collect();
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let text = pivots::to_json(&pivots::plan(&refs, count));
    match output {
        Some(path) => write_atomic(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// `packument fetch-list LIST`.
pub async fn fetch_list(g: &Global, list: &Path, quiet: bool) -> Result<(), Error> {
    let names = read_name_list(list)?;
    let s = setup_registry_only(g).await?;
    let opts = RunOptions {
        partition_parallelism: 1,
        packument_parallelism: s.ctx.client_concurrency() * 2,
        list_only: false,
    };
    let (ctx, names) = (&s.ctx, &names);
    with_progress(&s, quiet, |progress| async move {
        progress.packuments_total.store(names.len() as u64, Relaxed);
        let runner = Runner::new(ctx, opts, &progress);
        runner.fetch_all(names.iter().map(|n| (n.as_str(), None))).await;
        Ok(())
    })
    .await
}
