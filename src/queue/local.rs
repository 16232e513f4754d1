//! The local runner: partitions and packuments as tasks in this process.
//!
//! Every item runs through the one entry point every runner shares ([`run_item`]); the runner
//! is the [`FanOut`] that runs what an item fans out here, before the item is done.
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
use std::time::Duration;

use futures_util::StreamExt as _;

use super::progress::Progress;
use crate::handlers::{Ctx, HandlerError, PackumentDone};
use crate::pivots::Pivots;
use crate::registry::alldocs::Row;
use crate::registry::client::FetchError;
use crate::run::{run_item, Done, FanOut, FanOutError, Fanned};
use crate::work::{RowDiff, Work, WorkItem};

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

/// The work of one command in this process, counted in `progress`.
pub struct Runner<'a> {
    ctx: &'a Ctx,
    opts: RunOptions,
    progress: &'a Progress,
}

/// What [`Runner::fetch_all`] came to.
#[derive(Debug, Default)]
pub struct FetchAll {
    /// Items not done (failed, or stopped by Ctrl-C).
    pub failed: u64,
    /// Listed items (with a rev) found deleted upstream during the run: tombstoned, done.
    pub gone: Vec<String>,
}

impl<'a> Runner<'a> {
    pub fn new(ctx: &'a Ctx, opts: RunOptions, progress: &'a Progress) -> Runner<'a> {
        Runner { ctx, opts, progress }
    }

    /// The whole job: a partition-set of `pivots`, run here to completion or shutdown. Fails
    /// only when the change feed's start cannot be recorded; every other failure is counted in
    /// the progress (the partition it belongs to is not committed).
    pub async fn replicate(&self, pivots: Pivots) -> Result<(), HandlerError> {
        let item = WorkItem::new(Work::PartitionSet { pivots });
        run_item(self.ctx, &item, self, CDN_PATIENCE).await.map(|_| ())
    }

    /// One partition, with up to [`RETRY_ROUNDS`] more rounds while its listing keeps failing.
    async fn run_partition(&self, item: WorkItem) {
        let (ctx, progress) = (self.ctx, self.progress);
        let range = match &item.work {
            Work::Partition { start, end } => format!(
                "[{:?}, {:?})",
                start.as_deref().unwrap_or(""),
                end.as_deref().unwrap_or("")
            ),
            _ => item.id.clone(),
        };
        let mut round = 0;
        loop {
            match run_item(ctx, &item, self, CDN_PATIENCE).await {
                Ok(_) => {
                    progress.partitions_done.fetch_add(1, Relaxed);
                    return;
                }
                Err(e) if round < RETRY_ROUNDS && worth_another_round(&e) => {
                    round += 1;
                    tracing::info!(partition = %range, round, error = %e, "listing failed; trying again later");
                    if !ctx.client.sleep(ROUND_PAUSE * round).await {
                        return;
                    }
                }
                Err(_) if ctx.client.stopping() => return,
                // Each failed packument is counted and reported already.
                Err(HandlerError::FanOut(FanOutError::Incomplete { failed })) => {
                    progress.partitions_failed.fetch_add(1, Relaxed);
                    tracing::warn!(partition = %range, failed, "not committed: some packuments failed; a re-run retries them");
                    return;
                }
                Err(e) => {
                    progress.partitions_failed.fetch_add(1, Relaxed);
                    progress.fail(format!("partition {range}: {e}"));
                    tracing::warn!(partition = %range, error = %e, "partition failed");
                    return;
                }
            }
        }
    }

    /// Runs the packument items `(name, rev)`, then up to [`RETRY_ROUNDS`] more rounds over
    /// those that failed transiently.
    ///
    /// An item with a rev comes from a listing: if it turns out deleted upstream since, it is
    /// done (counted in [`Progress::deleted_upstream`]). An item without one was asked for by
    /// name (`packument fetch-list`): a name that does not exist upstream is a failure,
    /// whatever is recorded for it.
    pub async fn fetch_all<'n>(&self, items: impl Iterator<Item = (&'n str, Option<&'n str>)>) -> FetchAll {
        let (mut failed, mut again, mut gone) = self.fetch_round(items, RETRY_ROUNDS == 0).await;
        for round in 1..=RETRY_ROUNDS {
            if again.is_empty() {
                break;
            }
            tracing::info!(
                packuments = again.len(),
                round,
                "trying again the packuments that failed transiently"
            );
            if !self.ctx.client.sleep(ROUND_PAUSE * round).await {
                break; // stopping: what is left is not done
            }
            let items = again.iter().map(|(n, r)| (n.as_str(), r.as_deref()));
            let (f, next, g) = self.fetch_round(items, round == RETRY_ROUNDS).await;
            failed += f;
            again = next;
            gone.extend(g);
        }
        FetchAll {
            failed: failed + again.len() as u64,
            gone,
        }
    }

    /// One round: returns how many failed for good, those worth another round (unless this is
    /// the `last` round, where every failure counts), and the listed ones deleted upstream.
    async fn fetch_round<'n>(
        &self,
        items: impl Iterator<Item = (&'n str, Option<&'n str>)>,
        last: bool,
    ) -> (u64, Vec<(String, Option<String>)>, Vec<String>) {
        let failed = std::sync::atomic::AtomicU64::new(0);
        let again = parking_lot::Mutex::new(Vec::new());
        let gone = parking_lot::Mutex::new(Vec::new());
        let progress = self.progress;
        futures_util::stream::iter(items)
            .for_each_concurrent(self.opts.packument_parallelism.max(1), |(name, rev)| {
                let (failed, again, gone) = (&failed, &again, &gone);
                async move {
                    let item = WorkItem::packument(name, rev);
                    let done = match run_item(self.ctx, &item, self, CDN_PATIENCE).await {
                        Ok(Done::Packument(done)) => Ok(done),
                        Ok(other) => unreachable!("a packument item ended as {other:?}"),
                        Err(e) => Err(e),
                    };
                    match done {
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
}

/// Fan-out in this process: what an item fans out is run here, and the item is done once all
/// of it is stored.
#[async_trait::async_trait]
impl FanOut for Runner<'_> {
    async fn partitions(&self, items: Vec<WorkItem>) -> Result<(), FanOutError> {
        self.progress.partitions_total.fetch_add(items.len() as u64, Relaxed);
        futures_util::stream::iter(items)
            .for_each_concurrent(self.opts.partition_parallelism.max(1), |item| self.run_partition(item))
            .await;
        // Each partition's failure is counted and reported where it happened.
        Ok(())
    }

    /// Every listed name goes to the packument handler, which skips (without a request) those
    /// already stored at the listed rev. Comparing with the stored documents, not with the
    /// partition's previous rows, keeps a run correct whatever was interrupted before it (and
    /// after `--list-only`, which stores rows without documents).
    async fn packuments(&self, rows: &[Row], _diff: &RowDiff) -> Result<Fanned, FanOutError> {
        if self.opts.list_only {
            return Ok(Fanned::default());
        }
        self.progress.packuments_total.fetch_add(rows.len() as u64, Relaxed);
        let items = rows.iter().map(|r| (r.id.as_str(), Some(r.rev.as_str())));
        let FetchAll { failed, gone } = self.fetch_all(items).await;
        if failed > 0 {
            return Err(FanOutError::Incomplete { failed });
        }
        Ok(Fanned {
            count: rows.len(),
            gone,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::handlers::testing::{self, upstream, Listing};
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_name_asked_for_by_hand_that_is_gone_upstream_is_a_failure() {
        // `packument fetch-list` (no rev): a stored package now gone, and one never known.
        let ctx = testing::ctx(upstream(Listing::Names(vec!["b"])).await, Arc::new(MemoryStore::new()));
        testing::store_live(&ctx, "a").await;
        let progress = Progress::default();
        let opts = RunOptions {
            partition_parallelism: 1,
            packument_parallelism: 4,
            list_only: false,
        };
        let runner = Runner::new(&ctx, opts, &progress);
        let done = runner.fetch_all([("a", None), ("never", None)].into_iter()).await;
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
