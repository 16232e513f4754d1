//! Log lines in Cloud Logging's structured JSON format ([`CloudLogging`]), for `--log-format
//! json`: what Cloud Run's log agent reads from stderr.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// JSON lines in Cloud Logging's format, written to `writer`.
pub(super) fn json_layer<S, W>(project: Option<String>, writer: W) -> impl Layer<S> + Send + Sync
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

    use parking_lot::Mutex;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

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
}
