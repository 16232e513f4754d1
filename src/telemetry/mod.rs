//! Logs, traces and metrics.
//!
//! - Logs go to stderr, so stdout stays for results: human text, or JSON lines in Cloud
//!   Logging's structured format ([`CloudLogging`]): `severity`, `message`, `time`, the
//!   event's fields at the top level, and `logging.googleapis.com/trace` when the event happens
//!   inside a request that carried a trace (a span with a `trace_id` field, see
//!   [`trace_id_from_headers`]).
//! - Traces and metrics are exported over OTLP/HTTP (protobuf) only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set. When it is not, nothing is installed: no exporter,
//!   no background thread, nothing sent, and the metric functions ([`record_item`] and
//!   friends) fall through OpenTelemetry's global no-op meter.
//!
//! This module never decides anything about the work; it only reports it. [`init`] is called
//! once, first thing in `main`, and its [`Telemetry`] guard lives until the process exits.
//!
//! One concern per file: `cloud_logging` (the JSON log format), `trace_context` (the trace a
//! request arrives with), `metrics` (the instruments and `record_*`), `otel` (the exporters).
//! This file wires them together at start-up.

mod cloud_logging;
mod metrics;
mod otel;
mod trace_context;

use std::fmt;
use std::io::IsTerminal as _;

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

pub use cloud_logging::CloudLogging;
pub use metrics::{record_bytes, record_follow_lag, record_item, record_upstream_429};
pub use trace_context::{set_remote_parent, trace_id_from_headers};

use cloud_logging::json_layer;
use otel::{start_otel, Otel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The OpenTelemetry `service.name` and instrumentation scope.
const SERVICE_NAME: &str = "all-docs";

/// Installs the global subscriber and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the
/// OpenTelemetry exporters. `verbosity` is `-v` count minus `-q` count; `RUST_LOG` overrides
/// it. `GOOGLE_CLOUD_PROJECT` names the project in JSON logs' trace field.
///
/// Keep the returned guard alive until the process exits: dropping it flushes and stops the
/// exporters. A failure to start them is logged once and leaves logging working.
pub fn init(format: LogFormat, verbosity: i8) -> Telemetry {
    let endpoint = non_empty(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok());
    let project = non_empty(std::env::var("GOOGLE_CLOUD_PROJECT").ok());
    let (otel, otel_error) = match start_otel(endpoint.as_deref()) {
        Ok(otel) => (otel, None),
        Err(e) => (None, Some(e)),
    };

    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("all_docs={level},warn")));
    let otel_layer = otel.as_ref().map(|o| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(o.tracer.tracer(SERVICE_NAME))
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer(format, project))
        .with(otel_layer)
        .try_init();

    let endpoint = endpoint.as_deref().unwrap_or("");
    if let Some(e) = otel_error {
        tracing::error!(endpoint, error = %e, "OpenTelemetry export is off: the exporters could not start");
    } else if otel.is_some() {
        tracing::debug!(endpoint, "exporting traces and metrics over OTLP");
    }
    Telemetry { otel }
}

/// An environment value, unless it is unset or blank.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// The log layer for `format`, writing to stderr.
fn fmt_layer<S>(format: LogFormat, project: Option<String>) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        // Text logs show events only, as they always have: the request span exists for the
        // JSON trace field and for OpenTelemetry, and would only prefix every line here.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.is_event()))
            .boxed(),
        LogFormat::Json => json_layer(project, std::io::stderr).boxed(),
    }
}

/// Keeps the OpenTelemetry exporters running; dropping it flushes them and stops them.
#[must_use = "dropping the guard stops OpenTelemetry export at once"]
pub struct Telemetry {
    otel: Option<Otel>,
}

impl Telemetry {
    /// Whether traces and metrics are being exported.
    pub fn exporting(&self) -> bool {
        self.otel.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(otel) = self.otel.take() {
            otel.shutdown();
        }
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.exporting())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn without_an_endpoint_nothing_is_exported() {
        // `init` installs a process-wide subscriber, so the test checks the decision it makes
        // from the environment rather than calling it.
        assert_eq!(non_empty(None), None);
        assert_eq!(non_empty(Some(" ".to_owned())), None);
        assert_eq!(
            non_empty(Some("http://127.0.0.1:4318".to_owned())).as_deref(),
            Some("http://127.0.0.1:4318")
        );
        let guard = Telemetry {
            otel: start_otel(None).unwrap(),
        };
        assert!(!guard.exporting());
        drop(guard);
        // The metric functions are then no-ops on the global no-op meter.
        record_item("packument", "ok", Duration::from_millis(5));
        record_upstream_429("registry");
        record_bytes("packument", 1_234);
    }
}
