//! OpenTelemetry export over OTLP/HTTP (protobuf): the tracer and meter providers, started only
//! when an endpoint is configured, and their flush at exit.
//!
//! Exports never run on the application's tokio runtime. The SDK's batch span processor and
//! periodic metric reader each export from a thread of their own, outside any runtime, so the
//! exporters use `reqwest`'s blocking client (`opentelemetry-otlp`'s `reqwest-blocking-client`
//! feature). That client panics if it is called from inside a runtime; nothing here calls it
//! so: recording a span or a metric only queues it, and [`Otel::shutdown`] only asks those
//! threads to export what is left and waits for their answer. `main` drops the guard after
//! the runtime has stopped, so the final flush still happens.

use std::time::Duration;

use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
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
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        signal: &'static str,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The tracer and meter providers, installed as OpenTelemetry's globals.
pub(super) struct Otel {
    pub(super) tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Otel {
    /// Builds the exporters; they read `OTEL_EXPORTER_OTLP_*` themselves (endpoint, per-signal
    /// endpoints, headers, timeout).
    fn start() -> Result<Otel, OtelError> {
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};
        // The exporters build their blocking HTTP client on a thread of its own, so this works
        // from inside a runtime too (though `init` runs before there is one).
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
            .with_batch_exporter(spans)
            .build();
        let meter = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(PeriodicReader::builder(metrics).build())
            .build();
        opentelemetry::global::set_meter_provider(meter.clone());
        opentelemetry::global::set_tracer_provider(tracer.clone());
        Ok(Otel { tracer, meter })
    }

    /// Exports what is buffered and stops both providers, waiting at most [`SHUTDOWN_TIMEOUT`]
    /// for each.
    pub(super) fn shutdown(self) {
        if let Err(e) = self.tracer.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "OpenTelemetry: flushing traces at exit failed");
        }
        if let Err(e) = self.meter.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "OpenTelemetry: flushing metrics at exit failed");
        }
    }
}
