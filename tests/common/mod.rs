//! Helpers shared by the black-box tests: the `all-docs` binary and a simulator process.
#![allow(dead_code)]

pub mod cloud;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_all-docs");

/// A fresh folder under the temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        // Tests of one binary share a process id: a counter keeps their folders apart.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("all-docs-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp dir")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `all-docs ARGS` (a command and its arguments) with `--store STORE`, both origins at the
/// simulator, and quiet.
pub fn all_docs(store: &Path, sim: &Sim, args: &[&str]) -> Command {
    all_docs_saying(store, sim, &[args, &["-q"]].concat())
}

/// [`all_docs`] without `-q`: the command's summary (`done in ...`) is on stderr.
pub fn all_docs_saying(store: &Path, sim: &Sim, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--store")
        .arg(store)
        .args(["--replicate-origin", &sim.url, "--registry-origin", &sim.url])
        .env_remove("ALL_DOCS_MAX_RPS")
        .env_remove("ALL_DOCS_CONCURRENCY");
    cmd
}

pub fn run(store: &Path, sim: &Sim, args: &[&str]) -> Output {
    all_docs(store, sim, args).output().expect("run all-docs")
}

/// `cache create-index` of the replica at `store` (empty while the store has none).
pub fn index_of(store: &Path, sim: &Sim) -> String {
    String::from_utf8_lossy(&run(store, sim, &["cache", "create-index"]).stdout).into_owned()
}

/// Asserts a command succeeded, showing its stderr if not.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The replica's index equals the simulator's truth, and every entry verifies.
pub fn assert_replica_matches(store: &Path, sim: &Sim) {
    assert_index_is(store, sim, &sim.truth());
}

/// The replica's index equals `truth` (`--dump-index` format), and every entry verifies.
pub fn assert_index_is(store: &Path, sim: &Sim, truth: &str) {
    let index = run(store, sim, &["cache", "create-index"]);
    assert_ok(&index, "cache create-index");
    let ours = String::from_utf8(index.stdout).unwrap();
    if ours != truth {
        let a: std::collections::BTreeSet<&str> = ours.lines().collect();
        let b: std::collections::BTreeSet<&str> = truth.lines().collect();
        let missing: Vec<_> = b.difference(&a).take(5).collect();
        let extra: Vec<_> = a.difference(&b).take(5).collect();
        panic!(
            "replica differs from the truth: {} vs {} lines; missing {missing:?}; extra {extra:?}",
            a.len(),
            b.len()
        );
    }
    let validate = run(store, sim, &["cache", "validate"]);
    assert_ok(&validate, "cache validate");
}

/// A simulator process; stopped on drop.
pub struct Sim {
    pub url: String,
    pub child: Child,
    corpus: Vec<String>,
}

impl Sim {
    pub fn start(corpus: &[&str], extra: &[&str]) -> Sim {
        Sim::start_on(0, corpus, extra)
    }

    pub fn start_on(port: u16, corpus: &[&str], extra: &[&str]) -> Sim {
        if port == 0 {
            return Sim::start_with(&[&["--port", "0"], corpus, extra].concat(), corpus);
        }
        Sim::start_with(&[&["--port", &port.to_string()], corpus, extra].concat(), corpus)
    }

    /// Starts `all-docs sim ARGS`; `corpus` is what `truth` repeats for `--dump-index`.
    pub fn start_with(args: &[&str], corpus: &[&str]) -> Sim {
        let mut child = Command::new(BIN)
            .args(["sim", "-q"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the simulator");
        let url = listening_url(&mut child);
        assert!(url.starts_with("http://127.0.0.1:"), "tests stay on loopback: {url}");
        Sim {
            url,
            child,
            corpus: corpus.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `sim --dump-index` for the same corpus.
    pub fn truth(&self) -> String {
        let out = Command::new(BIN)
            .args(["sim", "--dump-index"])
            .args(&self.corpus)
            .output()
            .expect("dump-index");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    pub fn stats(&self) -> serde_json::Value {
        http("GET", &format!("{}/-/sim/stats", self.url))
    }

    /// The current truth of a changing simulator (`GET /-/sim/index`, `--dump-index` format).
    pub fn live_truth(&self) -> String {
        get_text(&format!("{}/-/sim/index", self.url))
    }

    /// Stops (`false`) or restarts (`true`) the simulator's stream of changes.
    pub fn changes(&self, on: bool) {
        let route = if on { "resume-changes" } else { "pause-changes" };
        http("POST", &format!("{}/-/sim/{route}", self.url));
    }

    pub fn reset_stats(&self) {
        http("POST", &format!("{}/-/sim/reset-stats", self.url));
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny blocking HTTP/1.1 client for the simulator's control routes (no proxies, loopback).
pub fn http(method: &str, url: &str) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// GETs a loopback URL and returns its body as text (any transfer encoding).
pub fn get_text(url: &str) -> String {
    assert!(url.starts_with("http://127.0.0.1:"), "tests stay on loopback: {url}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let resp = client.get(url).send().await.expect("GET");
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.text().await.expect("body")
    })
}

/// The URL a server child prints first on stdout (`listening on URL`), once it is ready.
pub fn listening_url(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the first line");
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("`listening on URL` first, got {line:?}"))
        .to_owned()
}

/// `s` with every byte but the unreserved ones (RFC 3986) percent-encoded.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts a command failed as bad input: exit code 2, a message containing `needle`, no panic.
pub fn assert_usage_error(out: &std::process::Output, needle: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert!(stderr.contains(needle), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
