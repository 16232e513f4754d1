//! The simulator's HTTP side: routes, rate limiting, fault injection, and the accept loop.
//!
//! Hyper is used directly (not axum) because two faults need control below the router: a
//! `reset` closes the connection without an answer, which a handler can only ask for by failing
//! the service call, and a `truncate` announces a length it then does not send.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::docgen::{self, DocPlan, DocStream, Form};
use super::faults::{Fault, FaultSpec};
use super::limiter::{Decision, Limiter};
use super::query::{self, BadRequest};
use super::rng::hash_parts;
use super::stats::{Route, Stats};
use super::world::{KeyRow, Range, World};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Bodies up to this size are sent with a `Content-Length`; larger ones are streamed chunked.
const INLINE_MAX: usize = 1024 * 1024;

/// Returned by the service to make hyper drop the connection without answering.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ResetConnection {}

/// Settings of the HTTP side, from the command line.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub limiter: Option<Limiter>,
    pub faults: FaultSpec,
    pub stall: Duration,
    pub gzip: bool,
    pub changes_per_sec: f64,
}

/// A response before it is turned into hyper's: faults need to see and cut the body.
enum Payload {
    Empty,
    Inline(Bytes),
    Stream(Box<dyn Iterator<Item = Bytes> + Send>),
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    payload: Payload,
}

impl Answer {
    fn json(status: StatusCode, body: impl Into<Bytes>) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Answer {
            status,
            headers,
            payload: Payload::Inline(body.into()),
        }
    }

    fn error(status: StatusCode, error: &str, reason: &str) -> Answer {
        Answer::json(
            status,
            serde_json::json!({ "error": error, "reason": reason }).to_string(),
        )
    }

    fn bad_request(e: BadRequest) -> Answer {
        Answer::error(StatusCode::BAD_REQUEST, "bad_request", &e.0)
    }

    fn not_found() -> Answer {
        Answer::error(StatusCode::NOT_FOUND, "not_found", "document not found")
    }
}

pub struct App {
    world: Arc<World>,
    stats: Arc<Stats>,
    limiter: Option<Mutex<Limiter>>,
    faults: FaultSpec,
    attempts: Mutex<HashMap<u64, u64>>,
    stall: Duration,
    gzip: bool,
    started: Instant,
    base_url: String,
    changes_paused: AtomicBool,
    shutdown: CancellationToken,
}

impl App {
    pub fn new(world: Arc<World>, opts: &ServerOptions, base_url: String, shutdown: CancellationToken) -> App {
        App {
            world,
            stats: Arc::new(Stats::default()),
            limiter: opts.limiter.clone().map(Mutex::new),
            faults: opts.faults,
            attempts: Mutex::new(HashMap::new()),
            stall: opts.stall,
            gzip: opts.gzip,
            started: Instant::now(),
            base_url,
            changes_paused: AtomicBool::new(false),
            shutdown,
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, ResetConnection> {
        let path = req.uri().path().to_owned();
        if let Some(control) = path.strip_prefix("/-/sim/") {
            return Ok(self.control(req.method(), control).into_response(None));
        }
        let route = match path.as_str() {
            "/" => Route::Root,
            "/_all_docs" => Route::AllDocs,
            "/_changes" => Route::Changes,
            p if p.starts_with("/-/") => Route::Other,
            _ => Route::Packument,
        };
        self.stats.request(route);

        if let Some(limiter) = &self.limiter {
            let mut l = limiter.lock();
            if let Decision::Limit { violation } = l.check(self.started.elapsed()) {
                let secs = l.retry_after().as_secs().max(1);
                drop(l);
                self.stats.limited(violation);
                let mut a = Answer::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "rate limit exceeded",
                );
                a.headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return Ok(self.finish(a));
            }
        }

        let fault = self.fault_for(route, &req);
        if let Some(f) = fault {
            self.stats.fault(f.kind());
        }
        match fault {
            Some(Fault::Reset) => return Err(ResetConnection),
            Some(Fault::Status(s)) => {
                let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Ok(self.finish(Answer::error(status, "upstream_error", "simulated server error")));
            }
            Some(Fault::Flap404) => return Ok(self.finish(Answer::not_found())),
            Some(Fault::Stall) => {
                tokio::select! {
                    _ = tokio::time::sleep(self.stall) => {}
                    _ = self.shutdown.cancelled() => {}
                }
            }
            _ => {}
        }

        let query = req.uri().query().unwrap_or("");
        let answer = if req.method() != Method::GET && req.method() != Method::HEAD {
            Answer::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is supported",
            )
        } else {
            match route {
                Route::Root => self.root(),
                Route::AllDocs => self.all_docs(query),
                Route::Changes => self.changes(query),
                Route::Packument => self.packument(&path, req.headers()),
                Route::Other => Answer::not_found(),
            }
        };
        let answer = match fault {
            Some(Fault::BadJson) if answer.status == StatusCode::OK => corrupt(answer),
            _ => answer,
        };
        let gzip = self.gzip && accepts_gzip(req.headers());
        let answer = if gzip { gzip_inline(answer) } else { answer };
        let cut = matches!(fault, Some(Fault::Truncate));
        Ok(self.finish_cut(answer, cut, req.method() == Method::HEAD))
    }

    /// Draws the fault for this request, counting attempts per route and target.
    fn fault_for(&self, route: Route, req: &Request<Incoming>) -> Option<Fault> {
        if self.faults.is_empty() || !matches!(route, Route::AllDocs | Route::Changes | Route::Packument) {
            return None;
        }
        let key = req.uri().path_and_query().map_or("", |pq| pq.as_str());
        let attempt = {
            let mut attempts = self.attempts.lock();
            let n = attempts.entry(hash_parts(0, &[key.as_bytes()])).or_insert(0);
            *n += 1;
            *n - 1
        };
        self.faults
            .decide(self.world.seed(), key, attempt, route == Route::Packument)
    }

    fn root(&self) -> Answer {
        let seq = self.world.update_seq();
        Answer::json(
            StatusCode::OK,
            serde_json::json!({
                "db_name": "registry",
                "doc_count": self.world.doc_count(),
                "doc_del_count": self.world.deleted_count(),
                "update_seq": seq,
                "committed_update_seq": seq,
                "purge_seq": 0,
                "compact_running": false,
                "disk_format_version": 8,
                "instance_start_time": "0",
            })
            .to_string(),
        )
    }

    fn all_docs(&self, query: &str) -> Answer {
        let q = match query::all_docs(query) {
            Ok(q) => q,
            Err(e) => return Answer::bad_request(e),
        };
        let mut out = Vec::with_capacity(q.limit.min(query::MAX_LIMIT) * 80 + 64);
        let mut rows = 0usize;
        let mut sep = |out: &mut Vec<u8>| {
            out.extend_from_slice(if rows == 0 { b"\n" } else { b",\n" });
            rows += 1;
        };
        let (total, offset) = if let Some(keys) = &q.keys {
            out.extend_from_slice(b"[");
            for key in keys {
                sep(&mut out);
                match self.world.key_row(key) {
                    KeyRow::Live(rev) => row(&mut out, key, &rev, false),
                    KeyRow::Deleted(rev) => row(&mut out, key, &rev, true),
                    KeyRow::Missing => {
                        out.extend_from_slice(b"{\"key\":");
                        docgen::json_str(&mut out, key);
                        out.extend_from_slice(b",\"error\":\"not_found\"}");
                    }
                }
            }
            (self.world.doc_count(), 0)
        } else {
            out.extend_from_slice(b"[");
            let range = Range {
                start: q.start.as_deref(),
                end: q.end.as_deref(),
                inclusive_end: q.inclusive_end,
                descending: q.descending,
                limit: q.limit,
            };
            self.world.scan(&range, |name, rev| {
                sep(&mut out);
                row(&mut out, name, &rev, false);
            })
        };
        out.extend_from_slice(b"\n]}\n");
        let head = format!("{{\"total_rows\":{total},\"offset\":{offset},\"rows\":");
        let mut body = Vec::with_capacity(head.len() + out.len());
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&out);
        Answer::json(StatusCode::OK, body)
    }

    fn changes(&self, query: &str) -> Answer {
        let q = match query::changes(query, self.world.update_seq()) {
            Ok(q) => q,
            Err(e) => return Answer::bad_request(e),
        };
        let (rows, last_seq) = self.world.changes(q.since, q.limit);
        let mut out = Vec::with_capacity(rows.len() * 90 + 64);
        out.extend_from_slice(b"{\"results\":[");
        for (i, c) in rows.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            out.extend_from_slice(format!("{{\"seq\":{},\"id\":", c.seq).as_bytes());
            docgen::json_str(&mut out, &c.name);
            out.extend_from_slice(b",\"changes\":[{\"rev\":");
            docgen::json_str(&mut out, &c.rev);
            out.extend_from_slice(if c.deleted { b"}],\"deleted\":true}" } else { b"}]}" });
        }
        let pending = self.world.update_seq().saturating_sub(last_seq);
        out.extend_from_slice(format!("\n],\"last_seq\":{last_seq},\"pending\":{pending}}}\n").as_bytes());
        Answer::json(StatusCode::OK, out)
    }

    fn packument(&self, path: &str, headers: &HeaderMap) -> Answer {
        let Some(name) = package_name(path) else {
            return Answer::not_found();
        };
        let Some(edits) = self.world.lookup(&name, Instant::now()) else {
            return Answer::not_found();
        };
        let form = if wants_full(headers) {
            Form::Full
        } else {
            Form::Abbreviated
        };
        let profile = self.world.profile(&name);
        let seed = self.world.seed();
        let plan = DocPlan::new(seed, &name, profile.clone(), edits, form, &self.base_url);
        let etag = docgen::etag(seed, &name, plan.gen(), form);
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        h.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        let modified = UNIX_EPOCH + Duration::from_secs(plan.modified().max(0) as u64);
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            h.insert(header::LAST_MODIFIED, v);
        }
        if if_none_match(headers, &etag) {
            return Answer {
                status: StatusCode::NOT_MODIFIED,
                headers: h,
                payload: Payload::Empty,
            };
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(match form {
                Form::Full => "application/json",
                Form::Abbreviated => "application/vnd.npm.install-v1+json",
            }),
        );
        let mut stream = DocStream::new(plan);
        let mut head = Vec::new();
        let mut size = 0;
        for chunk in stream.by_ref() {
            size += chunk.len();
            head.push(chunk);
            if size >= INLINE_MAX {
                break;
            }
        }
        let payload = if size < INLINE_MAX {
            Payload::Inline(head.concat().into())
        } else {
            Payload::Stream(Box::new(head.into_iter().chain(stream)))
        };
        Answer {
            status: StatusCode::OK,
            headers: h,
            payload,
        }
    }

    /// `/-/sim/*`: statistics, the truth, and the change generator's switch.
    fn control(&self, method: &Method, what: &str) -> Answer {
        let ok = || Answer::json(StatusCode::OK, r#"{"ok":true}"#);
        match (method, what) {
            (&Method::GET, "stats") => Answer::json(StatusCode::OK, self.stats.to_json().to_string()),
            (&Method::POST, "reset-stats") => {
                self.stats.reset();
                ok()
            }
            (&Method::GET, "index") => {
                let mut a = Answer::json(StatusCode::OK, Bytes::new());
                a.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                a.payload = Payload::Stream(Box::new(IndexPages {
                    world: self.world.clone(),
                    after: None,
                    done: false,
                }));
                a
            }
            (&Method::POST, "pause-changes") => {
                self.changes_paused.store(true, Ordering::SeqCst);
                ok()
            }
            (&Method::POST, "resume-changes") => {
                self.changes_paused.store(false, Ordering::SeqCst);
                ok()
            }
            _ => Answer::not_found(),
        }
    }

    fn finish(&self, answer: Answer) -> Response<Body> {
        self.finish_cut(answer, false, false)
    }

    /// Turns an answer into hyper's response, counting status and bytes; `cut` sends the
    /// announced length but only part of the body, then fails the connection.
    fn finish_cut(self: &App, answer: Answer, cut: bool, head_only: bool) -> Response<Body> {
        self.stats.status(answer.status.as_u16());
        answer.into_response(Some((&self.stats, cut, head_only)))
    }

    /// Applies the steady change rate until shutdown (a no-op without `--changes-per-sec`).
    pub async fn run_changes(self: Arc<Self>, per_sec: f64) {
        if per_sec <= 0.0 {
            return;
        }
        let tick = Duration::from_secs_f64((1.0 / per_sec).clamp(0.001, 0.1));
        let (mut applied, mut active, mut last) = (0u64, Duration::ZERO, Instant::now());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = self.shutdown.cancelled() => return,
            }
            let now = Instant::now();
            if !self.changes_paused.load(Ordering::SeqCst) {
                active += now - last;
            }
            last = now;
            let due = (active.as_secs_f64() * per_sec) as u64;
            while applied < due {
                let m = self.world.mutate(now);
                tracing::debug!(?m, "simulated change");
                applied += 1;
            }
        }
    }
}

impl Answer {
    fn into_response(self, stats: Option<(&Arc<Stats>, bool, bool)>) -> Response<Body> {
        let (counter, cut, head_only) = match stats {
            Some((s, cut, head)) => (Some(s), cut, head),
            None => (None, false, false),
        };
        let mut builder = Response::builder().status(self.status);
        if let Some(h) = builder.headers_mut() {
            *h = self.headers;
        }
        let body: Body = match self.payload {
            Payload::Empty => Full::new(Bytes::new())
                .map_err(|e: Infallible| match e {})
                .boxed_unsync(),
            _ if head_only => Full::new(Bytes::new())
                .map_err(|e: Infallible| match e {})
                .boxed_unsync(),
            Payload::Inline(bytes) if cut => {
                if let Some(h) = builder.headers_mut() {
                    h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                }
                let part = bytes.slice(..bytes.len() / 2);
                if let Some(s) = counter {
                    s.sent(part.len());
                }
                truncated(vec![part])
            }
            Payload::Inline(bytes) => {
                if let Some(s) = counter {
                    s.sent(bytes.len());
                }
                Full::new(bytes).map_err(|e: Infallible| match e {}).boxed_unsync()
            }
            Payload::Stream(mut chunks) if cut => {
                let part: Vec<Bytes> = chunks.next().into_iter().collect();
                if let Some(s) = counter {
                    s.sent(part.iter().map(Bytes::len).sum());
                }
                truncated(part)
            }
            Payload::Stream(chunks) => {
                let counted = CountedChunks {
                    chunks,
                    stats: counter.cloned(),
                };
                BodyExt::boxed_unsync(StreamBody::new(
                    futures_util::stream::iter(counted).map(|b| Ok(Frame::data(b))),
                ))
            }
        };
        builder
            .body(body)
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed_unsync()))
    }
}

/// A body that yields `parts` and then fails, so hyper closes the connection mid-body. The
/// short pause lets hyper flush the headers and the part first, as a real cut connection does.
fn truncated(parts: Vec<Bytes>) -> Body {
    let frames = futures_util::stream::iter(parts.into_iter().map(|b| Ok(Frame::data(b))));
    let fail = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated truncation",
        ))
    });
    BodyExt::boxed_unsync(StreamBody::new(frames.chain(fail)))
}

/// Counts streamed bytes into the stats as they are sent.
struct CountedChunks {
    chunks: Box<dyn Iterator<Item = Bytes> + Send>,
    stats: Option<Arc<Stats>>,
}

impl Iterator for CountedChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let chunk = self.chunks.next()?;
        if let Some(stats) = &self.stats {
            stats.sent(chunk.len());
        }
        Some(chunk)
    }
}

/// Pages of `/-/sim/index`, 10 000 names at a time, so 4.5 M lines never sit in memory.
struct IndexPages {
    world: Arc<World>,
    after: Option<String>,
    done: bool,
}

impl Iterator for IndexPages {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        let mut last = None;
        let after = self.after.take();
        let range = Range {
            start: after.as_deref(),
            inclusive_end: true,
            limit: 10_001,
            ..Range::default()
        };
        self.world.scan(&range, |name, rev| {
            if after.as_deref() == Some(name) {
                return;
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b'\t');
            out.extend_from_slice(rev.as_bytes());
            out.push(b'\n');
            last = Some(name.to_owned());
        });
        self.done = last.is_none();
        self.after = last;
        (!out.is_empty()).then(|| out.into())
    }
}

fn row(out: &mut Vec<u8>, name: &str, rev: &str, deleted: bool) {
    out.extend_from_slice(b"{\"id\":");
    docgen::json_str(out, name);
    out.extend_from_slice(b",\"key\":");
    docgen::json_str(out, name);
    out.extend_from_slice(b",\"value\":{\"rev\":");
    docgen::json_str(out, rev);
    out.extend_from_slice(if deleted { b",\"deleted\":true}}" } else { b"}}" });
}

/// The package name in a registry path: `/name`, `/@scope%2fname` or `/@scope/name`.
fn package_name(path: &str) -> Option<String> {
    let raw = path.strip_prefix('/')?;
    let name = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    let ok = match name.split_once('/') {
        None => !name.is_empty(),
        Some((scope, rest)) => scope.starts_with('@') && scope.len() > 1 && !rest.is_empty() && !rest.contains('/'),
    };
    ok.then(|| name.into_owned())
}

/// True when every media range in `Accept` is `application/json` (parameters aside): only then
/// is the full document sent, as upstream. A missing header allows anything.
fn wants_full(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut ranges = accept
        .split(',')
        .map(|r| r.split(';').next().unwrap_or("").trim())
        .filter(|r| !r.is_empty());
    let mut any = false;
    let all_json = ranges.all(|r| {
        any = true;
        r.eq_ignore_ascii_case("application/json")
    });
    any && all_json
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = strip(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || strip(t) == ours)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.split(';').next().unwrap_or("").trim() == "gzip"))
}

/// Compresses inline bodies (streamed ones stay identity-encoded, as a CDN does for huge files).
fn gzip_inline(mut a: Answer) -> Answer {
    if let Payload::Inline(bytes) = &a.payload {
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
        if enc.write_all(bytes).is_ok() {
            if let Ok(gz) = enc.finish() {
                a.payload = Payload::Inline(gz.into());
                a.headers
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
        }
    }
    a
}

/// `badjson`: keep the first part of the real body and break it, like an error page spliced
/// into a cached response.
fn corrupt(mut a: Answer) -> Answer {
    let prefix = match &mut a.payload {
        Payload::Inline(b) => b.slice(..b.len() / 2),
        Payload::Stream(chunks) => chunks.next().unwrap_or_default(),
        Payload::Empty => Bytes::new(),
    };
    let mut body = prefix.to_vec();
    body.extend_from_slice(b"<html><body>502 Bad Gateway</body></html>");
    a.payload = Payload::Inline(body.into());
    a
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets open connections finish
/// (for at most five seconds).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let conn_shutdown = shutdown.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| app.clone().handle(req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(6), done_rx.recv()).await;
}

/// Seconds since the Unix epoch, for logs.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_plain_json_accept_gets_the_full_form() {
        assert!(wants_full(&accept("application/json")));
        assert!(wants_full(&accept("application/json; charset=utf-8")));
        assert!(!wants_full(&accept("*/*")));
        assert!(!wants_full(&accept(
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"
        )));
        assert!(!wants_full(&HeaderMap::new()));
    }

    #[test]
    fn package_names_from_paths() {
        assert_eq!(package_name("/lodash").as_deref(), Some("lodash"));
        assert_eq!(package_name("/@types%2fnode").as_deref(), Some("@types/node"));
        assert_eq!(package_name("/@types%2Fnode").as_deref(), Some("@types/node"));
        assert_eq!(package_name("/@types/node").as_deref(), Some("@types/node"));
        assert_eq!(package_name("/caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(package_name("/lodash/4.17.21"), None);
        assert_eq!(package_name("/@types/node/-/node-1.0.0.tgz"), None);
        assert_eq!(package_name("/"), None);
        assert_eq!(package_name("/%FF"), None);
    }

    #[test]
    fn etag_matching() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(if_none_match(&h, "\"b\""));
        assert!(if_none_match(&h, "W/\"a\""));
        assert!(!if_none_match(&h, "\"c\""));
    }
}
