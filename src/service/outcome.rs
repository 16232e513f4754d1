//! How a push request ended, and the one place that turns it into a status code for Pub/Sub.

use all_docs_core::outcome::Disposition;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::AuthError;
use super::envelope::Rejection;
use crate::handlers::HandlerError;
use crate::registry::client::FetchError;
use crate::store::StoreError;

/// The end of one push request.
#[derive(Debug, thiserror::Error)]
pub enum Outcome {
    /// Durably done: acked.
    #[error("done")]
    Done(Value),
    /// Can never succeed: 400 (413 for a body over the limit), dead-lettered after the maximum
    /// attempts.
    #[error("{0}")]
    Rejected(Rejection),
    #[error("push authentication failed: {0}")]
    Unauthorized(AuthError),
    /// The upstream asked us to wait this long.
    #[error("the upstream is rate limiting; paused for {0:?}")]
    Throttled(Duration),
    /// The upstream failed (after retries) in a way another delivery may not meet.
    #[error("{0}")]
    Upstream(String),
    /// The store or Pub/Sub failed.
    #[error("{0}")]
    Dependency(String),
    /// The instance has as many requests in flight as it may take.
    #[error("too many requests in flight")]
    Busy,
    #[error("the work did not finish within {0:?}")]
    OutOfTime(Duration),
    /// Shutting down: in-flight work was stopped.
    #[error("shutting down")]
    Stopping,
    /// A stored entry is unreadable: retrying as is cannot help, but the data must not be
    /// thrown away, so it is not a 4xx either.
    #[error("{0}")]
    Internal(String),
}

impl Outcome {
    pub fn from_handler(e: HandlerError) -> Outcome {
        match e {
            HandlerError::Fetch(FetchError::Cancelled { .. }) => Outcome::Stopping,
            HandlerError::Fetch(FetchError::GaveUp { rate_limited: true, .. }) => {
                Outcome::Throttled(Duration::from_secs(10))
            }
            // A corrupt entry or a bad prefix does not heal by waiting; the rest is the store
            // (or a concurrent writer) and may.
            HandlerError::Fetch(FetchError::Store(e)) | HandlerError::Store(e) => match e {
                StoreError::Corrupt { .. } | StoreError::Prefix(_) => Outcome::Internal(e.to_string()),
                _ => Outcome::Dependency(e.to_string()),
            },
            e @ (HandlerError::Fetch(_) | HandlerError::ListedButMissing(_) | HandlerError::Stale { .. }) => {
                Outcome::Upstream(e.to_string())
            }
            e @ (HandlerError::BadPartition { .. } | HandlerError::BadCheckpoint { .. }) => {
                Outcome::Internal(e.to_string())
            }
            e @ HandlerError::Raced { .. } => Outcome::Dependency(e.to_string()),
            // Pub/Sub did not take the fanned-out items; the whole item runs again.
            e @ HandlerError::FanOut(_) => Outcome::Dependency(e.to_string()),
        }
    }

    /// What this tells Pub/Sub, in the runtime-neutral terms every runtime maps to its queue
    /// (the HTTP status below refines it: 429 or 503, 400 or 413).
    pub fn disposition(&self) -> Disposition {
        match self {
            Outcome::Done(_) => Disposition::Done,
            Outcome::Rejected(r) => Disposition::Reject { reason: r.to_string() },
            Outcome::Unauthorized(e) if !e.status().is_server_error() => Disposition::Reject { reason: e.to_string() },
            other => Disposition::Retry {
                after: Duration::from_secs(retry_after(other).unwrap_or(1)),
            },
        }
    }

    /// The metric label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "ok",
            Outcome::Unauthorized(e) if e.status().is_server_error() => "error",
            Outcome::Rejected(_) | Outcome::Unauthorized(_) => "rejected",
            Outcome::Throttled(_) | Outcome::Busy | Outcome::OutOfTime(_) | Outcome::Stopping => "retry",
            Outcome::Upstream(_) | Outcome::Dependency(_) | Outcome::Internal(_) => "error",
        }
    }
}

/// The status code Pub/Sub sees.
pub fn status(o: &Outcome) -> StatusCode {
    match o {
        Outcome::Done(_) => StatusCode::OK,
        Outcome::Rejected(Rejection::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
        Outcome::Rejected(_) => StatusCode::BAD_REQUEST,
        Outcome::Unauthorized(e) => e.status(),
        Outcome::Throttled(_) | Outcome::Busy => StatusCode::TOO_MANY_REQUESTS,
        Outcome::Upstream(_) => StatusCode::BAD_GATEWAY,
        Outcome::Dependency(_) | Outcome::OutOfTime(_) | Outcome::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Seconds a client should wait before trying again, when that means something.
pub fn retry_after(o: &Outcome) -> Option<u64> {
    match o {
        Outcome::Throttled(d) => Some(d.as_secs_f64().ceil().max(1.0) as u64),
        Outcome::Busy => Some(1),
        Outcome::Dependency(_) | Outcome::OutOfTime(_) | Outcome::Stopping | Outcome::Upstream(_) => Some(10),
        // The key set could not be fetched: a dependency is down.
        Outcome::Unauthorized(e) if e.status().is_server_error() => Some(10),
        _ => None,
    }
}

/// The response: a small JSON body saying what happened, and `Retry-After` where it applies.
pub fn response(o: &Outcome) -> Response {
    let code = status(o);
    let body = match o {
        Outcome::Done(data) => json!({ "success": true, "data": data }),
        other => json!({ "success": false, "error": { "message": other.to_string(), "statusCode": code.as_u16() } }),
    };
    let mut resp = (code, axum::Json(body)).into_response();
    if let Some(secs) = retry_after(o) {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::WorkError;

    #[test]
    fn status_codes_drive_pubsub() {
        assert_eq!(status(&Outcome::Done(Value::Null)), StatusCode::OK);
        let r = Outcome::Rejected(Rejection::Item(WorkError::UnknownType("x".into())));
        assert_eq!(status(&r), StatusCode::BAD_REQUEST);
        assert_eq!(retry_after(&r), None);
        let t = Outcome::Throttled(Duration::from_millis(2500));
        assert_eq!(status(&t), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after(&t), Some(3));
        assert_eq!(status(&Outcome::Busy), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            status(&Outcome::Dependency("gcs down".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(retry_after(&Outcome::Stopping), Some(10));
    }

    #[test]
    fn the_status_agrees_with_the_disposition() {
        let outcomes = [
            Outcome::Done(json!({})),
            Outcome::Rejected(Rejection::Empty),
            Outcome::Rejected(Rejection::TooLarge("big".into())),
            Outcome::Throttled(Duration::from_secs(30)),
            Outcome::Busy,
            Outcome::Upstream("502".into()),
            Outcome::Dependency("store".into()),
            Outcome::OutOfTime(Duration::from_secs(240)),
            Outcome::Stopping,
            Outcome::Internal("bug".into()),
        ];
        for o in outcomes {
            let s = status(&o);
            match o.disposition() {
                Disposition::Done => assert!(s.is_success(), "{o:?}: {s}"),
                Disposition::Reject { .. } => assert!(s.is_client_error(), "{o:?}: {s}"),
                Disposition::Retry { after } => {
                    assert!(
                        !s.is_success() && !s.is_client_error() || s == StatusCode::TOO_MANY_REQUESTS,
                        "{o:?}: {s}"
                    );
                    assert_eq!(Some(after.as_secs()), retry_after(&o).or(Some(1)), "{o:?}");
                }
            }
        }
    }

    #[test]
    fn handler_errors_are_never_4xx() {
        // Nothing the upstream or the store does may dead-letter good work.
        let errors = [
            HandlerError::ListedButMissing("a".into()),
            HandlerError::Fetch(FetchError::GaveUp {
                what: "x".into(),
                attempts: 8,
                last: "rate limited (429)".into(),
                rate_limited: true,
            }),
            HandlerError::Fetch(FetchError::GaveUp {
                what: "x".into(),
                attempts: 8,
                last: "connection reset (port 4290)".into(),
                rate_limited: false,
            }),
            HandlerError::Fetch(FetchError::Status {
                what: "x".into(),
                status: 403,
            }),
            HandlerError::Fetch(FetchError::Cancelled { what: "x".into() }),
            HandlerError::BadPartition {
                key: "k".into(),
                reason: "r".into(),
            },
            HandlerError::Raced {
                name: "a".into(),
                wanted: "2-b".into(),
                stored: Some("1-a".into()),
            },
        ];
        for e in errors {
            let text = e.to_string();
            let s = status(&Outcome::from_handler(e));
            assert!(s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS, "{text}: {s}");
        }
    }

    #[test]
    fn a_package_deleted_upstream_is_done_but_one_still_listed_is_retried() {
        use crate::handlers::PackumentDone;
        use crate::run::Done;
        // Confirmed gone (404, and no longer in `_all_docs`): a tombstone is stored, so acked.
        let gone = Outcome::Done(Done::Packument(PackumentDone::GoneUpstream).data());
        assert_eq!(status(&gone), StatusCode::OK);
        assert!(
            matches!(&gone, Outcome::Done(d) if d["deletedUpstream"] == true),
            "{gone:?}"
        );
        // Still listed (or the listing could not be read): redelivered later, never acked.
        let listed = Outcome::from_handler(HandlerError::ListedButMissing("a".into()));
        assert_eq!(status(&listed), StatusCode::BAD_GATEWAY);
        assert_eq!(retry_after(&listed), Some(10));
    }

    #[test]
    fn only_a_rate_limited_give_up_is_throttled() {
        let gave_up = |rate_limited| {
            Outcome::from_handler(HandlerError::Fetch(FetchError::GaveUp {
                what: "x".into(),
                attempts: 8,
                last: "connection reset (port 4290)".into(),
                rate_limited,
            }))
        };
        assert_eq!(status(&gave_up(true)), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status(&gave_up(false)), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn only_store_errors_that_can_heal_are_a_dependency_to_wait_for() {
        let store = |e: StoreError| Outcome::from_handler(HandlerError::Store(e));
        let down = store(StoreError::Unavailable {
            key: "k".into(),
            reason: "connection refused".into(),
        });
        assert!(matches!(down, Outcome::Dependency(_)), "{down:?}");
        let corrupt = store(StoreError::Corrupt {
            key: "k".into(),
            reason: "integrity mismatch".into(),
        });
        assert!(matches!(corrupt, Outcome::Internal(_)), "{corrupt:?}");
        assert!(matches!(store(StoreError::Prefix("x".into())), Outcome::Internal(_)));
    }

    #[test]
    fn response_carries_retry_after_and_a_json_error() {
        let resp = response(&Outcome::Throttled(Duration::from_secs(7)));
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }
}
