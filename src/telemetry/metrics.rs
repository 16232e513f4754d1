//! The metric instruments and the `record_*` functions the rest of the crate calls.
//!
//! They go through OpenTelemetry's global meter, so they cost next to nothing and send nothing
//! when export is off (the global meter is then a no-op).

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Gauge, Histogram};
use opentelemetry::KeyValue;

use super::SERVICE_NAME;

/// The instruments, created on first use from the global meter: after
/// [`init`](super::init), so that they belong to the exporting provider when there is one,
/// and are no-ops otherwise.
struct Instruments {
    items: Counter<u64>,
    item_duration: Histogram<f64>,
    throttled: Counter<u64>,
    bytes: Counter<u64>,
    lag_seqs: Gauge<u64>,
    lag_secs: Gauge<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter(SERVICE_NAME);
        Instruments {
            items: meter
                .u64_counter("all_docs.items")
                .with_description("Work items handled, by kind and outcome")
                .build(),
            item_duration: meter
                .f64_histogram("all_docs.item.duration")
                .with_description("Time to handle one work item")
                .with_unit("s")
                // Seconds, from a 304 answered at once to a partition listed near the budget.
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ])
                .build(),
            throttled: meter
                .u64_counter("all_docs.upstream.throttled")
                .with_description("Upstream answers that asked us to slow down (429, or 503 with Retry-After)")
                .build(),
            bytes: meter
                .u64_counter("all_docs.bytes")
                .with_description("Body bytes received from the upstream")
                .with_unit("By")
                .build(),
            lag_seqs: meter
                .u64_gauge("all_docs.follow.lag_seqs")
                .with_description("Change-feed sequence numbers the replica is behind the upstream")
                .build(),
            lag_secs: meter
                .f64_gauge("all_docs.follow.lag")
                .with_description("Age of the oldest change the replica may be missing")
                .with_unit("s")
                .build(),
        }
    })
}

/// One work item handled: `kind` is `partition-set`, `partition` or `packument`, `outcome` an
/// outcome label (`ok`, `retry`, `rejected`, `error`).
pub fn record_item(kind: &str, outcome: &str, elapsed: Duration) {
    let i = instruments();
    let attributes = [
        KeyValue::new("kind", kind.to_owned()),
        KeyValue::new("outcome", outcome.to_owned()),
    ];
    i.items.add(1, &attributes);
    i.item_duration.record(elapsed.as_secs_f64(), &attributes);
}

/// The upstream `origin_id` asked us to slow down.
pub fn record_upstream_429(origin_id: &str) {
    instruments()
        .throttled
        .add(1, &[KeyValue::new("origin", origin_id.to_owned())]);
}

/// How far the replica is behind the change feed (`lag_secs` when known).
pub fn record_follow_lag(lag_seqs: u64, lag_secs: Option<f64>) {
    let i = instruments();
    i.lag_seqs.record(lag_seqs, &[]);
    if let Some(s) = lag_secs {
        i.lag_secs.record(s, &[]);
    }
}

/// `n` body bytes of a `kind` response received from the upstream.
pub fn record_bytes(kind: &str, n: u64) {
    instruments().bytes.add(n, &[KeyValue::new("kind", kind.to_owned())]);
}
