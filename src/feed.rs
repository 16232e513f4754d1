//! One step of the change feed, for every runner: `all-docs follow` loops over [`Feed::step`],
//! and the service's `POST /work/changes` takes one step per tick.
//!
//! A step reads the upstream's `update_seq` and the `_changes` pages after the cursor, hands
//! every change that is due to an [`ApplyChanges`] (the follower fetches here; the service
//! writes tombstones here and publishes the rest), then writes the checkpoint the
//! [`Tracker`] allows, conditionally on the checkpoint this feed read or wrote last: two
//! feeds on one store can never move it backwards. The decisions (which changes are due, how
//! far the checkpoint may move) are the core's ([`crate::follow`]).

use crate::clock::now_ms;
use crate::follow::{Checkpoint, Task, Tracker};
use crate::handlers::{self, Ctx, HandlerError, PackumentDone};
use crate::registry::changes::{self, PAGE_LIMIT};
use crate::registry::client::FetchError;
use crate::store::{Meta, StoreError};

/// Brings the replica up to changes: the part of a step that differs between runners.
#[async_trait::async_trait]
pub trait ApplyChanges: Send + Sync {
    /// Applies `tasks`; one result per task, in any order. A task that fails is retried by a
    /// later step (with backoff), and the checkpoint stays before it meanwhile.
    async fn apply(&self, tasks: Vec<Task>) -> Vec<(Task, Result<PackumentDone, HandlerError>)>;
}

/// How much of the feed one step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// One page (a service tick: the next tick reads on).
    One,
    /// Pages up to the `update_seq` read at the start of the step, while the changes waiting
    /// to be stored stay under a bound.
    UpToDate,
}

/// A change feed being followed: the tracker of changes read but not stored, and the
/// checkpoint as this feed last read or wrote it.
pub struct Feed {
    pub tracker: Tracker,
    /// The stored checkpoint this feed read or wrote last, with its metadata (the version the
    /// next conditional write expects).
    last: Option<(Checkpoint, Meta)>,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct Step {
    /// The upstream's `update_seq` at the start of the step.
    pub upstream: u64,
    /// The checkpoint after the step (written, unless it did not change).
    pub checkpoint: Checkpoint,
    /// Changes applied (documents stored or found unchanged, tombstones written, items
    /// published).
    pub applied: u64,
    pub deleted: u64,
    /// Changes that failed this time, with why (retried by a later step).
    pub failed: Vec<(Task, HandlerError)>,
}

/// Why a step could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The stored checkpoint changed under this feed: another follower or tick moved it.
    #[error("the change-feed checkpoint was moved by another follower")]
    Superseded,
    #[error(transparent)]
    Handler(#[from] HandlerError),
}

impl Feed {
    /// A feed from the stored checkpoint (`None` when there is none), or from `since` when
    /// given. `first_retry_ms` and `max_retry_ms` bound the backoff of a failing change.
    pub async fn open(
        ctx: &Ctx,
        since: Option<u64>,
        first_retry_ms: u64,
        max_retry_ms: u64,
    ) -> Result<Option<Feed>, HandlerError> {
        let last = ctx.read_checkpoint().await?;
        let Some(start) = since.or(last.as_ref().map(|(cp, _)| cp.seq)) else {
            return Ok(None);
        };
        Ok(Some(Feed {
            tracker: Tracker::new(start, first_retry_ms, max_retry_ms),
            last,
        }))
    }

    /// The checkpoint as this feed last read or wrote it.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.last.as_ref().map(|(cp, _)| cp)
    }

    /// One step: read, apply what is due, move the checkpoint as far as the tracker allows.
    pub async fn step(&mut self, ctx: &Ctx, pages: Pages, apply: &dyn ApplyChanges) -> Result<Step, FeedError> {
        let read_at = now_ms();
        let upstream = changes::update_seq(&ctx.client, &ctx.replicate)
            .await
            .map_err(HandlerError::from)?;
        while self.tracker.cursor() < upstream {
            let page = changes::read_page(&ctx.client, &ctx.replicate, self.tracker.cursor(), PAGE_LIMIT)
                .await
                .map_err(HandlerError::from)?;
            let empty = page.rows.is_empty() && page.last_seq <= self.tracker.cursor();
            handlers::take_feed_page(&mut self.tracker, &page, read_at);
            if pages == Pages::One || empty || self.tracker.pending() >= PAGE_LIMIT * 4 {
                break;
            }
        }
        let mut step = Step {
            upstream,
            ..Step::default()
        };
        let due = self.tracker.due(now_ms());
        if !due.is_empty() {
            for (task, result) in apply.apply(due).await {
                match result {
                    Ok(done) => {
                        step.applied += 1;
                        if done == PackumentDone::Deleted {
                            step.deleted += 1;
                        }
                        self.tracker.done(&task);
                    }
                    // Stopped: not done, and not a failure either.
                    Err(HandlerError::Fetch(FetchError::Cancelled { .. })) => {}
                    Err(e) => {
                        self.tracker.failed(&task, e.to_string(), now_ms());
                        step.failed.push((task, e));
                    }
                }
            }
        }
        let seq = self.tracker.checkpoint();
        let before = self.checkpoint();
        step.checkpoint = Checkpoint {
            seq,
            upstream_seq: Some(upstream),
            // Caught up as of when this step started reading: everything up to the upstream's
            // `update_seq` then is stored.
            caught_up_at: if seq >= upstream {
                Some(read_at)
            } else {
                before.and_then(|c| c.caught_up_at)
            },
            updated_at: now_ms(),
            pending: self.tracker.pending() as u64,
        };
        let changed = before.is_none_or(|w| {
            w.seq != step.checkpoint.seq
                || w.caught_up_at != step.checkpoint.caught_up_at
                || w.pending != step.checkpoint.pending
        });
        if changed {
            let expect = Meta::expect_replacing(self.last.as_ref().map(|(_, m)| m));
            match ctx.write_checkpoint(&step.checkpoint, &expect).await {
                Ok(meta) => self.last = Some((step.checkpoint.clone(), meta)),
                Err(HandlerError::Store(StoreError::Conflict { .. })) => return Err(FeedError::Superseded),
                Err(e) => return Err(e.into()),
            }
        }
        let cp = &step.checkpoint;
        crate::telemetry::record_follow_lag(cp.lag_seqs().unwrap_or(0), cp.lag_secs(now_ms()));
        Ok(step)
    }
}
