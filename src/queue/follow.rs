//! The local follower: polls the change feed from the stored checkpoint, applies each change
//! through the same handlers as the bootstrap (conditional fetches through the governor,
//! tombstones for deletions), and moves the checkpoint only past changes that are stored.
//!
//! One cycle is one [`Feed::step`], the step the service's change ticks take too: read the
//! upstream's `update_seq` and the pages of `_changes` after the cursor, apply every due change
//! (here: fetched in this process, with bounded concurrency), then store the checkpoint the
//! tracker allows. A document the CDN still serves at an older rev, or that fails, is retried
//! with backoff in later cycles; changes after it go on.

use std::time::Duration;

use futures_util::StreamExt as _;

use crate::clock::now_ms;
use crate::feed::{ApplyChanges, Feed, FeedError, Pages};
use crate::follow::Task;
use crate::handlers::{Ctx, HandlerError, PackumentDone};
use crate::registry::client::FetchError;

#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Start here instead of the stored checkpoint.
    pub since: Option<u64>,
    /// Apply what the feed has now, then stop.
    pub once: bool,
    /// Pause between polls once caught up.
    pub interval: Duration,
    /// With `once`: how long to keep retrying changes still pending (stale or failing).
    pub give_up_after: Duration,
    /// Changes applied at once.
    pub parallelism: usize,
}

/// What a follow run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowSummary {
    /// Changes applied (documents stored or found unchanged, tombstones written).
    pub applied: u64,
    pub deleted: u64,
    /// Retries of changes that were stale or failed.
    pub retries: u64,
    /// The checkpoint at the end.
    pub checkpoint: u64,
    /// Changes still pending at the end, with why.
    pub pending: Vec<String>,
    /// With `once`: every change up to the first `update_seq` read is stored.
    pub caught_up: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("no checkpoint in the store for this replication origin: run `all-docs replicate` first (it records where the change feed starts), or pass --since SEQ")]
    NoCheckpoint,
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

/// Applies changes in this process: each one fetched (or tombstoned) now, a few at a time.
struct Fetching<'a> {
    ctx: &'a Ctx,
    parallelism: usize,
}

#[async_trait::async_trait]
impl ApplyChanges for Fetching<'_> {
    async fn apply(&self, tasks: Vec<Task>) -> Vec<(Task, Result<PackumentDone, HandlerError>)> {
        futures_util::stream::iter(tasks)
            .map(|task| async move {
                let r = self.ctx.apply_change(&task).await;
                (task, r)
            })
            .buffer_unordered(self.parallelism.max(1))
            .collect()
            .await
    }
}

/// Runs until stopped (or, with `once`, until caught up).
pub async fn follow(ctx: &Ctx, opts: &FollowOptions) -> Result<FollowSummary, FollowError> {
    let Some(mut feed) = Feed::open(ctx, opts.since, 1_000, 120_000).await? else {
        return Err(FollowError::NoCheckpoint);
    };
    let start = feed.tracker.cursor();
    let apply = Fetching {
        ctx,
        parallelism: opts.parallelism,
    };
    let mut summary = FollowSummary::default();
    let started = now_ms();
    let mut target: Option<u64> = None;
    tracing::info!(since = start, "following the change feed");
    while !ctx.client.stopping() {
        let step = match feed.step(ctx, Pages::UpToDate, &apply).await {
            Ok(step) => step,
            Err(FeedError::Handler(HandlerError::Fetch(FetchError::Cancelled { .. }))) => break,
            // The upstream failing to answer is worth waiting out (the changes due are retried
            // with the next step); the store failing, or another follower, ends the run.
            Err(FeedError::Handler(HandlerError::Fetch(e))) if !opts.once => {
                tracing::warn!(error = %e, "reading the change feed failed; trying again after the interval");
                ctx.client.sleep(opts.interval).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        summary.applied += step.applied;
        summary.deleted += step.deleted;
        summary.retries += step.failed.len() as u64;
        for (task, e) in &step.failed {
            match e {
                HandlerError::Stale { .. } => {
                    tracing::info!(package = %task.name, error = %e, "not yet: retrying later")
                }
                _ => tracing::warn!(package = %task.name, error = %e, "change failed: retrying later"),
            }
        }
        let cp = &step.checkpoint;
        tracing::info!(
            checkpoint = cp.seq,
            upstream_seq = cp.upstream_seq,
            lag_seqs = cp.lag_seqs(),
            lag_secs = cp.lag_secs(now_ms()).map(|s| format!("{s:.1}")),
            pending = cp.pending,
            applied = summary.applied,
            "follow"
        );
        if opts.once {
            // Done once every change up to the first `update_seq` read is stored (changes made
            // since are left for the next run).
            let t = *target.get_or_insert(step.upstream);
            if cp.seq >= t || now_ms().saturating_sub(started) > opts.give_up_after.as_millis() as u64 {
                break;
            }
        }
        // More of the feed than one step reads: go on at once.
        if feed.tracker.cursor() < step.upstream {
            continue;
        }
        // Caught up with the feed: wait for the interval or the next retry, whichever is first.
        let mut wait = opts.interval;
        if let Some(due) = feed.tracker.next_due() {
            wait = wait.min(Duration::from_millis(due.saturating_sub(now_ms())));
        }
        if opts.once {
            wait = wait.min(Duration::from_millis(500));
        }
        ctx.client.sleep(wait).await;
    }
    summary.checkpoint = feed.checkpoint().map_or(start, |c| c.seq);
    summary.caught_up = target.is_some_and(|t| summary.checkpoint >= t);
    summary.pending = feed
        .tracker
        .stuck()
        .into_iter()
        .map(|(name, seq, attempts, err)| {
            format!("{name} (seq {seq}, {attempts} attempts): {}", err.unwrap_or_default())
        })
        .collect();
    Ok(summary)
}
