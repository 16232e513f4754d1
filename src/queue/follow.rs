//! The local follower: polls the change feed from the stored checkpoint, applies each change
//! through the same handlers as the bootstrap (conditional fetches through the governor,
//! tombstones for deletions), and moves the checkpoint only past changes that are stored.
//!
//! One cycle: read the upstream's `update_seq`, read pages of `_changes` after the cursor (all
//! of them while they come full), apply every due change with bounded concurrency, then store
//! the checkpoint [`Tracker::checkpoint`] allows. A document the CDN still serves at an older
//! rev, or that fails, is retried with backoff in later cycles; changes after it go on.

use std::time::Duration;

use futures_util::StreamExt as _;

use crate::follow::{Checkpoint, Tracker};
use crate::handlers::{Ctx, HandlerError, PackumentDone};
use crate::registry::changes::{self, PAGE_LIMIT};
use crate::registry::client::FetchError;
use crate::store::{now_ms, Meta};

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
    Handler(#[from] HandlerError),
}

/// Runs until stopped (or, with `once`, until caught up). `stopping` is polled between steps.
pub async fn follow(ctx: &Ctx, opts: &FollowOptions) -> Result<FollowSummary, FollowError> {
    let stored = ctx.read_checkpoint().await?;
    let start = match (opts.since, &stored) {
        (Some(s), _) => s,
        (None, Some((cp, _))) => cp.seq,
        (None, None) => return Err(FollowError::NoCheckpoint),
    };
    let mut meta: Option<Meta> = stored.as_ref().map(|(_, m)| m.clone());
    let mut written: Option<Checkpoint> = stored.map(|(c, _)| c);
    let mut tracker = Tracker::new(start, 1_000, 120_000);
    let mut summary = FollowSummary::default();
    let started = now_ms();
    let mut target: Option<u64> = None;
    tracing::info!(since = start, "following the change feed");
    while !ctx.client.stopping() {
        let cycle_at = now_ms();
        let upstream = match read_feed(ctx, &mut tracker, cycle_at).await {
            Ok(u) => Some(u),
            Err(FetchError::Cancelled { .. }) => break,
            Err(e) if opts.once => return Err(HandlerError::Fetch(e).into()),
            Err(e) => {
                tracing::warn!(error = %e, "reading the change feed failed; trying again after the interval");
                None
            }
        };
        apply_due(ctx, &mut tracker, opts.parallelism, &mut summary).await;
        let seq = tracker.checkpoint();
        let caught_up = upstream.filter(|u| seq >= *u).map(|_| cycle_at);
        let cp = Checkpoint {
            seq,
            upstream_seq: upstream.or(written.as_ref().and_then(|c| c.upstream_seq)),
            caught_up_at: caught_up.or(written.as_ref().and_then(|c| c.caught_up_at)),
            updated_at: now_ms(),
            pending: tracker.pending() as u64,
        };
        if written
            .as_ref()
            .is_none_or(|w| w.seq != cp.seq || w.caught_up_at != cp.caught_up_at || w.pending != cp.pending)
        {
            meta = Some(store_checkpoint(ctx, &cp, meta.as_ref()).await?);
            written = Some(cp.clone());
        }
        let lag_secs = cp.lag_secs(now_ms());
        crate::telemetry::record_follow_lag(cp.lag_seqs().unwrap_or(0), lag_secs);
        tracing::info!(
            checkpoint = cp.seq,
            upstream_seq = cp.upstream_seq,
            lag_seqs = cp.lag_seqs(),
            lag_secs = lag_secs.map(|s| format!("{s:.1}")),
            pending = cp.pending,
            applied = summary.applied,
            "follow"
        );
        if opts.once {
            // Done once every change up to the first `update_seq` read is stored (changes made
            // since are left for the next run).
            target = target.or(upstream);
            if target.is_some_and(|t| cp.seq >= t) {
                break;
            }
            if now_ms().saturating_sub(started) > opts.give_up_after.as_millis() as u64 {
                break;
            }
        }
        // Caught up with the feed: wait for the interval or the next retry, whichever is first.
        let now = now_ms();
        let mut wait = opts.interval;
        if let Some(due) = tracker.next_due() {
            wait = wait.min(Duration::from_millis(due.saturating_sub(now)));
        }
        if opts.once {
            wait = wait.min(Duration::from_millis(500));
        }
        if upstream.is_some_and(|u| tracker.cursor() < u) {
            continue;
        }
        ctx.client.sleep(wait).await;
    }
    summary.checkpoint = written.as_ref().map_or(start, |c| c.seq);
    summary.caught_up = target.is_some_and(|t| summary.checkpoint >= t);
    summary.pending = tracker
        .stuck()
        .into_iter()
        .map(|(name, seq, attempts, err)| {
            format!("{name} (seq {seq}, {attempts} attempts): {}", err.unwrap_or_default())
        })
        .collect();
    Ok(summary)
}

/// Reads the upstream's `update_seq`, then every page after the cursor up to it.
async fn read_feed(ctx: &Ctx, tracker: &mut Tracker, now: u64) -> Result<u64, FetchError> {
    let upstream = changes::update_seq(&ctx.client, &ctx.replicate).await?;
    while tracker.cursor() < upstream {
        let page = changes::read_page(&ctx.client, &ctx.replicate, tracker.cursor(), PAGE_LIMIT).await?;
        let empty = page.rows.is_empty() && page.last_seq <= tracker.cursor();
        crate::handlers::take_feed_page(tracker, &page, now);
        if empty || tracker.pending() >= PAGE_LIMIT * 4 {
            break;
        }
    }
    Ok(upstream)
}

/// Applies every change due now, with bounded concurrency.
async fn apply_due(ctx: &Ctx, tracker: &mut Tracker, parallelism: usize, summary: &mut FollowSummary) {
    let due = tracker.due(now_ms());
    if due.is_empty() {
        return;
    }
    let results: Vec<_> = futures_util::stream::iter(due)
        .map(|task| async move {
            let r = ctx.apply_change(&task).await;
            (task, r)
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    for (task, r) in results {
        match r {
            Ok(done) => {
                summary.applied += 1;
                if done == PackumentDone::Deleted {
                    summary.deleted += 1;
                }
                tracker.done(&task);
            }
            Err(HandlerError::Fetch(FetchError::Cancelled { .. })) => {}
            Err(e) => {
                summary.retries += 1;
                let attempts = tracker.failed(&task, e.to_string(), now_ms());
                match &e {
                    HandlerError::Stale { .. } => {
                        tracing::info!(package = %task.name, attempts, error = %e, "not yet: retrying later")
                    }
                    _ => tracing::warn!(package = %task.name, attempts, error = %e, "change failed: retrying later"),
                }
            }
        }
    }
}

/// Writes the checkpoint, replacing exactly what this follower read or wrote last: a second
/// follower on the same store makes this one stop rather than move the checkpoint backwards.
async fn store_checkpoint(ctx: &Ctx, cp: &Checkpoint, read: Option<&Meta>) -> Result<Meta, HandlerError> {
    ctx.write_checkpoint(cp, &Meta::expect_replacing(read)).await
}
