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

use std::fmt;
use std::future::Future;
use std::io::IsTerminal as _;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The OpenTelemetry `service.name` and instrumentation scope.
const SERVICE_NAME: &str = "all-docs";

/// How long the exporters get to send what they buffered when the process ends.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The exporters when an OTLP endpoint is configured; nothing at all otherwise.
fn start_otel(endpoint: Option<&str>) -> Result<Option<Otel>, OtelError> {
    match endpoint {
        Some(_) => Otel::start().map(Some),
        None => Ok(None),
    }
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

/// JSON lines in Cloud Logging's format, written to `writer`.
fn json_layer<S, W>(project: Option<String>, writer: W) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Span fields are kept as JSON so that the event formatter can read them back.
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(CloudLogging { project })
        .with_writer(writer)
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

// ---------------------------------------------------------------------------------------------
// OpenTelemetry export

/// Why the exporters could not start.
#[derive(Debug, thiserror::Error)]
enum OtelError {
    #[error("cannot start the OpenTelemetry export runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        signal: &'static str,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The providers, and the runtime their HTTP client runs on.
///
/// The SDK's batch span processor and periodic metric reader export from their own threads
/// with a plain executor, but the OTLP exporter's HTTP client (async `reqwest`) needs a tokio
/// reactor. So exports run inside a small runtime of their own ([`OnRuntime`]), which also
/// outlives the application's runtime, so that the final flush at exit still works.
struct Otel {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    runtime: tokio::runtime::Runtime,
}

impl Otel {
    /// Builds the exporters; they read `OTEL_EXPORTER_OTLP_*` themselves (endpoint, per-signal
    /// endpoints, headers, timeout).
    fn start() -> Result<Otel, OtelError> {
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otel-export")
            .enable_all()
            .build()
            .map_err(OtelError::Runtime)?;
        let handle = runtime.handle().clone();
        let entered = runtime.enter();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(|source| OtelError::Exporter {
                signal: "trace",
                source,
            })?;
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(|source| OtelError::Exporter {
                signal: "metrics",
                source,
            })?;
        let resource = Resource::builder().with_service_name(SERVICE_NAME).build();
        let tracer = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(OnRuntime::new(spans, handle.clone()))
            .build();
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(OnRuntime::new(metrics, handle)).build();
        let meter = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        opentelemetry::global::set_meter_provider(meter.clone());
        opentelemetry::global::set_tracer_provider(tracer.clone());
        drop(entered);
        Ok(Otel { tracer, meter, runtime })
    }

    /// Flushes and stops both providers, then the export runtime.
    fn shutdown(self) {
        if let Err(e) = self.tracer.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "OpenTelemetry: flushing traces at exit failed");
        }
        if let Err(e) = self.meter.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "OpenTelemetry: flushing metrics at exit failed");
        }
        // The providers have stopped exporting; nothing is left to wait for.
        self.runtime.shutdown_background();
    }
}

/// An exporter whose exports run inside a tokio runtime, whoever polls them.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    handle: tokio::runtime::Handle,
}

impl<E> OnRuntime<E> {
    fn new(inner: E, handle: tokio::runtime::Handle) -> OnRuntime<E> {
        OnRuntime { inner, handle }
    }

    fn run<F: Future>(&self, fut: F) -> InRuntime<F> {
        InRuntime {
            handle: self.handle.clone(),
            fut: Box::pin(fut),
        }
    }
}

/// Enters the runtime for every poll: the I/O and timers the future registers then belong to
/// that runtime, whose worker drives them and wakes this future's waker.
struct InRuntime<F> {
    handle: tokio::runtime::Handle,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.run(self.inner.export(batch))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        self.run(self.inner.export(metrics))
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The instruments, created on first use from the global meter: after [`init`], so that they
/// belong to the exporting provider when there is one, and are no-ops otherwise.
struct Instruments {
    items: Counter<u64>,
    item_duration: Histogram<f64>,
    throttled: Counter<u64>,
    bytes: Counter<u64>,
    lag_seqs: opentelemetry::metrics::Gauge<u64>,
    lag_secs: opentelemetry::metrics::Gauge<f64>,
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

// ---------------------------------------------------------------------------------------------
// Incoming trace context

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

// ---------------------------------------------------------------------------------------------
// Cloud Logging JSON

/// The JSON keys Cloud Logging reads. An event field with one of these names is dropped
/// rather than written twice.
const TRACE_KEY: &str = "logging.googleapis.com/trace";
const SPAN_ID_KEY: &str = "logging.googleapis.com/spanId";
const SOURCE_LOCATION_KEY: &str = "logging.googleapis.com/sourceLocation";
const RESERVED: [&str; 7] = [
    "severity",
    "message",
    "time",
    "target",
    TRACE_KEY,
    SPAN_ID_KEY,
    SOURCE_LOCATION_KEY,
];

/// Formats each event as one JSON object on one line, in Cloud Logging's structured format:
/// `severity`, `time` (RFC 3339), `message`, the fields of the enclosing spans and then of the
/// event at the top level, `target`, `logging.googleapis.com/sourceLocation`, and, when a
/// span records a `trace_id` (and maybe a `span_id`), `logging.googleapis.com/trace` (as
/// `projects/{project}/traces/{id}`, or the bare id when the project is unknown) and
/// `logging.googleapis.com/spanId`.
///
/// Works with [`JsonFields`] only, which keeps span fields as JSON to be read back here.
#[derive(Debug, Clone, Default)]
pub struct CloudLogging {
    /// The Google Cloud project the trace ids belong to.
    pub project: Option<String>,
}

impl<S> FormatEvent<S, JsonFields> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        let mut trace: Option<(String, Option<String>)> = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(&formatted.fields) else {
                    continue;
                };
                // The innermost span with a trace id decides the trace.
                if let Some(Value::String(id)) = map.remove("trace_id") {
                    let span_id = match map.remove("span_id") {
                        Some(Value::String(s)) => Some(s),
                        Some(v @ Value::Number(_)) => Some(v.to_string()),
                        _ => None,
                    };
                    trace = Some((id, span_id));
                }
                fields.extend(map);
            }
        }
        let mut visitor = FieldVisitor {
            fields: &mut fields,
            message: None,
            log: LogMeta::default(),
        };
        event.record(&mut visitor);
        let FieldVisitor { message, log, .. } = visitor;

        let meta = event.metadata();
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut line = JsonLine::default();
        line.entry("severity", &Value::from(severity(meta.level())));
        line.entry("time", &Value::from(time));
        if let Some(message) = message {
            line.entry("message", &Value::from(message));
        }
        for (key, value) in &fields {
            if !RESERVED.contains(&key.as_str()) {
                line.entry(key, value);
            }
        }
        line.entry("target", &Value::from(log.target.as_deref().unwrap_or(meta.target())));
        let file = log.file.as_deref().or(meta.file());
        if let (Some(file), Some(number)) = (file, log.line.or(meta.line().map(u64::from))) {
            let mut location = Map::new();
            location.insert("file".into(), file.into());
            // A string, as in the LogEntrySourceLocation's JSON form (an int64).
            location.insert("line".into(), number.to_string().into());
            if let Some(module) = meta.module_path() {
                location.insert("function".into(), module.into());
            }
            line.entry(SOURCE_LOCATION_KEY, &Value::Object(location));
        }
        if let Some((trace_id, span_id)) = trace {
            let trace = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace_id}"),
                None => trace_id,
            };
            line.entry(TRACE_KEY, &Value::from(trace));
            if let Some(span_id) = span_id {
                line.entry(SPAN_ID_KEY, &Value::from(span_id));
            }
        }
        writeln!(writer, "{}}}", line.0)
    }
}

/// Cloud Logging's `LogSeverity` names.
fn severity(level: &Level) -> &'static str {
    match *level {
        Level::TRACE | Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// A JSON object written key by key, so that `severity`, `time` and `message` come first
/// (a `serde_json::Map` would sort them).
#[derive(Default)]
struct JsonLine(String);

impl JsonLine {
    fn entry(&mut self, key: &str, value: &Value) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        // Serialising a string or a `Value` cannot fail.
        self.0.push_str(&serde_json::to_string(key).unwrap_or_default());
        self.0.push(':');
        self.0.push_str(&serde_json::to_string(value).unwrap_or_default());
    }
}

/// Where an event bridged from the `log` crate really comes from (its metadata names the
/// bridge).
#[derive(Default)]
struct LogMeta {
    target: Option<String>,
    file: Option<String>,
    line: Option<u64>,
}

/// Collects an event's fields as JSON values, the message apart.
struct FieldVisitor<'a> {
    fields: &'a mut Map<String, Value>,
    message: Option<String>,
    log: LogMeta,
}

impl FieldVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = Some(match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            }
            "log.target" => self.log.target = value.as_str().map(str::to_owned),
            "log.file" => self.log.file = value.as_str().map(str::to_owned),
            "log.line" => self.log.line = value.as_u64(),
            "log.module_path" => {}
            name => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value).map_or_else(|| Value::from(value.to_string()), Value::Number);
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::HeaderValue;
    use parking_lot::Mutex;

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

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<Value> {
            let bytes = self.0.lock().clone();
            let text = String::from_utf8(bytes).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    /// Runs `f` with the JSON formatter installed, and returns the lines it logged.
    fn logged(project: Option<&str>, f: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(json_layer(project.map(str::to_owned), move || sink.clone()));
        tracing::subscriber::with_default(subscriber, f);
        buffer.lines()
    }

    #[test]
    fn json_lines_follow_cloud_logging() {
        let lines = logged(Some("my-project"), || {
            let span = tracing::info_span!(
                "push",
                kind = "packument",
                trace_id = TRACE,
                span_id = "2205310701640571284"
            );
            let _entered = span.enter();
            tracing::warn!(
                message_id = "m-1",
                status = 429u16,
                delivery_attempt = 3i64,
                ratio = 0.5,
                retried = true,
                error = %"rate limited",
                "not done: {}",
                "Pub/Sub will redeliver"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert_eq!(l["severity"], "WARNING");
        assert_eq!(l["message"], "not done: Pub/Sub will redeliver");
        assert_eq!(l[TRACE_KEY], format!("projects/my-project/traces/{TRACE}"));
        assert_eq!(l[SPAN_ID_KEY], "2205310701640571284");
        assert_eq!(l["message_id"], "m-1");
        assert_eq!(l["status"].as_u64(), Some(429));
        assert_eq!(l["delivery_attempt"], 3);
        assert_eq!(l["ratio"], 0.5);
        assert_eq!(l["retried"], true);
        assert_eq!(l["error"], "rate limited");
        // Span fields are flattened too; the trace ids are not repeated as plain fields.
        assert_eq!(l["kind"], "packument");
        assert!(l.get("trace_id").is_none() && l.get("span_id").is_none(), "{l}");
        assert_eq!(l["target"], module_path!());
        assert_eq!(l[SOURCE_LOCATION_KEY]["file"], file!());
        assert!(l[SOURCE_LOCATION_KEY]["line"]
            .as_str()
            .is_some_and(|n| n.parse::<u32>().is_ok()));
        let time = l["time"].as_str().unwrap();
        assert!(
            time.len() == 27 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "{time}"
        );
    }

    #[test]
    fn severities_map_to_cloud_logging_names() {
        let lines = logged(None, || {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
            tracing::trace!("t");
        });
        let severities: Vec<&str> = lines.iter().map(|l| l["severity"].as_str().unwrap()).collect();
        assert_eq!(severities, ["ERROR", "WARNING", "INFO", "DEBUG", "DEBUG"]);
    }

    #[test]
    fn the_trace_is_bare_without_a_project_and_absent_without_a_span() {
        let lines = logged(None, || {
            tracing::info_span!("push", kind = "partition", trace_id = TRACE).in_scope(|| tracing::info!("inside"));
            let none: Option<&str> = None;
            tracing::info_span!("push", kind = "partition", trace_id = none).in_scope(|| tracing::info!("untraced"));
            tracing::info!(message_id = "m-2", "outside");
        });
        assert_eq!(lines[0][TRACE_KEY], TRACE);
        assert!(lines[0].get(SPAN_ID_KEY).is_none());
        assert!(lines[1].get(TRACE_KEY).is_none(), "{}", lines[1]);
        assert_eq!(lines[1]["kind"], "partition");
        assert!(lines[2].get(TRACE_KEY).is_none() && lines[2].get("kind").is_none());
        assert_eq!(lines[2]["message_id"], "m-2");
    }

    #[test]
    fn event_fields_override_span_fields_and_reserved_names_are_not_repeated() {
        let lines = logged(None, || {
            tracing::info_span!("push", kind = "partition").in_scope(|| {
                tracing::info!(kind = "packument", severity = "fake", time = 1, "x");
            });
        });
        let l = &lines[0];
        assert_eq!(l["kind"], "packument");
        assert_eq!(l["severity"], "INFO");
        assert!(l["time"].is_string());
        let text = serde_json::to_string(l).unwrap();
        assert_eq!(text.matches("\"severity\"").count(), 1);
    }

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
