//! OpenTelemetry export over OTLP/HTTP: the tracer and meter providers, started only when an
//! endpoint is configured, and their flush at exit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::SERVICE_NAME;

/// How long the exporters get to send what they buffered when the process ends.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The exporters when an OTLP endpoint is configured; nothing at all otherwise.
pub(super) fn start_otel(endpoint: Option<&str>) -> Result<Option<Otel>, OtelError> {
    match endpoint {
        Some(_) => Otel::start().map(Some),
        None => Ok(None),
    }
}

/// Why the exporters could not start.
#[derive(Debug, thiserror::Error)]
pub(super) enum OtelError {
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
pub(super) struct Otel {
    pub(super) tracer: SdkTracerProvider,
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
    pub(super) fn shutdown(self) {
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
