//! What a push request does: authentication, the body, the envelope, then the work item
//! through the one entry point every runner shares ([`crate::run::run_item`]), fanning out to
//! Pub/Sub; and the change-feed tick ([`run_changes`]), one [`crate::feed::Feed::step`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::envelope::{self, Delivery, MessageInfo, Rejection};
use super::outcome::{self, Outcome};
use super::{AppState, BODY_LIMIT};
use crate::feed::{ApplyChanges, Feed, FeedError, Pages};
use crate::follow::Task;
use crate::handlers::{Ctx, HandlerError, PackumentDone};
use crate::queue::pubsub::Publish;
use crate::registry::alldocs::Row;
use crate::run::{run_item, FanOut, FanOutError, Fanned};
use crate::work::{RowDiff, Work, WorkItem};

pub(super) async fn partition_set(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    push(&s, "partition-set", &headers, body).await
}

pub(super) async fn partition(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    push(&s, "partition", &headers, body).await
}

pub(super) async fn packument(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    push(&s, "packument", &headers, body).await
}

/// `POST /work/changes`: one tick of the change feed (Cloud Scheduler through Pub/Sub, or an
/// HTTP call with an OIDC token). The body carries nothing needed: empty, or any JSON (a push
/// envelope, `{}`).
pub(super) async fn changes_tick(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!("push", kind = "changes");
    let outcome = tracing::Instrument::instrument(
        async {
            let body = match authenticated_body(&s, "changes", &headers, body).await {
                Ok(b) => b,
                Err(outcome) => return outcome,
            };
            if !body.iter().all(u8::is_ascii_whitespace) {
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                    let rejection = Rejection::NotJson(format!("a changes tick is empty or JSON: {e}"));
                    tracing::warn!(endpoint = "changes", reason = %rejection, "message rejected");
                    return Outcome::Rejected(rejection);
                }
            }
            let outcome = match tokio::time::timeout(s.budget, run_changes(&s)).await {
                Ok(o) => o,
                Err(_) => Outcome::OutOfTime(s.budget),
            };
            match &outcome {
                Outcome::Done(data) => tracing::info!(kind = "changes", result = %data, "done"),
                other => tracing::warn!(kind = "changes", error = %other, "changes tick not done"),
            }
            outcome
        },
        span,
    )
    .await;
    crate::telemetry::record_item("changes", outcome.label(), started.elapsed());
    outcome::response(&outcome)
}

/// One tick of the change feed: one [`Feed::step`] (the follower's step) over up to 10 000
/// changes after the stored checkpoint, whose deletions are written as tombstones here and
/// whose other changes are published as packument items (with their revs). The checkpoint is
/// advanced with a write conditional on the checkpoint read, so two overlapping ticks never
/// both advance it (the loser's items are duplicates, which the packument handler skips). A
/// document the CDN still serves stale fails its packument item, which Pub/Sub retries with
/// backoff.
pub(super) async fn run_changes(state: &AppState) -> Outcome {
    let ctx = &state.ctx;
    let paused = ctx.client.paused_for(&ctx.replicate);
    if paused >= state.budget / 2 {
        return Outcome::Throttled(paused);
    }
    // A tick keeps no memory of failed changes: the next one starts from the stored checkpoint.
    let mut feed = match Feed::open(ctx, None, 1, 1).await {
        Ok(Some(feed)) => feed,
        Ok(None) => {
            tracing::warn!("no change-feed checkpoint in the store yet: publish a partition-set first (it records where the feed starts)");
            return Outcome::Done(json!({ "checkpoint": null }));
        }
        Err(e) => return Outcome::from_handler(e),
    };
    let from = feed.tracker.cursor();
    let ticking = Ticking {
        ctx,
        publishing: Publishing(&*state.publisher),
    };
    let step = match feed.step(ctx, Pages::One, &ticking).await {
        Ok(step) => step,
        // Another tick advanced it first: its batch covers this one.
        Err(FeedError::Superseded) => return Outcome::Done(json!({ "superseded": true, "from": from })),
        Err(FeedError::Handler(e)) => return Outcome::from_handler(e),
    };
    // Pub/Sub (or the store) refused some: the checkpoint stays before them; try again soon.
    if let Some((_, e)) = step.failed.into_iter().next() {
        return Outcome::from_handler(e);
    }
    Outcome::Done(json!({
        "from": from,
        "to": step.checkpoint.seq,
        "published": step.applied - step.deleted,
        "deleted": step.deleted,
        "lagSeqs": step.checkpoint.lag_seqs(),
    }))
}

/// One push request, from authentication to the answer, in a span that carries the caller's
/// trace (for the logs' trace field and OpenTelemetry).
async fn push(state: &AppState, endpoint: &'static str, headers: &HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let trace = crate::telemetry::trace_id_from_headers(headers);
    let (trace_id, span_id) = trace
        .as_ref()
        .map_or((None, None), |(t, s)| (Some(t.as_str()), s.as_deref()));
    let span = tracing::info_span!("push", kind = endpoint, trace_id, span_id);
    crate::telemetry::set_remote_parent(&span, headers);
    let outcome = tracing::Instrument::instrument(handle_push(state, endpoint, headers, body, started), span).await;
    crate::telemetry::record_item(endpoint, outcome.label(), started.elapsed());
    outcome::response(&outcome)
}

async fn handle_push(
    state: &AppState,
    endpoint: &'static str,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Outcome {
    let body = match authenticated_body(state, endpoint, headers, body).await {
        Ok(b) => b,
        Err(outcome) => return outcome,
    };
    let body = &body[..];
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (replicate, registry) = (&state.ctx.replicate, &state.ctx.registry);
    let decoded = envelope::decode(endpoint, body, header).and_then(|d| {
        match envelope::check_origin(&d.item, replicate, registry) {
            Ok(()) => Ok(d),
            Err(r) => Err(Box::new((r, d.info))),
        }
    });
    let delivery = match decoded {
        Ok(d) => d,
        Err(refused) => {
            let (rejection, info) = *refused;
            tracing::warn!(
                endpoint,
                message_id = info.message_id.as_deref().unwrap_or("-"),
                subscription = info.subscription.as_deref().unwrap_or("-"),
                reason = %rejection,
                "message rejected: it can never succeed (Pub/Sub dead-letters it after the maximum attempts)"
            );
            return Outcome::Rejected(rejection);
        }
    };
    let Delivery { item, info } = delivery;
    let outcome = match tokio::time::timeout(state.budget, run_patiently(state, &item)).await {
        Ok(o) => o,
        Err(_) => Outcome::OutOfTime(state.budget),
    };
    log_outcome(&item, &info, &outcome, started.elapsed());
    outcome
}

/// Checks push authentication, then reads the body (at most [`BODY_LIMIT`]).
async fn authenticated_body(
    state: &AppState,
    endpoint: &'static str,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, Outcome> {
    // Authentication first, so an unauthenticated caller never gets a body read into memory.
    if let Some(auth) = &state.auth {
        if let Err(e) = auth.verify(headers).await {
            tracing::warn!(endpoint, error = %e, "push request refused: authentication");
            return Err(Outcome::Unauthorized(e));
        }
    }
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut kept = Vec::new();
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        // A connection that broke mid-body: Pub/Sub tries again.
        let frame = frame.map_err(|e| Outcome::Dependency(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        read += data.len();
        if read <= BODY_LIMIT {
            kept.extend_from_slice(&data);
        } else if read > DRAIN_MAX {
            break;
        }
    }
    if read > BODY_LIMIT {
        // Over the limit: that message can never succeed. What is past the limit is read and
        // dropped (up to DRAIN_MAX), never kept: answering while the client still sends would
        // close the connection under it, and it would see a reset instead of the 413.
        let read = if read > DRAIN_MAX {
            format!("more than {DRAIN_MAX} bytes")
        } else {
            format!("{read} bytes")
        };
        let rejection = Rejection::TooLarge(read);
        tracing::warn!(endpoint, reason = %rejection, "message rejected: body too large");
        return Err(Outcome::Rejected(rejection));
    }
    Ok(kept.into())
}

/// How much of an over-limit body is read (and dropped) so the caller gets its 413.
const DRAIN_MAX: usize = 2 * BODY_LIMIT;

fn log_outcome(item: &WorkItem, info: &MessageInfo, outcome: &Outcome, elapsed: Duration) {
    let message_id = info.message_id.as_deref().unwrap_or("-");
    let ms = elapsed.as_millis() as u64;
    match outcome {
        Outcome::Done(data) => {
            tracing::info!(item = %item.id, kind = item.work.kind(), message_id, duration_ms = ms, result = %data, "done")
        }
        other => tracing::warn!(
            item = %item.id,
            kind = item.work.kind(),
            message_id,
            delivery_attempt = info.delivery_attempt,
            duration_ms = ms,
            status = outcome::status(other).as_u16(),
            error = %other,
            "not done: Pub/Sub will redeliver"
        ),
    }
}

/// Runs the item, and again after a pause while a dependency (the store, Pub/Sub) is down, for
/// up to a quarter of the budget (30 s at most). Handlers are idempotent, so running again is
/// safe; waiting here instead of answering 503 at once keeps a short outage (a restarting
/// store, a network blip) from spending the message's delivery attempts, which Pub/Sub counts
/// toward the dead-letter limit on every nack. The last attempt starts within that quarter, so
/// it keeps most of the budget. (Change-feed ticks are not re-run: the next tick is a minute
/// away anyway.)
async fn run_patiently(state: &AppState, item: &WorkItem) -> Outcome {
    let patience = state.patience();
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let outcome = run(state, item).await;
        if !matches!(outcome, Outcome::Dependency(_)) || started.elapsed() + pause > patience {
            return outcome;
        }
        tracing::info!(item = %item.id, error = %outcome, wait_ms = pause.as_millis() as u64, "a dependency failed; trying again shortly");
        if !state.ctx.client.sleep(pause).await {
            return Outcome::Stopping;
        }
        pause = (pause * 2).min(Duration::from_secs(4));
    }
}

/// Runs one item's work through the one entry point every runner shares
/// ([`crate::run::run_item`]), fanning out to Pub/Sub.
async fn run(state: &AppState, item: &WorkItem) -> Outcome {
    let ctx = &state.ctx;
    // When the upstream has asked us to wait longer than this request may live, say so now:
    // holding the request would only end in a timeout.
    let origin = match &item.work {
        Work::Packument { .. } => &ctx.registry,
        _ => &ctx.replicate,
    };
    let paused = ctx.client.paused_for(origin);
    if !matches!(item.work, Work::PartitionSet { .. }) && paused >= state.budget / 2 {
        return Outcome::Throttled(paused);
    }
    let fan_out = Publishing(&*state.publisher);
    match run_item(ctx, item, &fan_out, state.patience()).await {
        Ok(done) => Outcome::Done(done.data()),
        Err(e) => Outcome::from_handler(e),
    }
}

/// Fan-out to Pub/Sub: an item is done once Pub/Sub has accepted what it fans out. A listed
/// partition publishes only the packuments whose rev changed since its stored rows: its rows
/// are committed after the publish, so every earlier row was published already (a packument
/// item that ends dead-lettered is fetched again when its rev changes, or when the dead letters
/// are replayed).
struct Publishing<'a>(&'a dyn Publish);

impl Publishing<'_> {
    async fn publish(&self, items: &[WorkItem]) -> Result<(), FanOutError> {
        self.0
            .publish(items)
            .await
            .map_err(|e| FanOutError::Unavailable(e.to_string()))
    }
}

/// A tick's changes: deletions become tombstones now; every other change is published as a
/// packument item with its rev, and counts as applied once Pub/Sub has accepted it.
struct Ticking<'a> {
    ctx: &'a Ctx,
    publishing: Publishing<'a>,
}

#[async_trait::async_trait]
impl ApplyChanges for Ticking<'_> {
    async fn apply(&self, tasks: Vec<Task>) -> Vec<(Task, Result<PackumentDone, HandlerError>)> {
        let (deleted, changed): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|t| t.deleted);
        let mut results = Vec::with_capacity(deleted.len() + changed.len());
        for task in deleted {
            let r = self.ctx.apply_change(&task).await;
            results.push((task, r));
        }
        let items: Vec<WorkItem> = changed
            .iter()
            .map(|t| WorkItem::packument(&t.name, Some(&t.rev)))
            .collect();
        match self.publishing.publish(&items).await {
            Ok(()) => results.extend(changed.into_iter().map(|t| (t, Ok(PackumentDone::Skipped)))),
            Err(e) => {
                let e = e.to_string();
                results.extend(changed.into_iter().map(|t| {
                    let failed = HandlerError::FanOut(FanOutError::Unavailable(e.clone()));
                    (t, Err(failed))
                }));
            }
        }
        results
    }
}

#[async_trait::async_trait]
impl FanOut for Publishing<'_> {
    async fn partitions(&self, items: Vec<WorkItem>) -> Result<(), FanOutError> {
        self.publish(&items).await
    }

    async fn packuments(&self, _rows: &[Row], diff: &RowDiff) -> Result<Fanned, FanOutError> {
        let items: Vec<WorkItem> = diff
            .changed
            .iter()
            .map(|(name, rev)| WorkItem::packument(name, Some(rev)))
            .collect();
        self.publish(&items).await?;
        Ok(Fanned {
            count: items.len(),
            gone: Vec::new(),
        })
    }
}
