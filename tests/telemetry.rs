//! OpenTelemetry export from the real binary: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the
//! metrics of a run reach the collector when the process exits (the final flush, after the async
//! runtime is gone); without it, nothing is sent, even to a per-signal endpoint.
//!
//! The collector is a stand-in on 127.0.0.1 that answers every request 200 and records it.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::{all_docs, assert_ok, Sim, TempDir};

/// One request the collector stand-in received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// An OTLP/HTTP collector stand-in: records every request and answers it with an empty 200.
struct Collector {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        let url = format!("http://{}", listener.local_addr().expect("collector address"));
        assert!(url.starts_with("http://127.0.0.1:"), "tests stay on loopback: {url}");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        // The thread lives as long as the test process; the listener is never closed.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Collector { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        sink.lock().unwrap().push(Received {
            method,
            path,
            content_type,
            body,
        });
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs `replicate` of a simulator of `packages` to the end, with each OTLP variable in `vars`
/// set (`Some`) or removed (`None`).
fn replicate_with(packages: &str, vars: &[(&str, Option<&str>)]) {
    let sim = Sim::start(&["--packages", packages], &[]);
    let store = TempDir::new("otlp");
    let mut cmd = all_docs(store.path(), &sim, &["replicate"]);
    for (name, value) in vars {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().expect("run all-docs replicate");
    assert_ok(&out, &format!("replicate with {vars:?}"));
}

#[test]
fn a_run_exports_its_metrics_to_the_otlp_endpoint_before_it_exits() {
    let collector = Collector::start();
    replicate_with(
        "200",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", Some(&collector.url)),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", None),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
        ],
    );

    // The periodic reader's interval (60 s) is far longer than the run: these metrics can only
    // have come from the flush when the process stopped.
    let received = collector.received();
    let metrics: Vec<&Received> = received.iter().filter(|r| r.path == "/v1/metrics").collect();
    assert!(
        !metrics.is_empty(),
        "no POST /v1/metrics; the collector saw {received:?}"
    );
    for r in &metrics {
        assert_eq!(r.method, "POST");
        assert_eq!(r.content_type, "application/x-protobuf");
    }
    // Protobuf keeps strings as they are: the service name and the instruments are readable.
    let bodies: Vec<u8> = metrics.iter().flat_map(|r| r.body.iter().copied()).collect();
    assert!(contains(&bodies, b"all-docs"), "service.name missing");
    assert!(contains(&bodies, b"all_docs.bytes"), "the bytes counter missing");
    assert!(
        received
            .iter()
            .all(|r| r.path == "/v1/metrics" || r.path == "/v1/traces"),
        "{received:?}"
    );
}

#[test]
fn without_otel_exporter_otlp_endpoint_nothing_is_sent() {
    let collector = Collector::start();
    // A per-signal endpoint alone does not turn export on.
    let metrics = format!("{}/v1/metrics", collector.url);
    replicate_with(
        "50",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", Some(&metrics)),
        ],
    );
    assert!(collector.received().is_empty(), "{:?}", collector.received());
}
