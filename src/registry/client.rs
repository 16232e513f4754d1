//! The one HTTP client to the upstream, and the retry loop every request runs in.
//!
//! [`Client::run`] is the only way out: it takes a concurrency permit, waits for the origin's
//! [`Governor`], runs one attempt, reports how it ended, and retries transient failures with
//! the governor's backoff until it gives up. Callers describe an attempt as a closure that
//! returns an [`AttemptError`] saying what kind of failure it met, so body-level failures
//! (a truncated or invalid body found while streaming) are retried like status-level ones.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::governor::{parse_retry_after, Governor, GovernorConfig, Outcome, Retry};
use super::origin::Origin;
use crate::store::StoreError;

/// How one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// `429` (or `503` with `Retry-After`): pause the origin.
    RateLimited(Option<Duration>),
    /// Worth retrying: 5xx, reset, timeout, truncated or invalid body.
    Transient(String),
    /// Retrying cannot help.
    Fatal(FetchError),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{what}: gave up after {attempts} attempts; last error: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        last: String,
        /// The last attempt was refused with a rate limit (the upstream wants us to slow down).
        rate_limited: bool,
    },
    #[error("{what}: upstream answered {status}")]
    Status { what: String, status: u16 },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: stopped by shutdown")]
    Cancelled { what: String },
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Requests in flight at most, over all origins.
    pub concurrency: usize,
    pub governor: GovernorConfig,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response before the attempt counts as stalled.
    pub read_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            concurrency: 64,
            governor: GovernorConfig::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters for progress displays and summaries.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
}

pub struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
    permits: Arc<Semaphore>,
    governors: Mutex<HashMap<String, Arc<Mutex<Governor>>>>,
    clock: Instant,
    pub stats: Arc<ClientStats>,
    shutdown: CancellationToken,
}

impl Client {
    pub fn new(cfg: ClientConfig, shutdown: CancellationToken) -> Result<Client, FetchError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("all-docs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_max_idle_per_host(cfg.concurrency.max(1))
            .tcp_nodelay(true)
            .gzip(true)
            .brotli(true)
            .build()
            .map_err(|e| FetchError::Invalid {
                what: "building the HTTP client".into(),
                reason: e.to_string(),
            })?;
        Ok(Client {
            http,
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            cfg,
            governors: Mutex::new(HashMap::new()),
            clock: Instant::now(),
            stats: Arc::default(),
            shutdown,
        })
    }

    /// Requests in flight at most.
    pub fn concurrency(&self) -> usize {
        self.cfg.concurrency.max(1)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn governor(&self, origin: &Origin) -> Arc<Mutex<Governor>> {
        self.governors
            .lock()
            .entry(origin.base().to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Governor::new(self.cfg.governor.clone()))))
            .clone()
    }

    /// The current paced rate towards `origin` (requests per second).
    pub fn rate(&self, origin: &Origin) -> f64 {
        self.governor(origin).lock().rate()
    }

    /// How long requests to `origin` are paused by a `Retry-After` still (zero when not paused).
    pub fn paused_for(&self, origin: &Origin) -> Duration {
        self.governor(origin)
            .lock()
            .paused_until()
            .saturating_sub(self.clock.elapsed())
    }

    /// Whether shutdown was asked for.
    pub fn stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Sleeps `d`, or less if shutdown is asked for; `false` when stopping.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or runs out of attempts.
    pub async fn run<T, F, Fut>(&self, origin: &Origin, what: &str, mut attempt: F) -> Result<T, FetchError>
    where
        F: FnMut(&reqwest::Client) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let governor = self.governor(origin);
        let cancelled = || FetchError::Cancelled { what: what.to_owned() };
        for n in 1u32.. {
            let permit = self.permits.acquire().await.map_err(|_| cancelled())?;
            loop {
                if self.stopping() {
                    return Err(cancelled());
                }
                let wait = governor.lock().acquire(self.clock.elapsed());
                match wait {
                    Ok(()) => break,
                    Err(d) => {
                        if !self.sleep(d).await {
                            return Err(cancelled());
                        }
                    }
                }
            }
            self.stats.requests.fetch_add(1, Relaxed);
            let result = attempt(&self.http).await;
            drop(permit);
            let outcome = match &result {
                Ok(_) | Err(AttemptError::Fatal(_)) => Outcome::Done,
                Err(AttemptError::RateLimited(ra)) => Outcome::RateLimited { retry_after: *ra },
                Err(AttemptError::Transient(_)) => Outcome::Transient,
            };
            governor.lock().report(self.clock.elapsed(), outcome);
            let last = match result {
                Ok(v) => return Ok(v),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::RateLimited(_)) => {
                    self.stats.rate_limited.fetch_add(1, Relaxed);
                    crate::telemetry::record_upstream_429(origin.id());
                    "rate limited (429)".to_owned()
                }
                Err(AttemptError::Transient(msg)) => msg,
            };
            let decision = governor.lock().retry(n, outcome, jitter());
            match decision {
                Retry::GiveUp => {
                    return Err(FetchError::GaveUp {
                        what: what.to_owned(),
                        attempts: n,
                        last,
                        rate_limited: matches!(outcome, Outcome::RateLimited { .. }),
                    })
                }
                Retry::After(d) => {
                    self.stats.retries.fetch_add(1, Relaxed);
                    tracing::debug!(what, attempt = n, error = %last, wait_ms = d.as_millis() as u64, "retrying");
                    if !self.sleep(d).await {
                        return Err(cancelled());
                    }
                }
            }
        }
        Err(cancelled())
    }

    /// GETs `url` and parses the JSON answer (for `/`, `_all_docs`, `_changes`: small bodies).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        origin: &Origin,
        path_and_query: &str,
        what: &str,
    ) -> Result<T, FetchError> {
        let url = origin.url(path_and_query);
        self.run(origin, what, |http| {
            let req = http.get(&url).header(reqwest::header::ACCEPT, "application/json");
            let url = url.clone();
            async move {
                let resp = req.send().await.map_err(classify_error)?;
                if let Some(e) = classify_status(&resp, what) {
                    return Err(e);
                }
                // `/`, `_all_docs` and `_changes` always exist: a 404 is a glitch (or the wrong
                // origin), never an answer, even when its body parses. An empty listing read
                // from a 404 would otherwise look like every name in the range was deleted.
                if resp.status() == reqwest::StatusCode::NOT_FOUND {
                    return Err(AttemptError::Transient("upstream answered 404".into()));
                }
                let bytes = resp.bytes().await.map_err(classify_error)?;
                self.stats.bytes.fetch_add(bytes.len() as u64, Relaxed);
                serde_json::from_slice(&bytes)
                    .map_err(|e| AttemptError::Transient(format!("invalid JSON from {url}: {e}")))
            }
        })
        .await
    }
}

/// Maps a response status to an attempt error (`None` for 2xx, 304 and 404, which callers
/// handle).
pub fn classify_status(resp: &reqwest::Response, what: &str) -> Option<AttemptError> {
    let status = resp.status().as_u16();
    let retry_after = || {
        resp.headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, crate::clock::now_secs()))
    };
    match status {
        200..=299 | 304 | 404 => None,
        429 => Some(AttemptError::RateLimited(retry_after())),
        503 if retry_after().is_some() => Some(AttemptError::RateLimited(retry_after())),
        500..=599 | 408 => Some(AttemptError::Transient(format!("upstream answered {status}"))),
        _ => Some(AttemptError::Fatal(FetchError::Status {
            what: what.to_owned(),
            status,
        })),
    }
}

/// Connection-level failures are all worth a retry.
pub fn classify_error(e: reqwest::Error) -> AttemptError {
    if e.is_builder() {
        return AttemptError::Fatal(FetchError::Invalid {
            what: "request".into(),
            reason: e.to_string(),
        });
    }
    AttemptError::Transient(error_chain(&e))
}

/// An error with its causes, for logs ("error sending request: connection reset").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A uniform draw in `[0, 1)` for jitter (not for anything that must repeat).
fn jitter() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
