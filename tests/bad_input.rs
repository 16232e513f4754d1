//! The bad-input table of `docs/errors.md`, one case per row: each bad input gets a clear
//! error (the needle), a non-zero exit or a 4xx, and leaves every file of the store exactly as
//! it was. The table and the cases are checked against each other, so neither can drift.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::cloud::{free_port, Service};
use common::{all_docs, assert_ok, run, Sim, TempDir, BIN};

const TABLE: &str = include_str!("../docs/errors.md");

/// The row ids of `docs/errors.md` that start with `prefix` (`C` or `S`).
fn table_rows(prefix: char) -> BTreeSet<String> {
    TABLE
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split_once(" |"))
        .map(|(id, _)| id.to_owned())
        .filter(|id| id.starts_with(prefix) && id[1..].bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read the store") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read a stored file");
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// A replica of a small simulated registry, and what its store holds.
struct Replica {
    sim: Sim,
    dir: PathBuf,
    inputs: PathBuf,
    before: BTreeMap<PathBuf, Vec<u8>>,
    /// The folders behind `dir` and `inputs`, removed with the replica.
    _folders: (TempDir, TempDir),
}

impl Replica {
    fn new(tag: &str) -> Replica {
        let sim = Sim::start(&["--packages", "40"], &[]);
        let dir_tmp = TempDir::new(tag);
        let dir = dir_tmp.path().to_path_buf();
        assert_ok(&run(&dir, &sim, &["replicate"]), "replicate");
        let inputs_tmp = TempDir::new(&format!("{tag}-inputs"));
        let inputs = inputs_tmp.path().to_path_buf();
        let before = snapshot(&dir);
        assert!(before.len() > 40, "the replica holds its documents");
        Replica {
            sim,
            dir,
            inputs,
            before,
            _folders: (dir_tmp, inputs_tmp),
        }
    }

    /// Writes an input file (outside the store) and returns its path.
    fn input(&self, name: &str, content: &[u8]) -> String {
        let path = self.inputs.join(name);
        std::fs::write(&path, content).expect("write an input");
        path.to_str().expect("UTF-8 path").to_owned()
    }

    fn packuments_fetched(&self) -> u64 {
        self.sim.stats()["routes"]["packument"].as_u64().unwrap_or(0)
    }

    fn assert_unchanged(&self, row: &str) {
        let after = snapshot(&self.dir);
        assert!(after == self.before, "{row}: the store changed");
    }
}

/// `all-docs ARGS --store STORE` with no origin from the environment or an npm config.
fn bare(dir: &Path, inputs: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--store")
        .arg(dir)
        .arg("-q")
        .current_dir(inputs)
        .env("HOME", inputs)
        .env_remove("ALL_DOCS_REPLICATE_ORIGIN")
        .env_remove("ALL_DOCS_REGISTRY_ORIGIN")
        .env_remove("npm_config_registry")
        .env_remove("NPM_CONFIG_REGISTRY");
    cmd
}

fn assert_refused(row: &str, out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{row}: exit code; stderr:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{row}: {needle:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{row}: a panic:\n{stderr}");
}

/// (row, store, the arguments after `show`, exit code, needles in stderr)
type ShowCase<'a> = (&'a str, &'a Path, Vec<String>, i32, Vec<String>);

#[test]
fn every_command_line_row_is_a_clear_error_that_changes_nothing() {
    let r = Replica::new("bad-cli");
    let dir = r.dir.clone();
    let sim = &r.sim;
    let first = sim
        .truth()
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    let long = "a".repeat(215);
    let many: Vec<String> = (0..100_000)
        .map(|i| {
            if i == 99_999 {
                "../x".to_owned()
            } else {
                format!("pkg-{i}")
            }
        })
        .collect();

    // (row, one bad name, needles): each is listed after a good name, so nothing may be
    // fetched before the list is refused.
    let name_rows: Vec<(&str, &str, Vec<&str>)> = vec![
        ("C12", "", vec!["item 2", "package name is empty"]),
        ("C13", &long, vec!["item 2", "215 bytes", "at most 214"]),
        ("C14", "../etc", vec!["item 2", "\"../etc\"", "path traversal"]),
        ("C14", "@scope/..", vec!["\"@scope/..\"", "path traversal"]),
        ("C15", "%2e%2e", vec!["\"%2e%2e\"", "path traversal"]),
        ("C15", "a%2Fb", vec!["\"a%2Fb\"", "path traversal"]),
        ("C16", "a\u{7}b", vec!["item 2", "control character"]),
        ("C16", "a b", vec!["\"a b\"", "whitespace"]),
        ("C17", ".bin", vec!["\".bin\"", "starts with `.` or `_`"]),
        ("C17", "_private", vec!["\"_private\"", "starts with `.` or `_`"]),
    ];
    let mut covered = BTreeSet::new();
    for (i, (row, name, needles)) in name_rows.iter().enumerate() {
        let names = serde_json::json!([first, name]);
        let list = r.input(&format!("{row}-{i}.json"), names.to_string().as_bytes());
        let fetched = r.packuments_fetched();
        let out = run(&dir, sim, &["packument", "fetch-list", &list]);
        assert_refused(row, &out, 2, needles);
        assert_eq!(r.packuments_fetched(), fetched, "{row}: nothing fetched");
        r.assert_unchanged(row);
        covered.insert(row.to_string());
    }
    // `_design` through a second spelling of C17: a single name on the command line.
    let out = run(&dir, sim, &["show", "_design"]);
    assert_refused("C17", &out, 2, &["starts with `.` or `_`"]);

    let pivots = |row: &str, text: &str| r.input(&format!("{row}-pivots.js"), text.as_bytes());
    let missing = r.inputs.join("missing.json").to_str().unwrap().to_owned();
    let cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "C01",
            vec![pivots("C01", "[null, 'a' 'b']")],
            vec!["C01-pivots.js", "1:12", "expected `,` or `]`"],
        ),
        (
            "C02",
            vec![pivots("C02", "[null, 'b', 'a']")],
            vec![
                "C02-pivots.js",
                "not sorted: \"b\" (pivot 2) is not before \"a\" (pivot 3)",
            ],
        ),
        (
            "C03",
            vec![pivots("C03", "[null, 'a', 'a']")],
            vec!["C03-pivots.js", "pivot 3 repeats \"a\""],
        ),
        (
            "C04",
            vec![pivots("C04", "['a', null]")],
            vec!["C04-pivots.js", "pivot 2 is null; only the first pivot may be null"],
        ),
        (
            "C05",
            vec![pivots("C05", "module.exports = []")],
            vec!["C05-pivots.js", "empty"],
        ),
        (
            "C06",
            vec![missing.clone()],
            vec!["missing.json", "cannot read pivots file"],
        ),
    ];
    for (row, args, needles) in &cases {
        let fetched = r.packuments_fetched();
        let out = run(&dir, sim, &["partition", "refresh", "--pivots", &args[0]]);
        assert_refused(row, &out, 2, needles);
        assert_eq!(r.packuments_fetched(), fetched, "{row}: nothing fetched");
        r.assert_unchanged(row);
        covered.insert(row.to_string());
    }

    let lists: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "C07",
            r.input("C07.json", b"[\"a\","),
            vec!["C07.json", "is not a JSON array"],
        ),
        (
            "C08",
            r.input("C08.json", b"[\"a\", 1]"),
            vec!["C08.json", "item 2 is not a string: 1"],
        ),
        ("C09", r.input("C09.json", b"[]"), vec!["C09.json", "has no names"]),
        ("C09", r.input("C09.txt", b"\n\n"), vec!["C09.txt", "has no names"]),
        (
            "C10",
            r.input("C10.json", serde_json::to_string(&many).unwrap().as_bytes()),
            vec!["C10.json", "item 100000", "path traversal"],
        ),
        ("C11", missing, vec!["missing.json", "cannot read list"]),
    ];
    for (row, list, needles) in &lists {
        let fetched = r.packuments_fetched();
        let out = run(&dir, sim, &["packument", "fetch-list", list]);
        assert_refused(row, &out, 2, needles);
        assert_eq!(r.packuments_fetched(), fetched, "{row}: nothing fetched");
        r.assert_unchanged(row);
        covered.insert(row.to_string());
    }

    let inputs = r.inputs.clone();
    let blocker = r.input("a-file", b"in the way");
    let under_file = format!("{blocker}/store");
    let origin_cases: Vec<(&str, Command, i32, Vec<&str>)> = vec![
        (
            "C18",
            bare(
                &dir,
                &inputs,
                &[
                    "replicate",
                    "--replicate-origin",
                    "ftp://127.0.0.1/",
                    "--registry-origin",
                    &sim.url,
                ],
            ),
            2,
            vec!["--replicate-origin", "ftp://127.0.0.1/", "http://"],
        ),
        (
            "C19",
            bare(
                &dir,
                &inputs,
                &[
                    "replicate",
                    "--replicate-origin",
                    &sim.url,
                    "--registry-origin",
                    "http://u:p@127.0.0.1:9",
                ],
            ),
            2,
            vec!["--registry-origin", "credentials", "http://***@127.0.0.1:9"],
        ),
        (
            "C20",
            bare(
                &dir,
                &inputs,
                &[
                    "replicate",
                    "--replicate-origin",
                    "http://127.0.0.1:9",
                    "--registry-origin",
                    "http://127.0.0.1:9",
                ],
            ),
            1,
            vec!["http://127.0.0.1:9/", "gave up", "Connection refused"],
        ),
        (
            "C21",
            bare(&dir, &inputs, &["replicate"]),
            2,
            vec![
                "no replication origin",
                "--replicate-origin",
                "ALL_DOCS_REPLICATE_ORIGIN",
            ],
        ),
        (
            "C22",
            {
                let mut c = all_docs(Path::new(&under_file), sim, &["replicate"]);
                c.current_dir(&inputs);
                c
            },
            2,
            vec!["a-file/store", "cannot create the store folder", "Not a directory"],
        ),
        (
            "C22",
            // A folder nobody may create, even root: /sys is a kernel file system.
            all_docs(Path::new("/sys/all-docs-store"), sim, &["replicate"]),
            2,
            vec!["/sys/all-docs-store", "cannot create the store folder"],
        ),
        (
            "C24",
            all_docs(&dir, sim, &["replicate", "--max-rps", "0"]),
            2,
            vec!["--max-rps", "positive"],
        ),
        (
            "C24",
            all_docs(&dir, sim, &["replicate", "--concurrency", "0"]),
            2,
            vec!["--concurrency", "1..=4096"],
        ),
        (
            "C25",
            all_docs(Path::new("s3://bucket/replica"), sim, &["cache", "create-index"]),
            2,
            vec!["s3://bucket/replica", "`s3://` is not a store"],
        ),
        (
            "C25",
            all_docs(Path::new(""), sim, &["cache", "stats"]),
            2,
            vec!["--store", "empty"],
        ),
        (
            "C25",
            all_docs(&inputs.join("never-replicated"), sim, &["cache", "create-index"]),
            2,
            vec!["never-replicated", "no such folder"],
        ),
    ];
    for (row, mut cmd, code, needles) in origin_cases {
        let fetched = r.packuments_fetched();
        let out = cmd.output().expect("run all-docs");
        assert_refused(row, &out, code, &needles);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("u:p@"),
            "{row}: a secret echoed"
        );
        assert_eq!(r.packuments_fetched(), fetched, "{row}: nothing fetched");
        r.assert_unchanged(row);
        covered.insert(row.to_string());
    }

    // `show`: the filter, the version and the format, on the first package of the replica.
    let never = inputs.join("never-replicated");
    let at = |version: &str| format!("{first}@{version}");
    let show_cases: Vec<ShowCase> = vec![
        (
            "C27",
            &dir,
            vec![first.clone(), "--select".into(), ".name |".into()],
            2,
            vec!["--select `.name |`".into(), "column 8: expected term".into()],
        ),
        (
            "C27",
            &dir,
            vec![first.clone(), "--select".into(), "nosuch".into()],
            2,
            vec!["--select `nosuch`".into(), "filter `nosuch` is not defined".into()],
        ),
        (
            "C27",
            // Refused before the replica is read: this folder does not exist.
            &never,
            vec![first.clone(), "--select".into(), ".[".into()],
            2,
            vec!["--select `.[`".into(), "expected a match for `[`".into()],
        ),
        (
            "C28",
            &dir,
            vec![first.clone(), "--select".into(), ".name.first".into()],
            1,
            vec!["--select `.name.first` failed".into(), "cannot index".into()],
        ),
        (
            "C28",
            &dir,
            vec![first.clone(), "--select".into(), "error(\"no good\")".into()],
            1,
            vec!["failed".into(), "no good".into()],
        ),
        (
            "C29",
            &dir,
            vec![at("9999.0.0-none"), "--select".into(), ".version".into()],
            1,
            vec![format!("`{first}` has no version or dist-tag `9999.0.0-none`")],
        ),
        (
            "C29",
            &dir,
            vec![at("nightly")],
            1,
            vec![format!("`{first}` has no version or dist-tag `nightly`")],
        ),
        (
            "C30",
            &dir,
            vec![at("")],
            2,
            vec![format!("`{first}@` has nothing after `@`")],
        ),
        (
            "C30",
            &dir,
            vec![first.clone(), "--format".into(), "xml".into()],
            2,
            vec!["invalid value 'xml'".into(), "--format".into()],
        ),
    ];
    for (row, store, args, code, needles) in &show_cases {
        let fetched = r.packuments_fetched();
        let args: Vec<&str> = std::iter::once("show").chain(args.iter().map(String::as_str)).collect();
        let out = run(store, sim, &args);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_refused(row, &out, *code, &needles);
        assert!(out.stdout.is_empty(), "{row}: nothing printed as if it were an answer");
        assert_eq!(r.packuments_fetched(), fetched, "{row}: nothing fetched");
        r.assert_unchanged(row);
        covered.insert(row.to_string());
    }
    assert!(!never.exists(), "C27: a read never creates the store folder");

    a_full_disk_fails_the_run_without_a_partial_entry_and_the_next_run_completes();
    covered.insert("C23".into());
    a_bucket_that_does_not_exist_is_named(sim, &inputs);
    covered.insert("C26".into());
    assert_eq!(covered, table_rows('C'), "docs/errors.md rows vs the cases here");
}

/// C26: `gs://` naming a bucket that does not exist, against fake-gcs-server: exit 2 naming it,
/// for a reading and a writing command alike, and nothing created.
fn a_bucket_that_does_not_exist_is_named(sim: &Sim, inputs: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gcs = rt.block_on(common::cloud::Gcs::start());
    for args in [&["cache", "create-index"][..], &["replicate"]] {
        let out = all_docs(Path::new("gs://no-such-bucket"), sim, args)
            .env("STORAGE_EMULATOR_HOST", &gcs.url)
            .current_dir(inputs)
            .output()
            .expect("run all-docs");
        assert_refused(
            "C26",
            &out,
            2,
            &["gs://no-such-bucket", "bucket `no-such-bucket` does not exist"],
        );
        assert!(out.stdout.is_empty(), "C26: nothing printed as if it were an answer");
    }
    assert!(rt.block_on(gcs.list("no-such-bucket", "")).is_empty());
}

#[test]
fn upstream_rows_invalid_names_are_reported_and_the_rest_is_replicated() {
    let dir_tmp = TempDir::new("bad-upstream");
    let dir = dir_tmp.path().to_path_buf();
    let inputs_tmp = TempDir::new("bad-upstream-inputs");
    let inputs = inputs_tmp.path().to_path_buf();
    std::fs::create_dir_all(&inputs).unwrap();
    let names = inputs.join("names.txt");
    std::fs::write(&names, "alpha\nbeta\n_design/app\n../evil\ngamma\n.hidden\n").unwrap();
    let names = names.to_str().unwrap();
    let sim = Sim::start_with(&["--port", "0", "--names-file", names], &["--names-file", names]);
    let valid: String = sim
        .truth()
        .lines()
        .filter(|l| ["alpha\t", "beta\t", "gamma\t"].iter().any(|p| l.starts_with(p)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(valid.lines().count(), 3);
    let bad = ["\"_design/app\"", "\"../evil\"", "\".hidden\""];

    // Runs `args` on `store` with warnings shown, then checks the warning and the replica.
    let case = |row: &str, store: &std::path::Path, args: &[&str], warning: &str| {
        let mut cmd = all_docs(store, &sim, args);
        cmd.arg("-v"); // cancels the helper's -q: warnings show at the default level
        let out = cmd.output().unwrap();
        assert_ok_warning_about(row, &out, &bad, warning);
        assert_eq!(
            common::index_of(store, &sim),
            valid,
            "{row}: the valid names, all of them"
        );
    };
    // U01: through `_all_docs`.
    case(
        "U01",
        &dir,
        &["replicate"],
        "listed upstream under an invalid package name",
    );
    // U02: through `_changes`, from the start of the feed into a fresh store.
    let fresh_tmp = TempDir::new("bad-upstream-feed");
    let fresh = fresh_tmp.path().to_path_buf();
    case(
        "U02",
        &fresh,
        &["follow", "--since", "0", "--once"],
        "the change feed names an invalid package",
    );
    let stats = run(&fresh, &sim, &["cache", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
    let upstream = common::http("GET", &format!("{}/", sim.url))["update_seq"].as_u64();
    assert!(upstream.is_some());
    assert_eq!(
        stats["follow"]["checkpoint"].as_u64(),
        upstream,
        "U02: the checkpoint moved past the invalid names: {stats}"
    );

    assert_eq!(
        BTreeSet::from(["U01".to_owned(), "U02".to_owned()]),
        table_rows('U'),
        "docs/errors.md rows vs the cases here"
    );
    for d in [dir, fresh, inputs] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The command succeeded, and its log names each of `names` with `warning`.
fn assert_ok_warning_about(row: &str, out: &Output, names: &[&str], warning: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{row}: {stderr}");
    for name in names {
        assert!(
            stderr.lines().any(|l| l.contains(warning) && l.contains(name)),
            "{row}: no warning naming {name}:\n{stderr}"
        );
    }
}

/// C23: writes fail part-way (a file-size limit makes every write past 64 KiB fail with
/// `EFBIG`, as a full disk fails with `ENOSPC`). The run fails naming what it could not write,
/// leaves no partial entry, and the next run completes. It needs a store of its own.
fn a_full_disk_fails_the_run_without_a_partial_entry_and_the_next_run_completes() {
    use std::os::unix::process::CommandExt as _;
    let sim = Sim::start(&["--packages", "30", "--huge", "big-doc=300K"], &[]);
    let dir_tmp = TempDir::new("bad-disk-full");
    let dir = dir_tmp.path().to_path_buf();
    let mut cmd = all_docs(&dir, &sim, &["replicate"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run all-docs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("big-doc") && stderr.contains("File too large"),
        "{stderr}"
    );

    let show = run(&dir, &sim, &["show", "big-doc"]);
    assert!(!show.status.success(), "no entry for the document that did not fit");
    assert_ok(
        &run(&dir, &sim, &["cache", "validate"]),
        "cache validate after the failed run",
    );

    assert_ok(&run(&dir, &sim, &["replicate"]), "the next run");
    assert_eq!(common::index_of(&dir, &sim), sim.truth());
    assert_ok(&run(&dir, &sim, &["cache", "validate"]), "cache validate");
}

/// (row, endpoint, bearer token, body, status, needle in the answer)
type ServiceCase<'a> = (&'a str, &'a str, Option<String>, Vec<u8>, u16, &'a str);

const AUDIENCE: &str = "https://all-docs.example.run.app/work";
const SERVICE_ACCOUNT: &str = "push@all-docs-test.iam.gserviceaccount.com";

/// A loopback JWKS endpoint serving the test key set (see tests/fixtures/jwt/README.md).
fn serve_jwks() -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/certs", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let body = include_str!("fixtures/jwt/jwks.json");
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=3600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A token like the ones Pub/Sub signs, with `changes` applied to the claims.
fn token(pem: &str, changes: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "112233445566778899",
        "email": SERVICE_ACCOUNT,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    });
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("fixture key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

fn wrapped(item: &str) -> String {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(item);
    serde_json::json!({"message": {"data": data, "messageId": "m-1"}, "subscription": "projects/p/subscriptions/s"})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_row_is_a_4xx_that_stores_and_publishes_nothing() {
    let r = Replica::new("bad-service");
    let jwks = serve_jwks();
    let dead_pubsub = format!("127.0.0.1:{}", free_port());
    let store_dir = r.dir.to_str().unwrap().to_owned();
    let service = Service::start(
        &[
            ("ALL_DOCS_STORE", &store_dir),
            ("ALL_DOCS_REPLICATE_ORIGIN", &r.sim.url),
            ("ALL_DOCS_REGISTRY_ORIGIN", &r.sim.url),
            ("PUBSUB_EMULATOR_HOST", &dead_pubsub),
            ("ALL_DOCS_INSECURE_SKIP_PUSH_AUTH", "false"),
            ("ALL_DOCS_PUSH_AUDIENCE", AUDIENCE),
            ("ALL_DOCS_PUSH_SERVICE_ACCOUNT", SERVICE_ACCOUNT),
            ("ALL_DOCS_PUSH_JWKS_URL", &jwks),
        ],
        &[],
    );
    let key1 = include_str!("fixtures/jwt/key1.pem");
    let key2 = include_str!("fixtures/jwt/key2.pem");
    let good = token(key1, serde_json::json!({}));
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let packument = r#"{"type":"packument","payload":{"packageName":"lodash"}}"#;
    let huge = vec![b' '; 17 * 1024 * 1024];

    let cases: Vec<ServiceCase> = vec![
        (
            "S01",
            "packument",
            Some(good.clone()),
            b"not json".to_vec(),
            400,
            "not JSON",
        ),
        ("S02", "packument", Some(good.clone()), Vec::new(), 400, "body is empty"),
        (
            "S03",
            "packument",
            Some(good.clone()),
            br#"{"message":{"messageId":"1"}}"#.to_vec(),
            400,
            "no `message.data`",
        ),
        (
            "S04",
            "packument",
            Some(good.clone()),
            br#"{"message":{"data":"%%%not base64"}}"#.to_vec(),
            400,
            "not valid base64",
        ),
        ("S05", "packument", Some(good.clone()), huge, 413, "16 MiB"),
        (
            "S06",
            "packument",
            Some(good.clone()),
            wrapped(r#"{"type":"tarball","payload":{}}"#).into_bytes(),
            400,
            "unknown work item type `tarball`",
        ),
        (
            "S07",
            "partition",
            Some(good.clone()),
            wrapped(packument).into_bytes(),
            400,
            "a `packument` item was pushed to the `partition` endpoint",
        ),
        (
            "S08",
            "packument",
            Some(good.clone()),
            wrapped(r#"{"type":"packument","payload":{"packageName":"_design"}}"#).into_bytes(),
            400,
            "starts with `.` or `_`",
        ),
        (
            "S08",
            "packument",
            Some(good.clone()),
            wrapped(r#"{"type":"packument","payload":{"name":"lodash"}}"#).into_bytes(),
            400,
            "bad `packument` payload",
        ),
        (
            "S09",
            "packument",
            Some(good.clone()),
            wrapped(r#"{"type":"packument","payload":{"packageName":"lodash"},"origin":"http://127.0.0.1:1"}"#)
                .into_bytes(),
            400,
            "not in this service's allow-list",
        ),
        ("S10", "packument", None, wrapped(packument).into_bytes(), 401, "token"),
        (
            "S11",
            "packument",
            Some(token(
                key1,
                serde_json::json!({"iat": hour_ago - 3600, "exp": hour_ago}),
            )),
            wrapped(packument).into_bytes(),
            401,
            "expired",
        ),
        (
            "S12",
            "packument",
            Some(token(key2, serde_json::json!({}))),
            wrapped(packument).into_bytes(),
            401,
            "signature",
        ),
        (
            "S13",
            "packument",
            Some(token(key1, serde_json::json!({"aud": "https://someone-else.example/"}))),
            wrapped(packument).into_bytes(),
            401,
            "audience",
        ),
        (
            "S13",
            "packument",
            Some(token(
                key1,
                serde_json::json!({"email": "intruder@example.iam.gserviceaccount.com"}),
            )),
            wrapped(packument).into_bytes(),
            403,
            "intruder@example.iam.gserviceaccount.com",
        ),
    ];
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut covered = BTreeSet::new();
    for (row, endpoint, bearer, body, status, needle) in cases {
        let fetched = r.packuments_fetched();
        let mut req = http
            .post(format!("{}/work/{endpoint}", service.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("the service answers");
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(got, status, "{row}: {text}");
        assert!(text.contains(needle), "{row}: {needle:?} not in {text}");
        assert_eq!(r.packuments_fetched(), fetched, "{row}: nothing fetched");
        r.assert_unchanged(row);
        covered.insert(row.to_owned());
    }
    assert_eq!(service.done_count(), 0, "nothing was processed");
    assert_eq!(covered, table_rows('S'), "docs/errors.md rows vs the cases here");
}
