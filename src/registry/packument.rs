//! Fetching one packument into the store: full form, conditional, streamed, validated.
//!
//! The request asks for `Accept: application/json` only (anything broader may get the
//! abbreviated form, which lacks `_rev` and `time`) and sends the stored ETag as
//! `If-None-Match`, so an unchanged document costs a `304` and no body. A `200` body streams
//! straight into the store through a JSON validator; a body that is cut short, is not JSON, or
//! lacks a `_rev` fails the store's `put`, which then commits nothing, and the attempt is
//! retried. The previous entry is never touched by a failed attempt.

use std::sync::Arc;

use futures_util::StreamExt as _;
use parking_lot::Mutex;

use super::client::{classify_error, classify_status, AttemptError, Client, FetchError};
use super::jsoncheck::{JsonCheck, Summary};
use super::origin::Origin;
use crate::clock::now_ms;
use crate::keys::Key;
use crate::store::{BodyStream, Expect, Meta, Status, Store, StoreError};

/// What one fetch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A new body was stored (status `Ok` or `Unpublished`).
    Stored(Meta),
    /// `304`: the stored entry is current.
    NotModified,
    /// `404` (after the retries a transient 404 gets).
    NotFound,
    /// Fetched, but another writer (a redelivered or racing item) stored this key first since
    /// it was read: that entry stays, this body is dropped.
    Superseded,
}

/// A `404` for a package the listing says exists is retried this many times before it is
/// believed.
const NOT_FOUND_ATTEMPTS: u32 = 3;

/// Fetches `name` from `origin` into `store` under `key`, conditionally on `etag`.
pub async fn fetch_into(
    client: &Client,
    origin: &Origin,
    store: &dyn Store,
    key: &Key,
    name: &str,
    etag: Option<&str>,
    expect: &Expect,
) -> Result<Fetched, FetchError> {
    let url = origin.packument_url(name);
    let what = format!("packument {name}");
    let not_found = std::sync::atomic::AtomicU32::new(0);
    client
        .run(origin, &what, |http| {
            let mut req = http.get(&url).header(reqwest::header::ACCEPT, "application/json");
            if let Some(tag) = etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, tag);
            }
            let (what, not_found) = (&what, &not_found);
            async move {
                let resp = req.send().await.map_err(classify_error)?;
                if let Some(e) = classify_status(&resp, what) {
                    return Err(e);
                }
                match resp.status().as_u16() {
                    304 => return Ok(Fetched::NotModified),
                    404 => {
                        let seen = not_found.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if seen >= NOT_FOUND_ATTEMPTS {
                            return Ok(Fetched::NotFound);
                        }
                        return Err(AttemptError::Transient(
                            "404 for a listed package (may be transient)".into(),
                        ));
                    }
                    _ => {}
                }
                let header = |h: reqwest::header::HeaderName| {
                    resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_owned)
                };
                let mut meta = Meta::new(Status::Ok, now_ms());
                meta.etag = header(reqwest::header::ETAG);
                meta.last_modified = header(reqwest::header::LAST_MODIFIED);
                meta.cache_control = header(reqwest::header::CACHE_CONTROL);
                let summary: Arc<Mutex<Option<Summary>>> = Arc::default();
                let body = validated(resp, summary.clone(), client);
                let amend = |m: &mut Meta| {
                    if let Some(s) = summary.lock().as_ref() {
                        m.rev = s.rev.clone();
                        if s.unpublished {
                            m.status = Status::Unpublished;
                        }
                    }
                };
                match store.put_if(key, meta, body, &amend, expect).await {
                    Ok(meta) => Ok(Fetched::Stored(meta)),
                    Err(StoreError::Conflict { .. }) => Ok(Fetched::Superseded),
                    Err(StoreError::Body { source, .. }) => Err(AttemptError::Transient(format!("bad body: {source}"))),
                    Err(e) => Err(AttemptError::Fatal(FetchError::Store(e))),
                }
            }
        })
        .await
}

/// The response body as a stream that validates JSON as it goes and, at its end, fails unless
/// the document was complete, an object, and had a `_rev`.
fn validated(resp: reqwest::Response, summary: Arc<Mutex<Option<Summary>>>, client: &Client) -> BodyStream {
    let stats = client.stats.clone();
    let mut check = Some(JsonCheck::new());
    let chunks = resp
        .bytes_stream()
        .map(|r| r.map_err(|e| std::io::Error::other(super::client::error_chain(&e))));
    let end = futures_util::stream::once(async { Ok(bytes::Bytes::new()) });
    Box::pin(chunks.chain(end).map(move |item| {
        let chunk = item?;
        let Some(c) = check.as_mut() else {
            return Ok(chunk);
        };
        if chunk.is_empty() {
            // The end marker: the document must be complete.
            let done = check.take().map(JsonCheck::finish);
            return match done {
                Some(Ok(s)) if s.is_object && s.rev.is_some() => {
                    *summary.lock() = Some(s);
                    Ok(chunk)
                }
                Some(Ok(_)) => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "document has no `_rev` (abbreviated form?)",
                )),
                Some(Err(e)) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
                None => Ok(chunk),
            };
        }
        stats
            .bytes
            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        crate::telemetry::record_bytes("packument", chunk.len() as u64);
        c.feed(&chunk)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(chunk)
    }))
}

#[cfg(test)]
mod tests {
    use crate::registry::jsoncheck::check_in_chunks;

    /// The core's validator against the simulator's generated documents (which live here).
    #[test]
    fn the_json_check_validates_generated_packuments_and_catches_their_corruptions() {
        use crate::sim::docgen::{DocPlan, DocStream, Form, Profile};
        for name in ["lodash", "@types/node", "café", "JSONStream"] {
            let plan = DocPlan::new(3, name, Profile::of(3, name), 1, Form::Full, "http://127.0.0.1:1");
            let body: Vec<u8> = DocStream::new(plan).flat_map(|c| c.to_vec()).collect();
            let s = check_in_chunks(&body, 4_096).unwrap();
            assert_eq!(s.name.as_deref(), Some(name));
            assert!(s.rev.is_some());
            assert!(check_in_chunks(&body[..body.len() / 2], 4_096).is_err(), "truncated");
            let mut bad = body[..body.len() / 2].to_vec();
            bad.extend_from_slice(b"<html>502</html>");
            assert!(check_in_chunks(&bad, 4_096).is_err(), "spliced");
        }
    }
}
