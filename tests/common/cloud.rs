//! The cloud pieces for black-box tests, all on 127.0.0.1: the official Pub/Sub emulator,
//! fake-gcs-server, and `all-docs serve`. Each is a process on a free port, stopped on drop.
//! The emulator and fake-gcs-server are found where `scripts/test` puts them (or where
//! `ALL_DOCS_PUBSUB_EMULATOR` / `ALL_DOCS_FAKE_GCS_SERVER` say); a missing one fails the test
//! with the command that installs it.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::BIN;

pub const PROJECT: &str = "all-docs-test";

/// A free TCP port on 127.0.0.1 (released before use; the race is harmless in practice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `integrity` a stored body must carry: `sha256-<base64>`.
pub fn integrity_of(body: &[u8]) -> String {
    use sha2::Digest as _;
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body))
    )
}

/// `sim --dump-index` text as `name -> rev`.
pub fn parse_index(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, r)| (n.to_owned(), r.to_owned()))
        .collect()
}

/// Polls `ok` every 100 ms until it is true or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, ok: impl AsyncFnMut() -> bool) {
    wait_until_or(what, timeout, ok, String::new).await
}

/// [`wait_until`], and on a timeout the panic message carries `explain()`: the state of the
/// pieces, so a run that hangs in CI says why.
pub async fn wait_until_or(
    what: &str,
    timeout: Duration,
    mut ok: impl AsyncFnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let start = Instant::now();
    while !ok().await {
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", explain());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Panics if `child` has exited: a server that lost its port to another process (whose
/// answer then passed for its own). fake-gcs-server fails to bind within milliseconds, well
/// before the first readiness poll has an answer.
fn assert_running(child: &mut Child, what: &str) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!("{what} exited ({status}) right after starting; was its port taken?");
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The official Pub/Sub emulator.
pub struct PubSub {
    pub host: String,
    child: Child,
    http: reqwest::Client,
    /// The emulator's own output (it logs every failed push).
    log: PathBuf,
}

impl PubSub {
    pub async fn start() -> PubSub {
        let path = std::env::var_os("ALL_DOCS_PUBSUB_EMULATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator".into());
        assert!(
            path.exists(),
            "the Pub/Sub emulator is not at {} (install the Google Cloud SDK's pubsub-emulator component, or set ALL_DOCS_PUBSUB_EMULATOR)",
            path.display()
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("all-docs-pubsub-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("the emulator's log file");
        let child = Command::new(&path)
            .args(["--host=127.0.0.1", &format!("--port={port}")])
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("start the Pub/Sub emulator");
        let emulator = PubSub {
            host: format!("127.0.0.1:{port}"),
            child,
            http: http(),
            log,
        };
        // Its own "listening on PORT" line: an answer on the port could come from another
        // test's server that took the port after it was picked.
        let listening = format!("listening on {port}");
        let (url, client) = (format!("http://{}/", emulator.host), emulator.http.clone());
        wait_until_or(
            "the Pub/Sub emulator",
            Duration::from_secs(60),
            async || {
                emulator.log_tail(50).contains(&listening)
                    && client.get(&url).send().await.is_ok_and(|r| r.status().is_success())
            },
            || emulator.log_tail(30),
        )
        .await;
        emulator
    }

    /// Publishes raw `data` to a topic through the emulator's REST API (any client works).
    pub async fn publish_raw(&self, topic: &str, data: &[u8]) {
        let url = format!("http://{}/v1/projects/{PROJECT}/topics/{topic}:publish", self.host);
        let body = json!({"messages": [{"data": base64::engine::general_purpose::STANDARD.encode(data)}]});
        let r = self.http.post(url).json(&body).send().await.expect("publish");
        assert!(r.status().is_success(), "publish: {}", r.status());
    }

    /// Pulls (and acks) up to 100 messages; returns their data.
    pub async fn pull(&self, subscription: &str) -> Vec<Vec<u8>> {
        let base = format!(
            "http://{}/v1/projects/{PROJECT}/subscriptions/{subscription}",
            self.host
        );
        let r: Value = self
            .http
            .post(format!("{base}:pull"))
            .json(&json!({"maxMessages": 100, "returnImmediately": true}))
            .send()
            .await
            .expect("pull")
            .json()
            .await
            .expect("pull JSON");
        let messages = r["receivedMessages"].as_array().cloned().unwrap_or_default();
        let ack_ids: Vec<Value> = messages.iter().map(|m| m["ackId"].clone()).collect();
        if !ack_ids.is_empty() {
            self.http
                .post(format!("{base}:acknowledge"))
                .json(&json!({ "ackIds": ack_ids }))
                .send()
                .await
                .expect("ack");
        }
        messages
            .iter()
            .map(|m| {
                base64::engine::general_purpose::STANDARD
                    .decode(m["message"]["data"].as_str().unwrap_or(""))
                    .expect("base64 data")
            })
            .collect()
    }

    /// `all-docs dev pubsub-setup` against this emulator for a service at `push_url`.
    pub fn setup(&self, push_url: &str, extra: &[&str]) {
        self.run(&[&["dev", "pubsub-setup", "--push-url", push_url], extra].concat());
    }

    /// `all-docs publish ARGS`.
    pub fn publish(&self, args: &[&str]) {
        self.run(&[&["publish"], args].concat());
    }

    /// `all-docs ARGS` against this emulator, which must succeed.
    fn run(&self, args: &[&str]) {
        let out = Command::new(BIN)
            .args(args)
            .env("PUBSUB_EMULATOR_HOST", &self.host)
            .env("GOOGLE_CLOUD_PROJECT", PROJECT)
            .output()
            .expect("run all-docs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl PubSub {
    /// The last `n` lines the emulator printed.
    pub fn log_tail(&self, n: usize) -> String {
        tail(
            &String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()),
            n,
        )
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for PubSub {
    fn drop(&mut self) {
        kill(&mut self.child);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// fake-gcs-server, on a filesystem backend in a temporary folder.
pub struct Gcs {
    pub url: String,
    child: Option<Child>,
    path: PathBuf,
    port: u16,
    root: PathBuf,
    http: reqwest::Client,
}

impl Gcs {
    pub async fn start() -> Gcs {
        let path = std::env::var_os("ALL_DOCS_FAKE_GCS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/fake-gcs-server/fake-gcs-server")
            });
        assert!(
            path.exists(),
            "fake-gcs-server is not at {}: run scripts/install-fake-gcs (scripts/test does)",
            path.display()
        );
        let port = free_port();
        // The filesystem backend, in a fresh folder: the memory backend slows down linearly
        // with the number of objects (each write took ~2 ms more per 1000 objects here, so 20k
        // documents took 8 minutes), the filesystem one stays flat. It also keeps the objects
        // over a restart.
        let root = std::env::temp_dir().join(format!("all-docs-fake-gcs-{}-{port}", std::process::id()));
        let mut gcs = Gcs {
            url: format!("http://127.0.0.1:{port}"),
            child: None,
            path,
            port,
            root,
            http: http(),
        };
        gcs.spawn().await;
        gcs
    }

    /// Starts the server process on this port and root, and waits until it answers.
    async fn spawn(&mut self) {
        let child = Command::new(&self.path)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &self.port.to_string(),
                "-backend",
                "filesystem",
                "-filesystem-root",
                self.root.to_str().expect("UTF-8 temp dir"),
                "-log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake-gcs-server");
        self.child = Some(child);
        let url = format!("{}/storage/v1/b", self.url);
        let client = self.http.clone();
        wait_until("fake-gcs-server", Duration::from_secs(30), async || {
            client.get(&url).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert_running(self.child.as_mut().expect("just spawned"), "fake-gcs-server");
    }

    /// Kills the server (SIGKILL), waits `down`, and starts it again on the same port and data.
    pub async fn restart(&mut self, down: Duration) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
        tokio::time::sleep(down).await;
        self.spawn().await;
    }

    pub async fn create_bucket(&self, name: &str) {
        let r = self
            .http
            .post(format!("{}/storage/v1/b", self.url))
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Every object under `prefix`: name and resource (metadata, generation, size).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .http
                .get(format!("{}/storage/v1/b/{bucket}/o", self.url))
                .query(&[("prefix", prefix), ("maxResults", "1000")]);
            if let Some(t) = &token {
                req = req.query(&[("pageToken", t)]);
            }
            let page: Value = req.send().await.expect("list").json().await.expect("list JSON");
            out.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out
    }

    /// `name -> rev` of a replica in a bucket, read with nothing but the GCS JSON API: object
    /// names end with the hex of the package name, the rev is in the object's metadata.
    pub async fn index(&self, bucket: &str) -> BTreeMap<String, String> {
        let mut index = BTreeMap::new();
        for object in self.list(bucket, "v1/packument/").await {
            let name = object["name"].as_str().expect("object name");
            let hex = name.rsplit('/').next().expect("hex");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex name"))
                .collect();
            let package = String::from_utf8(bytes).expect("UTF-8 name");
            let rev = object["metadata"]["rev"].as_str().unwrap_or("").to_owned();
            index.insert(package, rev);
        }
        index
    }

    /// Asserts every object under `prefix` has the body its `integrity` metadata promises.
    pub async fn assert_integrity(&self, bucket: &str, prefix: &str) {
        for object in self.list(bucket, prefix).await {
            let name = object["name"].as_str().expect("object name");
            let body = self.read(bucket, name).await;
            assert_eq!(
                object["metadata"]["integrity"].as_str(),
                Some(integrity_of(&body).as_str()),
                "{name}"
            );
        }
    }

    /// An object's bytes.
    pub async fn read(&self, bucket: &str, name: &str) -> Vec<u8> {
        let encoded: String = super::percent_encode(name);
        let r = self
            .http
            .get(format!("{}/storage/v1/b/{bucket}/o/{encoded}", self.url))
            .query(&[("alt", "media")])
            .send()
            .await
            .expect("read object");
        assert!(r.status().is_success(), "read {name}: {}", r.status());
        r.bytes().await.expect("object bytes").to_vec()
    }
}

impl Drop for Gcs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `all-docs serve`, with its JSON log lines collected.
pub struct Service {
    pub url: String,
    pub port: u16,
    env: Vec<(String, String)>,
    args: Vec<String>,
    child: Child,
    pub logs: Arc<Mutex<Vec<Value>>>,
}

impl Service {
    /// Starts the service; `env` adds or overrides variables (store, origins, emulators).
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Service {
        Service::start_on(free_port(), env, args)
    }

    /// Starts the service on `port` (a restart keeps the push subscriptions' URL).
    pub fn start_on(port: u16, env: &[(&str, &str)], args: &[&str]) -> Service {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(args)
        .env("GOOGLE_CLOUD_PROJECT", PROJECT)
        .env("ALL_DOCS_INSECURE_SKIP_PUSH_AUTH", "true")
        .env("RUST_LOG", "all_docs=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start all-docs serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("logs").push(v);
                }
            }
        });
        let url = super::listening_url(&mut child);
        assert!(url.starts_with("http://127.0.0.1:"), "tests stay on loopback: {url}");
        Service {
            url,
            port,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child,
            logs,
        }
    }

    /// The service for a simulator at `sim_url` (both origins), publishing to `pubsub`, with the
    /// replica in `store`: a folder, or `gs://BUCKET` on `gcs`.
    pub fn for_sim(sim_url: &str, pubsub: &PubSub, store: &str, gcs: Option<&Gcs>, args: &[&str]) -> Service {
        let mut env = vec![
            ("PUBSUB_EMULATOR_HOST", pubsub.host.as_str()),
            ("ALL_DOCS_STORE", store),
            ("ALL_DOCS_REPLICATE_ORIGIN", sim_url),
            ("ALL_DOCS_REGISTRY_ORIGIN", sim_url),
        ];
        if let Some(gcs) = gcs {
            env.push(("STORAGE_EMULATOR_HOST", gcs.url.as_str()));
        }
        Service::start(&env, args)
    }

    /// Kills the process with SIGKILL (no shutdown: requests in flight are cut), then starts a
    /// new one with the same settings on the same port, after `down`.
    pub fn sigkill_and_restart(&mut self, down: Duration) {
        kill(&mut self.child);
        std::thread::sleep(down);
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        *self = Service::start_on(self.port, &env, &args);
    }

    /// Status codes the service answered to work requests so far (from its logs).
    pub fn statuses(&self) -> Vec<u64> {
        self.logs
            .lock()
            .expect("logs")
            .iter()
            .filter_map(|l| match l["message"].as_str() {
                Some("done") => Some(200),
                _ => l["status"].as_u64(),
            })
            .collect()
    }

    /// How many answers of each status, and the last `n` log lines: for a timeout's message.
    pub fn summary(&self, n: usize) -> String {
        let mut counts = BTreeMap::new();
        for s in self.statuses() {
            *counts.entry(s).or_insert(0u64) += 1;
        }
        let logs = self.logs.lock().expect("logs");
        let last: Vec<String> = logs[logs.len().saturating_sub(n)..]
            .iter()
            .map(Value::to_string)
            .collect();
        format!("service statuses {counts:?}; last {n} log lines:\n{}", last.join("\n"))
    }

    /// Work requests answered 2xx so far.
    pub fn done_count(&self) -> usize {
        self.logs
            .lock()
            .expect("logs")
            .iter()
            .filter(|l| l["message"] == "done")
            .count()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
