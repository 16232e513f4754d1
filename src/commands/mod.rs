//! The replication commands: argument types and what each does. Glue between the CLI, the
//! handlers, the runner and the store.
//!
//! - `replicate`: filling the replica (`replicate`, `partition refresh|plan`, `packument
//!   fetch-list`).
//! - `follow`: keeping it fresh from the change feed.
//! - `cache`: reading it (`cache create-index|validate|stats`, `packument export`).
//! - `show`: one stored document, one version of it, or a jq selection of either.
//!
//! Here: what they share (opening the store from `--store`, the client and Ctrl-C handling, the
//! progress display and the summary, name lists and pivots files).

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use clap::Parser as _;

use crate::config::{Global, Replica};
use crate::error::Error;
use crate::handlers::Ctx;
use crate::keys::Key;
use crate::pivots::{self, Pivots};
use crate::queue::progress::{self, Progress};
use crate::registry::client::Client;
use crate::registry::origin::Origin;
use crate::store::{Access, OpenError, Status, Store};
use crate::work;

mod cache;
mod follow;
mod replicate;
mod show;

pub use cache::{create_index, export, partition_list, stats, validate, Report};
pub use follow::{follow, FollowArgs};
pub use replicate::{default_partition_count, fetch_list, partition_plan, partition_refresh, replicate, ReplicateArgs};
pub use show::{show, ShowArgs};

pub(crate) fn parse_wrapped_sim(packages: usize) -> crate::sim::SimArgs {
    #[derive(clap::Parser)]
    struct W {
        #[command(flatten)]
        sim: crate::sim::SimArgs,
    }
    W::parse_from(["sim", "--port", "0", "--packages", &packages.to_string()]).sim
}

/// Everything a replication command needs, built from the flags.
struct Setup {
    ctx: Ctx,
    stop: CancellationToken,
    _sim: Option<crate::sim::RunningSim>,
}

async fn setup(g: &Global, origins: Option<(Origin, Origin)>) -> Result<Setup, Error> {
    let (replicate, registry) = match origins {
        Some(o) => o,
        None => (g.replicate()?, g.registry()?),
    };
    let store = open_store(g, Access::Write).await?;
    let stop = CancellationToken::new();
    let cfg = g.client_config()?;
    let client = Arc::new(Client::new(cfg, stop.clone()).map_err(|e| Error::Internal(e.to_string()))?);
    let ctx = Ctx {
        client,
        store,
        replicate,
        registry,
    };
    Ok(Setup { ctx, stop, _sim: None })
}

/// The replica `--store` names, a folder or a bucket, through the one store interface: no
/// command reads the layout of either itself. A spec that names nothing usable is bad input.
pub(crate) async fn open_store(g: &Replica, access: Access) -> Result<Arc<dyn Store>, Error> {
    crate::store::open(&g.store, access).await.map_err(|e| match e {
        OpenError::Bad { .. } => Error::usage(format!("--store / ALL_DOCS_STORE: {e}")),
        OpenError::Unavailable { .. } => Error::Incomplete(e.to_string()),
    })
}

/// Stops work on Ctrl-C or SIGTERM (in-flight requests end, nothing half-written is kept).
fn stop_on_signal(stop: CancellationToken) {
    let signal = crate::shutdown::signal();
    tokio::spawn(async move {
        signal.await;
        tracing::warn!("stopping: finishing in-flight work (run the same command again to resume)");
        stop.cancel();
    });
}

/// Runs `work` with Ctrl-C handling and the progress display, then summarizes.
async fn with_progress<F, Fut>(s: &Setup, quiet: bool, work: F) -> Result<(), Error>
where
    F: FnOnce(Arc<Progress>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    stop_on_signal(s.stop.clone());
    let report_stop = CancellationToken::new();
    let reporter = tokio::spawn(progress::report(
        progress.clone(),
        s.ctx.client.stats.clone(),
        report_stop.clone(),
        quiet,
    ));
    let worked = work(progress.clone()).await;
    report_stop.cancel();
    let _ = reporter.await;
    worked?;
    summarize(s, &progress, started, quiet)
}

fn summarize(s: &Setup, progress: &Progress, started: Instant, quiet: bool) -> Result<(), Error> {
    let line = progress.line(&s.ctx.client.stats, started.elapsed());
    let interrupted = s.stop.is_cancelled();
    let failed = progress.failed.load(Relaxed) + progress.partitions_failed.load(Relaxed);
    if !quiet {
        eprintln!("done in {:.1}s: {line}", started.elapsed().as_secs_f64());
        if let Some(deletions) = progress.deletions_seen() {
            eprintln!("{deletions}");
        }
    }
    if interrupted {
        return Err(Error::Incomplete(
            "interrupted; run the same command again to resume where it stopped".into(),
        ));
    }
    if failed > 0 {
        let list = progress.failures.lock().join("\n  ");
        return Err(Error::Incomplete(format!(
            "{failed} items failed (first ones below); run the same command again to retry them:\n  {list}"
        )));
    }
    Ok(())
}

fn read_pivots(path: &Path) -> Result<Pivots, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("cannot read pivots file `{}`: {e}", path.display())))?;
    pivots::parse(&text).map_err(|e| Error::usage(format!("pivots file `{}`: {e}", path.display())))
}

/// `(name, rev)` of every live packument of `origin_id` in the store, in byte order, for
/// planning partitions: a corrupt entry is passed over with a warning (the plan only needs the
/// rough shape of the index, and `replicate` is what refetches such an entry).
async fn live_names(store: &dyn Store, origin_id: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for_each_packument(store, origin_id, Corrupt::PassOver, |name, meta| {
        if matches!(meta.status, Status::Ok | Status::Unpublished) {
            out.push((name.to_owned(), meta.rev.clone().unwrap_or_default()));
        }
    })
    .await?;
    Ok(out)
}

/// What a listing does with an entry it cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corrupt {
    /// End with an error that names it: an index or counts that silently left it out would be
    /// a wrong answer.
    Fail,
    /// Warn and go on.
    PassOver,
}

/// Calls `f` with the name and metadata of every packument of `origin_id` in the store, in byte
/// order, from one listing (no request per entry).
async fn for_each_packument(
    store: &dyn Store,
    origin_id: &str,
    on_corrupt: Corrupt,
    mut f: impl FnMut(&str, &crate::store::Meta),
) -> Result<(), Error> {
    let corrupt = |e: String| Error::Incomplete(format!("{e} (`all-docs cache validate` lists every such entry)"));
    crate::store::for_each(store, &Key::packument_prefix(origin_id), |listed| {
        let read = listed.meta.map_err(|e| e.to_string()).and_then(|meta| match listed.key.parse::<Key>() {
            Ok(Key::Packument { name, .. }) => Ok((name, meta)),
            Ok(other) => Err(format!("`{other}` listed among the packuments")),
            Err(e) => Err(e.to_string()),
        });
        match read {
            Ok((name, meta)) => {
                f(&name, &meta);
                Ok(())
            }
            Err(e) if on_corrupt == Corrupt::PassOver => {
                tracing::warn!(key = %listed.key, error = %e, "passing over an entry that cannot be read (`all-docs cache validate` lists them)");
                Ok(())
            }
            Err(e) => Err(corrupt(e)),
        }
    })
    .await
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let io = |e| Error::Io {
        what: format!("writing `{}`", path.display()),
        source: e,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a name list: a JSON array of strings or one name per line; `-` is stdin.
pub fn read_name_list(path: &Path) -> Result<Vec<String>, Error> {
    let shown = path.display().to_string();
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Error::usage(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(path).map_err(|e| Error::usage(format!("cannot read list `{shown}`: {e}")))?
    };
    let names: Vec<String> = if text.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| Error::usage(format!("list `{shown}` is not a JSON array: {e}")))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                serde_json::Value::String(s) => Ok(s),
                other => Err(Error::usage(format!(
                    "list `{shown}`: item {} is not a string: {other}",
                    i + 1
                ))),
            })
            .collect::<Result<_, _>>()?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if names.is_empty() {
        return Err(Error::usage(format!("list `{shown}` has no names")));
    }
    for (i, name) in names.iter().enumerate() {
        work::validate_name(name).map_err(|e| Error::usage(format!("list `{shown}`, item {}: {e}", i + 1)))?;
    }
    Ok(names)
}

/// Commands that only talk to the registry origin do not need a replication origin.
async fn setup_registry_only(g: &Global) -> Result<Setup, Error> {
    let registry = g.registry()?;
    let replicate = match g.replicate() {
        Ok(o) => o,
        Err(_) => registry.clone(),
    };
    setup(g, Some((replicate, registry))).await
}

impl Ctx {
    fn client_concurrency(&self) -> usize {
        self.client.concurrency()
    }
}
