//! The trace context a request arrives with: W3C `traceparent`, or Google's
//! `X-Cloud-Trace-Context` when that is all the caller sent.
//!
//! Parsing is pure (a malformed header or an all-zero id counts as absent, never as an error:
//! a bad header from a caller must not fail the request). [`set_remote_parent`] is the one
//! place the result meets OpenTelemetry, so that the exported trace is the one the logs name.

use axum::http::HeaderMap;
/// A trace context from a request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteTrace {
    /// 32 lowercase hex digits, not all zero.
    trace_id: String,
    /// The caller's span id, as the header gave it (16 hex digits, or decimal for
    /// `X-Cloud-Trace-Context`).
    span_id: Option<String>,
    /// The same span id as OpenTelemetry's bytes.
    otel_span_id: Option<[u8; 8]>,
    sampled: bool,
}

/// The trace id (32 lowercase hex digits) and the caller's span id of a request, from W3C
/// `traceparent` (`00-<trace id>-<span id, 16 hex>-<flags>`) or, failing that, from
/// `X-Cloud-Trace-Context` (`<trace id>/<span id, decimal>;o=1`; the span id is kept in
/// decimal, as given). Malformed headers and all-zero ids count as absent.
pub fn trace_id_from_headers(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    remote_trace(headers).map(|t| (t.trace_id, t.span_id))
}

fn remote_trace(headers: &HeaderMap) -> Option<RemoteTrace> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("traceparent")
        .and_then(parse_traceparent)
        .or_else(|| header("x-cloud-trace-context").and_then(parse_cloud_trace_context))
}

/// Makes `span` the child of the request's caller in OpenTelemetry, so that the exported trace
/// is the one the logs name. Does nothing when OpenTelemetry is off or the request carries no
/// usable trace context.
pub fn set_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let Some(remote) = remote_trace(headers) else {
        return;
    };
    let (Ok(trace_id), Some(span_id)) = (TraceId::from_hex(&remote.trace_id), remote.otel_span_id) else {
        return;
    };
    let flags = if remote.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let parent = SpanContext::new(
        trace_id,
        SpanId::from_bytes(span_id),
        flags,
        true,
        TraceState::default(),
    );
    // An error only means that no OpenTelemetry layer is installed: nothing to link.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// W3C Trace Context `traceparent`. Version `00` has exactly four parts; later versions may
/// append more, which are ignored; `ff` is invalid.
fn parse_traceparent(value: &str) -> Option<RemoteTrace> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = is_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && is_hex(trace_id, 32)
        && !all_zero(trace_id)
        && is_hex(span_id, 16)
        && !all_zero(span_id)
        && is_hex(flags, 2);
    if !valid {
        return None;
    }
    Some(RemoteTrace {
        trace_id: trace_id.to_owned(),
        span_id: Some(span_id.to_owned()),
        otel_span_id: u64::from_str_radix(span_id, 16).ok().map(u64::to_be_bytes),
        sampled: u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1),
    })
}

/// Google's `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS`, where the span id is an
/// unsigned decimal and `o=1` means sampled. A bad span id leaves the trace id usable.
fn parse_cloud_trace_context(value: &str) -> Option<RemoteTrace> {
    let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
    let (trace_id, span_id) = match ids.split_once('/') {
        Some((t, s)) => (t, Some(s)),
        None => (ids, None),
    };
    let trace_id = trace_id.to_ascii_lowercase();
    if !is_hex(&trace_id, 32) || all_zero(&trace_id) {
        return None;
    }
    let span = span_id
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok().filter(|&n| n != 0).map(|n| (s, n)));
    Some(RemoteTrace {
        trace_id,
        span_id: span.map(|(s, _)| s.to_owned()),
        otel_span_id: span.map(|(_, n)| n.to_be_bytes()),
        sampled: options.split(';').any(|o| o.trim() == "o=1"),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn traceparent_gives_the_trace_and_span_ids() {
        let h = headers(&[("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))]);
        assert_eq!(
            trace_id_from_headers(&h),
            Some((TRACE.to_owned(), Some("00f067aa0ba902b7".to_owned())))
        );
        let remote = remote_trace(&h).unwrap();
        assert!(remote.sampled);
        assert_eq!(remote.otel_span_id, Some(0x00f0_67aa_0ba9_02b7u64.to_be_bytes()));
        let unsampled = remote_trace(&headers(&[("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-00"))]));
        assert!(!unsampled.unwrap().sampled);
        // A later version may append fields.
        let v1 = headers(&[("traceparent", &format!("01-{TRACE}-00f067aa0ba902b7-01-more"))]);
        assert_eq!(trace_id_from_headers(&v1).map(|t| t.0), Some(TRACE.to_owned()));
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
            format!("00-{TRACE}-00f067aa0ba902b7"),
            format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", &TRACE[1..]),
            format!("00-{TRACE}-00f067aa0ba902bz-01"),
            format!("00-{TRACE}-00f067aa0ba902b7-1"),
            String::new(),
            "garbage".to_owned(),
        ] {
            assert_eq!(
                trace_id_from_headers(&headers(&[("traceparent", &bad)])),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cloud_trace_context_keeps_the_decimal_span_id() {
        let h = headers(&[("x-cloud-trace-context", &format!("{TRACE}/2205310701640571284;o=1"))]);
        assert_eq!(
            trace_id_from_headers(&h),
            Some((TRACE.to_owned(), Some("2205310701640571284".to_owned())))
        );
        let remote = remote_trace(&h).unwrap();
        assert!(remote.sampled);
        assert_eq!(remote.otel_span_id, Some(2205310701640571284u64.to_be_bytes()));

        let no_span = headers(&[("x-cloud-trace-context", &TRACE.to_uppercase())]);
        assert_eq!(trace_id_from_headers(&no_span), Some((TRACE.to_owned(), None)));
        assert!(!remote_trace(&no_span).unwrap().sampled);
        let bad_span = headers(&[("x-cloud-trace-context", &format!("{TRACE}/12ab;o=0"))]);
        assert_eq!(trace_id_from_headers(&bad_span), Some((TRACE.to_owned(), None)));
    }

    #[test]
    fn invalid_cloud_trace_contexts_are_ignored() {
        for bad in [
            format!("{}/1;o=1", "0".repeat(32)),
            "abc/1;o=1".to_owned(),
            ";o=1".to_owned(),
            String::new(),
        ] {
            let h = headers(&[("x-cloud-trace-context", &bad)]);
            assert_eq!(trace_id_from_headers(&h), None, "{bad:?}");
        }
    }

    #[test]
    fn traceparent_wins_over_cloud_trace_context() {
        let other = "0af7651916cd43dd8448eb211c80319c";
        let both = headers(&[
            ("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01")),
            ("x-cloud-trace-context", &format!("{other}/1;o=1")),
        ]);
        assert_eq!(trace_id_from_headers(&both).map(|t| t.0), Some(TRACE.to_owned()));
        // An invalid traceparent falls back to the other header.
        let fallback = headers(&[
            ("traceparent", "00-bad"),
            ("x-cloud-trace-context", &format!("{other}/1;o=1")),
        ]);
        assert_eq!(
            trace_id_from_headers(&fallback),
            Some((other.to_owned(), Some("1".to_owned())))
        );
        assert_eq!(trace_id_from_headers(&HeaderMap::new()), None);
    }
}
