//! The local runner: partitions and packuments as tasks in this process.
//!
//! Partitions are listed a few at a time; each partition's packuments then run with bounded
//! concurrency (the client caps requests in flight over everything). The packument handler
//! skips every document already stored at the listed rev, so an interrupted run (crash,
//! kill -9, Ctrl-C) resumes by listing again and fetching only what is missing or changed. A
//! partition's rows are committed (with tombstones for names gone upstream) only after all its
//! packuments are stored.
//!
//! A request that still fails after the client's own retries (a burst of 5xx, resets, a storm
//! of 429s) is not the end of it: the runner takes such packuments and listings up again in
//! [`RETRY_ROUNDS`] later rounds, each after a longer pause, so a long run outlasts the
//! upstream's bad minutes instead of ending with work left to redo.
//!
//! The upstream keeps changing while a run goes on: a package listed at the start of a
//! partition may be deleted before its document is fetched, and answer 404 from then on. A
//! listed package still 404 after the patience is checked against `_all_docs` once more
//! ([`Ctx::packument_or_gone`]): gone from the listing, it is a deletion seen during the run
//! (counted in [`Progress::deleted_upstream`], left out of the partition's committed rows),
//! not a failure; still listed, it is a failure as any other.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::progress::Progress;
use crate::handlers::{Ctx, HandlerError, PackumentDone};
use crate::registry::client::FetchError;

/// Later rounds for work that failed with a transient error after the client's retries.
pub const RETRY_ROUNDS: u32 = 3;
/// The pause before round `n` is `n` times this.
const ROUND_PAUSE: Duration = Duration::from_secs(5);
/// How long a listed package may answer 404 (or an older rev) before it is checked against the
/// listing ([`Ctx::packument_or_gone`]): 1 + 2 + ... + 32 s of retries, time for a CDN to
/// catch up with a change.
const CDN_PATIENCE: Duration = Duration::from_secs(63);

/// Whether `e` is worth another round later: the upstream kept failing or limiting.
fn worth_another_round(e: &HandlerError) -> bool {
    matches!(e, HandlerError::Fetch(FetchError::GaveUp { .. }))
}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Partitions listed at once.
    pub partition_parallelism: usize,
    /// Packument tasks alive at once per partition.
    pub packument_parallelism: usize,
    /// List and store partitions only; fetch no documents.
    pub list_only: bool,
}

/// Runs `partitions` (half-open ranges) to completion or shutdown.
pub async fn replicate(
    ctx: &Ctx,
    partitions: Vec<(Option<String>, Option<String>)>,
    opts: RunOptions,
    progress: &Arc<Progress>,
) {
    progress.partitions_total.fetch_add(partitions.len() as u64, Relaxed);
    futures_util::stream::iter(partitions)
        .for_each_concurrent(opts.partition_parallelism.max(1), |(start, end)| async move {
            run_partition(ctx, start.as_deref(), end.as_deref(), opts, progress).await;
        })
        .await;
}

async fn run_partition(ctx: &Ctx, start: Option<&str>, end: Option<&str>, opts: RunOptions, progress: &Progress) {
    let range = format!("[{:?}, {:?})", start.unwrap_or(""), end.unwrap_or(""));
    let mut listed = ctx.list_partition(start, end).await;
    for round in 1..=RETRY_ROUNDS {
        match &listed {
            Err(e) if worth_another_round(e) => {
                tracing::info!(partition = %range, round, error = %e, "listing failed; trying again later");
                if !ctx.client.sleep(ROUND_PAUSE * round).await {
                    return;
                }
                listed = ctx.list_partition(start, end).await;
            }
            _ => break,
        }
    }
    let (rows, diff) = match listed {
        Ok(v) => v,
        Err(_) if ctx.client.stopping() => return,
        Err(e) => {
            progress.partitions_failed.fetch_add(1, Relaxed);
            progress.fail(format!("partition {range}: {e}"));
            tracing::warn!(partition = %range, error = %e, "listing failed");
            return;
        }
    };
    tracing::debug!(partition = %range, rows = rows.len(), changed = diff.changed.len(), removed = diff.removed.len(), "listed");
    // Every listed name goes to the packument handler, which skips (without a request) those
    // already stored at the listed rev. Comparing with the stored documents, not with the
    // partition's previous rows, keeps a run correct whatever was interrupted before it.
    let FetchAll { failed, gone } = if opts.list_only {
        FetchAll::default()
    } else {
        progress.packuments_total.fetch_add(rows.len() as u64, Relaxed);
        let items = rows.iter().map(|r| (r.id.as_str(), Some(r.rev.as_str())));
        fetch_all(ctx, items, opts.packument_parallelism, progress).await
    };
    if failed > 0 {
        if !ctx.client.stopping() {
            progress.partitions_failed.fetch_add(1, Relaxed);
            tracing::warn!(partition = %range, failed, "not committed: some packuments failed; a re-run retries them");
        }
        return;
    }
    // Names deleted upstream since the listing are tombstoned already; the committed rows are
    // the listing without them, so the stored partition does not claim them live.
    let rows = if gone.is_empty() {
        rows
    } else {
        let gone: std::collections::HashSet<&str> = gone.iter().map(String::as_str).collect();
        rows.into_iter().filter(|r| !gone.contains(r.id.as_str())).collect()
    };
    match ctx.commit_partition(start, end, &rows, &diff.removed).await {
        Ok(()) => {
            progress.partitions_done.fetch_add(1, Relaxed);
        }
        Err(e) => {
            progress.partitions_failed.fetch_add(1, Relaxed);
            progress.fail(format!("partition {range}: {e}"));
        }
    }
}

/// What [`fetch_all`] came to.
#[derive(Debug, Default)]
pub struct FetchAll {
    /// Items not done (failed, or stopped by Ctrl-C).
    pub failed: u64,
    /// Listed items (with a rev) found deleted upstream during the run: tombstoned, done.
    pub gone: Vec<String>,
}

/// Runs the packument handler over `items` (`(name, rev)`), then up to [`RETRY_ROUNDS`] more
/// rounds over those that failed transiently.
///
/// An item with a rev comes from a listing: if it turns out deleted upstream since, it is done
/// (counted in [`Progress::deleted_upstream`]). An item without one was asked for by name
/// (`packument fetch-list`): a name that does not exist upstream is a failure, whatever is
/// recorded for it.
pub async fn fetch_all<'a>(
    ctx: &Ctx,
    items: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    parallelism: usize,
    progress: &Progress,
) -> FetchAll {
    let (mut failed, mut again, mut gone) = fetch_round(ctx, items, parallelism, progress, RETRY_ROUNDS == 0).await;
    for round in 1..=RETRY_ROUNDS {
        if again.is_empty() {
            break;
        }
        tracing::info!(
            packuments = again.len(),
            round,
            "trying again the packuments that failed transiently"
        );
        if !ctx.client.sleep(ROUND_PAUSE * round).await {
            break; // stopping: what is left is not done
        }
        let items = again.iter().map(|(n, r)| (n.as_str(), r.as_deref()));
        let (f, next, g) = fetch_round(ctx, items, parallelism, progress, round == RETRY_ROUNDS).await;
        failed += f;
        again = next;
        gone.extend(g);
    }
    FetchAll {
        failed: failed + again.len() as u64,
        gone,
    }
}

/// One round: returns how many failed for good, those worth another round (unless this is the
/// `last` round, where every failure counts), and the listed ones deleted upstream.
async fn fetch_round<'a>(
    ctx: &Ctx,
    items: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    parallelism: usize,
    progress: &Progress,
    last: bool,
) -> (u64, Vec<(String, Option<String>)>, Vec<String>) {
    let failed = std::sync::atomic::AtomicU64::new(0);
    let again = parking_lot::Mutex::new(Vec::new());
    let gone = parking_lot::Mutex::new(Vec::new());
    futures_util::stream::iter(items)
        .for_each_concurrent(parallelism.max(1), |(name, rev)| {
            let (failed, again, gone) = (&failed, &again, &gone);
            async move {
                match ctx.packument_or_gone(name, rev, CDN_PATIENCE).await {
                    Ok(PackumentDone::Stored { bytes }) => {
                        progress.stored.fetch_add(1, Relaxed);
                        progress.stored_bytes.fetch_add(bytes, Relaxed);
                    }
                    Ok(PackumentDone::NotModified) => {
                        progress.not_modified.fetch_add(1, Relaxed);
                    }
                    Ok(PackumentDone::NotFound) => {
                        failed.fetch_add(1, Relaxed);
                        progress.failed.fetch_add(1, Relaxed);
                        progress.fail(format!("{name}: not found (404)"));
                    }
                    Ok(PackumentDone::Skipped | PackumentDone::Superseded | PackumentDone::Deleted) => {
                        progress.skipped.fetch_add(1, Relaxed);
                    }
                    Ok(PackumentDone::GoneUpstream) if rev.is_some() => {
                        progress.deleted_upstream.fetch_add(1, Relaxed);
                        gone.lock().push(name.to_owned());
                    }
                    // Asked for by name: that it no longer exists is the answer, and a failure.
                    Ok(PackumentDone::GoneUpstream) => {
                        failed.fetch_add(1, Relaxed);
                        progress.failed.fetch_add(1, Relaxed);
                        progress.fail(format!("{name}: deleted upstream (404, and no longer listed)"));
                    }
                    // Stopped by Ctrl-C: not a failure, just not done (the partition is not
                    // committed, and the next run picks the name up).
                    Err(HandlerError::Fetch(FetchError::Cancelled { .. })) => {
                        failed.fetch_add(1, Relaxed);
                    }
                    Err(e) if !last && worth_another_round(&e) => {
                        tracing::debug!(package = name, error = %e, "packument failed; another round later");
                        again.lock().push((name.to_owned(), rev.map(str::to_owned)));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        progress.failed.fetch_add(1, Relaxed);
                        tracing::warn!(package = name, error = %e, "packument failed");
                        progress.fail(format!("{name}: {e}"));
                    }
                }
            }
        })
        .await;
    (failed.load(Relaxed), again.into_inner(), gone.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::testing::{self, upstream, Listing};
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_name_asked_for_by_hand_that_is_gone_upstream_is_a_failure() {
        // `packument fetch-list` (no rev): a stored package now gone, and one never known.
        let ctx = testing::ctx(upstream(Listing::Names(vec!["b"])).await, Arc::new(MemoryStore::new()));
        testing::store_live(&ctx, "a").await;
        let progress = Progress::default();
        let done = fetch_all(&ctx, [("a", None), ("never", None)].into_iter(), 4, &progress).await;
        assert_eq!(done.failed, 2);
        assert!(done.gone.is_empty());
        assert_eq!(progress.failed.load(Relaxed), 2);
        assert_eq!(progress.deleted_upstream.load(Relaxed), 0);
        assert_eq!(progress.deletions_seen(), None);
        let failures = progress.failures.lock().join("\n");
        assert!(failures.contains("a: deleted upstream"), "{failures}");
        assert!(failures.contains("never: not found"), "{failures}");
    }
}
