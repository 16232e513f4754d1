//! `all-docs serve`: the Cloud Run shape of the same work.
//!
//! Pub/Sub pushes work items to `POST /work/{partition-set,partition,packument}`, and change-feed
//! ticks to `POST /work/changes` (see `push::run_changes`); each request
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
mod push;
mod server;

pub use server::Server;

pub use all_docs_core::envelope;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::handlers::Ctx;
use crate::keys::Key;
use crate::queue::pubsub::Publish;
use auth::PushAuth;
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
        .route("/work/partition-set", post(push::partition_set))
        .route("/work/partition", post(push::partition))
        .route("/work/packument", post(push::packument))
        .route("/work/changes", post(push::changes_tick))
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;

    use super::push::run_changes;
    use super::*;
    use crate::follow::Checkpoint;
    use crate::queue::pubsub::PubSubError;
    use crate::registry::client::Client;
    use crate::registry::origin::Origin;
    use crate::store::memory::MemoryStore;
    use crate::store::Expect;
    use crate::work::{Work, WorkItem};

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
