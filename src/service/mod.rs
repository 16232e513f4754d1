//! `all-docs serve`: the Cloud Run shape of the same work.
//!
//! Pub/Sub pushes work items to `POST /work/{partition-set,partition,packument}`, and change-feed
//! ticks to `POST /work/changes` (see [`run_changes`]); each request
//! runs the core's handlers ([`crate::handlers`]) against the configured store and publishes
//! what it fans out ([`crate::queue::pubsub`]). The status code is the whole protocol with
//! Pub/Sub, so it is chosen in one place ([`outcome`]):
//!
//! - 2xx only when the work is durably done: stored, and everything it fanned out accepted by
//!   Pub/Sub. Pub/Sub then acks the message.
//! - 429/503 with `Retry-After` when the upstream is rate limiting, a dependency is down, the
//!   instance is full, or the request ran out of time; Pub/Sub redelivers with backoff.
//! - 4xx for a message that can never succeed ([`envelope::Rejection`]); after the maximum
//!   attempts Pub/Sub moves it to the dead-letter topic. Every rejection is logged with the
//!   message id and the reason.
//!
//! A tower layer bounds the requests in flight (more are shed with 429). Each request then
//! checks push authentication before reading its body (at most [`BODY_LIMIT`]), and runs under a
//! time budget that keeps every answer inside the subscriptions' ack deadline. The service only ever
//! fetches from the origins it was configured with: an item that names another origin (its
//! optional `origin` field) is refused as made for another deployment.

pub mod auth;
pub mod cli;
pub mod outcome;

pub use all_docs_core::envelope;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::feed::{ApplyChanges, Feed, FeedError, Pages};
use crate::follow::Task;
use crate::handlers::{Ctx, HandlerError, PackumentDone};
use crate::keys::Key;
use crate::queue::pubsub::Publish;
use crate::registry::alldocs::Row;
use crate::run::{run_item, FanOut, FanOutError, Fanned};
use crate::work::{RowDiff, Work, WorkItem};
use auth::PushAuth;
use envelope::{Delivery, MessageInfo, Rejection};
use outcome::Outcome;

/// Pub/Sub's largest message is 10 MB; base64 and the envelope add a third and a little.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How long an HTTP/1 connection may sit idle between requests (or take to send a request's
/// head) before the service closes it, unless `--idle-timeout` says otherwise. Without a
/// limit every connection a client leaves open holds a file descriptor for good: a pusher
/// that abandons its connection after each push (the Pub/Sub emulator does, until its garbage
/// collector closes them) can run the service out of descriptors (ADR 004).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a request needs, shared by all requests of an instance (one client, so one rate
/// governor per origin for the whole instance).
pub struct AppState {
    pub ctx: Ctx,
    pub publisher: Arc<dyn Publish>,
    /// `None` only with `--insecure-skip-push-auth`.
    pub auth: Option<PushAuth>,
    /// How long one request may take before it answers 503 (below the ack deadline).
    pub budget: Duration,
}

impl AppState {
    /// How long a request may wait inside for something to heal (a dependency, a lagging CDN)
    /// before it answers for a redelivery: a quarter of the budget, 30 s at most.
    fn patience(&self) -> Duration {
        (self.budget / 4).min(Duration::from_secs(30))
    }
}

/// Limits of the router.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Work requests in flight at most; more are answered 429 at once.
    pub max_in_flight: usize,
    /// An idle connection is closed after this long ([`IDLE_TIMEOUT`] in the service).
    pub idle_timeout: Duration,
}

/// The service's routes with their layers.
pub fn router(state: Arc<AppState>, limits: Limits) -> Router {
    use tower::ServiceBuilder;
    // One semaphore for the whole instance: `Router::layer` wraps each route separately, so a
    // per-layer limit would allow `max_in_flight` per route.
    let in_flight = tower::limit::GlobalConcurrencyLimitLayer::new(limits.max_in_flight.max(1));
    let work = Router::new()
        .route("/work/partition-set", post(partition_set))
        .route("/work/partition", post(partition))
        .route("/work/packument", post(packument))
        .route("/work/changes", post(changes_tick))
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async { outcome::response(&Outcome::Busy) },
                ))
                .load_shed()
                .layer(in_flight),
        );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(work)
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let store = state
        .ctx
        .store
        .list(&Key::packument_prefix(state.ctx.registry.id()), None, 1)
        .await;
    let publisher = state.publisher.ready().await;
    let body = json!({
        "store": store.as_ref().err().map_or("ok".to_owned(), ToString::to_string),
        "publisher": publisher.as_ref().err().map_or("ok".to_owned(), ToString::to_string),
    });
    let code = if store.is_ok() && publisher.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn partition_set(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    push(&s, "partition-set", &headers, body).await
}

async fn partition(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    push(&s, "partition", &headers, body).await
}

async fn packument(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    push(&s, "packument", &headers, body).await
}

/// `POST /work/changes`: one tick of the change feed (Cloud Scheduler through Pub/Sub, or an
/// HTTP call with an OIDC token). The body carries nothing needed: empty, or any JSON (a push
/// envelope, `{}`).
async fn changes_tick(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
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
async fn run_changes(state: &AppState) -> Outcome {
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
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => Ok(b),
        // Over the limit: that message can never succeed.
        Err(e) if is_length_limit(&e) => {
            let rejection = Rejection::TooLarge(crate::registry::client::error_chain(&e));
            tracing::warn!(endpoint, reason = %rejection, "message rejected: body too large");
            Err(Outcome::Rejected(rejection))
        }
        // A connection that broke mid-body: Pub/Sub tries again.
        Err(e) => Err(Outcome::Dependency(format!("reading the request body: {e}"))),
    }
}

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

/// Whether reading a body failed on the length limit (rather than on the connection).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
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
            .map(|t| {
                WorkItem::new(Work::Packument {
                    name: t.name.clone(),
                    rev: Some(t.rev.clone()),
                })
            })
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
            .map(|(name, rev)| {
                WorkItem::new(Work::Packument {
                    name: name.clone(),
                    rev: Some(rev.clone()),
                })
            })
            .collect();
        self.publish(&items).await?;
        Ok(Fanned {
            count: items.len(),
            gone: Vec::new(),
        })
    }
}

/// A bound listener and the app, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
    idle_timeout: Duration,
}

impl Server {
    pub async fn bind(addr: SocketAddr, state: Arc<AppState>, limits: Limits) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            app: router(state, limits),
            idle_timeout: limits.idle_timeout,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops taking requests and gives the ones in
    /// flight `grace` to finish; `cancel` is called a little before the end so that work still
    /// waiting on the upstream gives up (and answers 503, to be redelivered) rather than
    /// being cut off.
    ///
    /// A connection idle for the limits' `idle_timeout` between requests is closed (see
    /// [`IDLE_TIMEOUT`]).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
        cancel: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        let stop = tokio_util::sync::CancellationToken::new();
        let signal = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            signal.cancel();
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.idle_timeout);
        let service = hyper_util::service::TowerToHyperService::new(self.app);
        let connections = hyper_util::server::graceful::GracefulShutdown::new();
        let listener = &self.listener;
        let accept = async || loop {
            match listener.accept().await {
                Ok((stream, _)) => return stream,
                // The peer left before we took the connection: nothing to wait for.
                Err(e) if is_connection_error(&e) => continue,
                // Out of file descriptors and the like: wait for some to close.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; trying again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            let stream = tokio::select! {
                stream = accept() => stream,
                _ = stop.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let (builder, service, watcher) = (builder.clone(), service.clone(), connections.watcher());
            let (idle, stop) = (self.idle_timeout, stop.clone());
            tokio::spawn(async move {
                // The header timeout starts once the protocol is known, which takes a first
                // byte: a connection that sends none is closed here, or at shutdown.
                let mut first = [0u8; 1];
                tokio::select! {
                    peeked = tokio::time::timeout(idle, stream.peek(&mut first)) => if peeked.is_err() {
                        return;
                    },
                    _ = stop.cancelled() => return,
                }
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tracing::info!("shutting down: no new requests, finishing the ones in flight");
        tokio::select! {
            _ = connections.shutdown() => Ok(()),
            _ = async {
                tokio::time::sleep(grace.mul_f64(0.8)).await;
                cancel();
                tokio::time::sleep(grace.mul_f64(0.2)).await;
            } => {
                tracing::warn!("shutdown grace period over: requests still in flight are cut off (Pub/Sub redelivers them)");
                Ok(())
            }
        }
    }
}

/// An `accept` error that concerns only the connection being accepted (as axum and hyper
/// treat them): take the next one at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow::Checkpoint;
    use crate::queue::pubsub::PubSubError;
    use crate::registry::client::Client;
    use crate::registry::origin::Origin;
    use crate::store::memory::MemoryStore;
    use crate::store::Expect;

    /// Keeps what it is asked to publish.
    #[derive(Default)]
    struct Recorder(parking_lot::Mutex<Vec<WorkItem>>);

    #[async_trait::async_trait]
    impl Publish for Recorder {
        async fn publish(&self, items: &[WorkItem]) -> Result<(), PubSubError> {
            self.0.lock().extend_from_slice(items);
            Ok(())
        }

        async fn ready(&self) -> Result<(), PubSubError> {
            Ok(())
        }
    }

    /// A state for `origin` with a memory store, publishing to `publisher`, without push auth
    /// (and never shutting down).
    fn state(origin: Origin, publisher: Arc<dyn Publish>) -> AppState {
        AppState {
            ctx: Ctx {
                client: Arc::new(Client::new(Default::default(), Default::default()).unwrap()),
                store: Arc::new(MemoryStore::new()),
                replicate: origin.clone(),
                registry: origin,
            },
            publisher,
            auth: None,
            budget: Duration::from_secs(30),
        }
    }

    /// A server on a free port with `idle_timeout`, stopped when the returned sender fires,
    /// with `grace` and `cancel` for its shutdown. Its origin is never contacted: /healthz
    /// and idle connections need no upstream.
    async fn serve(
        idle_timeout: Duration,
        grace: Duration,
        cancel: impl FnOnce() + Send + 'static,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let state = state(
            Origin::parse("http://127.0.0.1:9").unwrap(),
            Arc::new(Recorder::default()),
        );
        let limits = Limits {
            max_in_flight: 4,
            idle_timeout,
        };
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), Arc::new(state), limits)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        (addr, stop, tokio::spawn(server.run(shutdown, grace, cancel)))
    }

    #[tokio::test]
    async fn idle_connections_are_closed_so_leaked_ones_cannot_use_up_the_descriptors() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (addr, stop, running) = serve(Duration::from_millis(300), Duration::from_secs(2), || {}).await;
        let read_until_closed = async |conn: &mut tokio::net::TcpStream| {
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
                .await
                .expect("the server closes an idle connection")
                .expect("read");
            String::from_utf8_lossy(&got).into_owned()
        };
        // A kept-alive connection: answered, then closed once idle.
        let mut used = tokio::net::TcpStream::connect(addr).await.unwrap();
        used.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut used).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // A connection that never sends a request is closed too.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        read_until_closed(&mut silent).await;
        // And the server still answers.
        let mut next = tokio::net::TcpStream::connect(addr).await.unwrap();
        next.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_until_closed(&mut next).await.ends_with("ok"));
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_connection_that_never_sent_a_byte() {
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = cancelled.clone();
        let (addr, stop, running) = serve(Duration::from_secs(600), Duration::from_secs(30), move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        // Nothing is in flight: shutdown ends long before the 30 s grace period would.
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("shutdown waited for a silent connection")
            .unwrap()
            .unwrap();
        assert!(
            !cancelled.load(std::sync::atomic::Ordering::SeqCst),
            "no work to cancel"
        );
    }

    #[tokio::test]
    async fn a_packument_deleted_upstream_is_acked_and_one_still_listed_is_not() {
        use crate::handlers::testing::{self, upstream, Listing};
        use tower::ServiceExt as _;
        // "b" is listed, "a" is not (deleted since its item was published); both answer 404.
        let mut state = state(upstream(Listing::Names(vec!["b"])).await, Arc::new(Recorder::default()));
        // A patience shorter than the first CDN wait (1 s): the check comes at once.
        state.budget = Duration::from_secs(2);
        testing::store_live(&state.ctx, "a").await;
        let (store, key) = (state.ctx.store.clone(), state.ctx.packument_key("a"));
        let app = router(
            Arc::new(state),
            Limits {
                max_in_flight: 4,
                idle_timeout: IDLE_TIMEOUT,
            },
        );
        let push = |name: &str| {
            let item = format!(r#"{{"type":"packument","payload":{{"packageName":"{name}","rev":"2-y"}}}}"#);
            axum::http::Request::post("/work/packument")
                .header("content-type", "application/json")
                .body(Body::from(item))
                .unwrap()
        };
        let gone = app.clone().oneshot(push("a")).await.unwrap();
        assert_eq!(gone.status(), StatusCode::OK, "deleted upstream: done, acked");
        let body = axum::body::to_bytes(gone.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["data"]["deletedUpstream"], true, "{body}");
        let meta = store.head(&key).await.unwrap().unwrap();
        assert_eq!(meta.status, crate::store::Status::Deleted, "recorded as a tombstone");
        let listed = app.oneshot(push("b")).await.unwrap();
        assert_eq!(
            listed.status(),
            StatusCode::BAD_GATEWAY,
            "still listed: a failure Pub/Sub redelivers"
        );
    }

    #[tokio::test]
    async fn two_overlapping_change_ticks_advance_the_checkpoint_once() {
        // The simulator's feed lists its 5 documents (seqs 1..=5).
        let sim = crate::sim::spawn(crate::commands::parse_wrapped_sim(5)).await.unwrap();
        let recorder = Arc::new(Recorder::default());
        let state = state(Origin::parse(&sim.url).unwrap(), recorder.clone());
        // No checkpoint yet: nothing to follow, nothing published.
        assert!(matches!(run_changes(&state).await, Outcome::Done(d) if d["checkpoint"].is_null()));
        assert!(recorder.0.lock().is_empty());
        state
            .ctx
            .write_checkpoint(&Checkpoint::bootstrap(0, 1), &Expect::Absent)
            .await
            .unwrap();

        let (a, b) = tokio::join!(run_changes(&state), run_changes(&state));
        let results: Vec<serde_json::Value> = [a, b]
            .into_iter()
            .map(|o| match o {
                Outcome::Done(d) => d,
                other => panic!("{other}"),
            })
            .collect();
        let superseded = results.iter().filter(|d| d["superseded"] == true).count();
        assert_eq!(superseded, 1, "one tick wins, the other sees the conflict: {results:?}");
        let (cp, _) = state.ctx.read_checkpoint().await.unwrap().unwrap();
        assert_eq!(cp.seq, 5);
        assert_eq!(cp.lag_seqs(), Some(0));
        let published = recorder.0.lock().clone();
        assert!(published
            .iter()
            .all(|i| matches!(&i.work, Work::Packument { rev: Some(_), .. })));
        assert_eq!(
            published.len(),
            10,
            "both ticks published the batch: duplicates, not losses"
        );

        // Caught up: the next tick publishes nothing and keeps the checkpoint.
        let next = run_changes(&state).await;
        assert!(
            matches!(&next, Outcome::Done(d) if d["published"] == 0 && d["to"] == 5),
            "{next}"
        );
        sim.stop().await;
    }
}
