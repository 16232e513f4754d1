//! The replication commands: argument types and what each does. Glue between the CLI, the
//! handlers, the runner and the store.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use clap::Parser as _;
use futures_util::StreamExt as _;

use crate::config::{Global, Replica};
use crate::error::Error;
use crate::handlers::{Ctx, HandlerError};
use crate::keys::{Key, Kind};
use crate::pivots::{self, Pivots};
use crate::queue::local::{RunOptions, Runner};
use crate::queue::progress::{self, Progress};
use crate::registry::client::{Client, FetchError};
use crate::registry::origin::Origin;
use crate::store::{Access, OpenError, Status, Store};
use crate::work;

#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// Start after this sequence number instead of the stored checkpoint.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Apply the changes up to the upstream's `update_seq` at start, then exit (exit 1 if some
    /// could not be applied within --give-up-after).
    #[arg(long)]
    pub once: bool,
    /// Seconds between polls of the change feed once caught up.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, env = "ALL_DOCS_FOLLOW_INTERVAL")]
    pub interval: f64,
    /// With --once: seconds to keep retrying changes whose document is still stale or failing.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub give_up_after: f64,
}

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
async fn open_store(g: &Replica, access: Access) -> Result<Arc<dyn Store>, Error> {
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

/// `follow`: apply the change feed from the stored checkpoint, until stopped (or caught up,
/// with `--once`).
pub async fn follow(g: &Global, args: &FollowArgs) -> Result<(), Error> {
    let secs = |v: f64, flag: &str| {
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(Error::usage(format!("{flag} must be 0..=86400 seconds, got {v}")))
        }
    };
    let opts = crate::queue::follow::FollowOptions {
        since: args.since,
        once: args.once,
        interval: secs(args.interval, "--interval")?,
        give_up_after: secs(args.give_up_after, "--give-up-after")?,
        parallelism: g.concurrency as usize,
    };
    let s = setup(g, None).await?;
    stop_on_signal(s.stop.clone());
    let started = Instant::now();
    let summary = crate::queue::follow::follow(&s.ctx, &opts).await.map_err(|e| match e {
        crate::queue::follow::FollowError::NoCheckpoint => Error::usage(e.to_string()),
        e => Error::Incomplete(e.to_string()),
    })?;
    eprintln!(
        "follow: {} changes applied ({} deletions, {} retries) in {:.1}s; checkpoint {}",
        summary.applied,
        summary.deleted,
        summary.retries,
        started.elapsed().as_secs_f64(),
        summary.checkpoint
    );
    if s.stop.is_cancelled() {
        return Err(Error::Incomplete(
            "interrupted; run `all-docs follow` again to resume from the checkpoint".into(),
        ));
    }
    if args.once && !summary.caught_up {
        let shown: Vec<&str> = summary.pending.iter().take(20).map(String::as_str).collect();
        return Err(Error::Incomplete(format!(
            "{} changes not applied yet (the checkpoint stays before them; run follow again):\n  {}",
            summary.pending.len(),
            shown.join("\n  ")
        )));
    }
    Ok(())
}

/// `partition refresh --pivots FILE`: the same job, partitioned by a pivots file.
pub async fn partition_refresh(g: &Global, pivots_file: &Path, quiet: bool) -> Result<(), Error> {
    let s = setup(g, None).await?;
    let pivots = read_pivots(pivots_file)?;
    run_partitions(&s, pivots, false, quiet).await
}

fn read_pivots(path: &Path) -> Result<Pivots, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("cannot read pivots file `{}`: {e}", path.display())))?;
    pivots::parse(&text).map_err(|e| Error::usage(format!("pivots file `{}`: {e}", path.display())))
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

/// `(name, rev)` of every live packument of `origin_id` in the store, in byte order.
async fn live_names(store: &dyn Store, origin_id: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for_each_packument(store, origin_id, |name, meta| {
        if matches!(meta.status, Status::Ok | Status::Unpublished) {
            out.push((name.to_owned(), meta.rev.clone().unwrap_or_default()));
        }
    })
    .await?;
    Ok(out)
}

/// Calls `f` with the name and metadata of every packument of `origin_id` in the store, in byte
/// order, from one listing (no request per entry). A corrupt entry ends it with an error that
/// names it: an index or counts that silently left it out would be a wrong answer.
async fn for_each_packument(
    store: &dyn Store,
    origin_id: &str,
    mut f: impl FnMut(&str, &crate::store::Meta),
) -> Result<(), Error> {
    let corrupt = |e: String| Error::Incomplete(format!("{e} (`all-docs cache validate` lists every such entry)"));
    crate::store::for_each(store, &Key::packument_prefix(origin_id), |listed| {
        let meta = listed.meta.map_err(|e| corrupt(e.to_string()))?;
        match listed.key.parse::<Key>() {
            Ok(Key::Packument { name, .. }) => {
                f(&name, &meta);
                Ok(())
            }
            Ok(other) => Err(corrupt(format!("`{other}` listed among the packuments"))),
            Err(e) => Err(corrupt(e.to_string())),
        }
    })
    .await
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

/// Commands that only talk to the registry origin do not need a replication origin.
async fn setup_registry_only(g: &Global) -> Result<Setup, Error> {
    let registry = g.registry()?;
    let replicate = match g.replicate() {
        Ok(o) => o,
        Err(_) => registry.clone(),
    };
    setup(g, Some((replicate, registry))).await
}

/// The packument origin id of the store: the configured registry's, or the only one stored.
async fn cache_origin(g: &Replica, store: &dyn Store) -> Result<String, Error> {
    if let Ok(o) = g.registry() {
        return Ok(o.id().to_owned());
    }
    let ids = store.origins(Kind::Packument).await?;
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::usage(format!("no packuments in `{}`; replicate first", g.store))),
        _ => Err(Error::usage(format!(
            "the store holds several registries ({}); pick one with --registry-origin",
            ids.join(", ")
        ))),
    }
}

/// `cache create-index`: `name<TAB>rev` of every live packument, byte order.
pub async fn create_index(g: &Replica) -> Result<(), Error> {
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    for_each_packument(&*store, &origin, |name, meta| {
        if matches!(meta.status, Status::Ok | Status::Unpublished) && failed.is_none() {
            if let Err(e) = writeln!(out, "{name}\t{}", meta.rev.as_deref().unwrap_or("")) {
                failed = Some(e);
            }
        }
    })
    .await?;
    match failed.map_or_else(|| out.flush(), Err) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            what: "writing the index".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A temporary file nothing has written to for this long belongs to an interrupted write.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// `cache validate`: sweep what interrupted writes left, then re-hash every entry; exit 1 if
/// any is corrupt.
pub async fn validate(g: &Replica) -> Result<(), Error> {
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let (count, bytes) = store.sweep_temporaries(STALE_TEMPORARY).await?;
    if count > 0 {
        println!("removed {count} temporary files (freeing {bytes} bytes) that interrupted writes left");
    }
    let prefix = Key::packument_prefix(&origin);
    let (mut ok, mut bad) = (0u64, Vec::new());
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(&prefix, after.as_deref(), 10_000)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let Some(last) = page.last().map(|l| l.key.clone()) else {
            break;
        };
        let results: Vec<(String, Result<(), String>)> = futures_util::stream::iter(page)
            .map(|listed| {
                let (store, k) = (&store, listed.key);
                async move {
                    let res = match k.parse::<Key>() {
                        Err(e) => Err(e.to_string()),
                        Ok(key) => match store.get(&key).await {
                            Ok(Some(entry)) => entry.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                            Ok(None) => Ok(()),
                            Err(e) => Err(e.to_string()),
                        },
                    };
                    (k, res)
                }
            })
            .buffered(16)
            .collect()
            .await;
        for (k, r) in results {
            match r {
                Ok(()) => ok += 1,
                Err(e) => bad.push(format!("{k}: {e}")),
            }
        }
        after = Some(last);
    }
    println!("{ok} entries verified, {} corrupt", bad.len());
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::Incomplete(format!(
            "corrupt entries (re-run replicate to refetch them):\n  {}",
            bad.join("\n  ")
        )))
    }
}

/// `cache stats`: counts by status and bytes.
pub async fn stats(g: &Replica) -> Result<(), Error> {
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let (mut ok, mut unpublished, mut deleted, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut newest = 0u64;
    for_each_packument(&*store, &origin, |_, meta| {
        match meta.status {
            Status::Ok => ok += 1,
            Status::Unpublished => unpublished += 1,
            Status::Deleted => deleted += 1,
        }
        bytes += meta.size;
        newest = newest.max(meta.fetched_at);
    })
    .await?;
    let stats = serde_json::json!({
        "store": g.store,
        "origin": origin,
        "packuments": ok + unpublished,
        "ok": ok,
        "unpublished": unpublished,
        "deleted": deleted,
        "bytes": bytes,
        "lastFetchedAt": newest,
        "follow": follow_stats(g, &*store).await?,
    });
    println!("{}", serde_json::to_string_pretty(&stats).unwrap_or_default());
    Ok(())
}

/// The change-feed checkpoint of the replication origin (the configured one, or the only one
/// stored): how far the feed is applied and how far behind the upstream it was last seen.
async fn follow_stats(g: &Replica, store: &dyn Store) -> Result<serde_json::Value, Error> {
    let origin = match g.replicate() {
        Ok(o) => Some(o.id().to_owned()),
        Err(_) => match store.origins(Kind::Checkpoint).await?.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
    };
    let Some(origin) = origin else {
        return Ok(serde_json::Value::Null);
    };
    let key = Key::checkpoint(&origin);
    let Some((cp, _)) = crate::handlers::read_checkpoint(store, &key)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    else {
        return Ok(serde_json::Value::Null);
    };
    Ok(serde_json::json!({
        "origin": origin,
        "checkpoint": cp.seq,
        "upstreamSeq": cp.upstream_seq,
        "lagSeqs": cp.lag_seqs(),
        "lagSecs": cp.lag_secs(crate::store::now_ms()),
        "caughtUpAt": cp.caught_up_at,
        "pending": cp.pending,
        "updatedAt": cp.updated_at,
    }))
}

/// `show NAME`: the stored metadata and document of one package.
pub async fn show(g: &Replica, name: &str) -> Result<(), Error> {
    work::validate_name(name).map_err(|e| Error::usage(e.to_string()))?;
    let store = open_store(g, Access::Read).await?;
    let key = Key::packument(&cache_origin(g, &*store).await?, name);
    let Some(entry) = store.get(&key).await? else {
        return Err(Error::NotFound(format!(
            "`{name}` is not in the replica at `{}`",
            g.store
        )));
    };
    eprintln!("{}", serde_json::to_string(&entry.meta).unwrap_or_default());
    let mut body = entry.body;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::Internal(e.to_string()))?;
        if out.write_all(&chunk).is_err() {
            return Ok(());
        }
    }
    let _ = writeln!(out);
    Ok(())
}

/// `packument export LIST OUTDIR`: copies stored documents to `OUTDIR/<name>.json`
/// (scoped names in a folder per scope).
pub async fn export(g: &Replica, list: &Path, outdir: &Path) -> Result<(), Error> {
    let names = read_name_list(list)?;
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let mut missing = Vec::new();
    for name in &names {
        let key = Key::packument(&origin, name);
        let entry = store.get(&key).await?;
        let Some(entry) = entry.filter(|e| e.meta.status != Status::Deleted) else {
            missing.push(name.clone());
            continue;
        };
        let bytes = entry
            .bytes()
            .await
            .map_err(|e| Error::Internal(format!("{name}: {e}")))?;
        let path = outdir.join(format!("{name}.json"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::usage(format!("cannot create `{}`: {e}", parent.display())))?;
        }
        write_atomic(&path, &bytes)?;
    }
    eprintln!(
        "exported {} of {} packuments to {}",
        names.len() - missing.len(),
        names.len(),
        outdir.display()
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotFound(format!("not in the replica: {}", missing.join(", "))))
    }
}

impl Ctx {
    fn client_concurrency(&self) -> usize {
        self.client.concurrency()
    }
}
