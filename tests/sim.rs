//! `all-docs sim` over HTTP, as a client sees it: every route and parameter, the rate limit,
//! faults, the change feed, and the process's own behaviour (readiness line, SIGTERM, bad flags).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{percent_encode, Sim, BIN};
use reqwest::header::{ACCEPT, CACHE_CONTROL, ETAG, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

async fn get(sim: &Sim, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", sim.url))
        .send()
        .await
        .expect("request")
}

async fn json(sim: &Sim, path: &str) -> Value {
    let resp = get(sim, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.json().await.expect("JSON")
}

async fn doc(sim: &Sim, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", sim.url));
    if let Some(a) = accept {
        req = req.header(ACCEPT, a);
    }
    req.send().await.expect("request")
}

fn ids(page: &Value) -> Vec<String> {
    page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

fn q(key: &str) -> String {
    percent_encode(&serde_json::to_string(key).unwrap())
}

/// Names of the truth, in order.
fn names(sim: &Sim) -> Vec<String> {
    sim.truth()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn root_reports_doc_count_and_update_seq() {
    let sim = Sim::start(&["--packages", "1234"], &[]);
    let root = json(&sim, "/").await;
    assert_eq!(root["doc_count"], 1234);
    assert_eq!(root["update_seq"], 1234);
    assert!(root["db_name"].is_string());
}

#[tokio::test]
async fn paging_a_200k_corpus_returns_every_name_once_in_byte_order() {
    let sim = Sim::start(&["--packages", "200000"], &[]);
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut start: Option<String> = None;
    let mut requests = 0;
    loop {
        let path = match &start {
            None => "/_all_docs?limit=10000".to_owned(),
            Some(s) => format!("/_all_docs?limit=10000&startkey={}", q(s)),
        };
        let page = json(&sim, &path).await;
        requests += 1;
        let mut got: Vec<(String, String)> = page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["value"]["rev"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let full = got.len() == 10_000;
        if start.is_some() {
            assert_eq!(
                got.first().map(|r| &r.0),
                start.as_ref(),
                "a page starts at its startkey"
            );
            got.remove(0);
        }
        start = got.last().map(|r| r.0.clone()).or(start);
        rows.extend(got);
        if !full {
            break;
        }
    }
    assert!(requests <= 22, "{requests} pages");
    assert_eq!(rows.len(), 200_000);
    assert!(
        rows.windows(2).all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()),
        "strictly increasing byte order"
    );
    let truth: Vec<(String, String)> = sim
        .truth()
        .lines()
        .map(|l| {
            let (n, r) = l.split_once('\t').unwrap();
            (n.to_owned(), r.to_owned())
        })
        .collect();
    assert_eq!(rows, truth);
    // The corpus has the upstream's mix, so the order above was tested on hard cases.
    assert!(rows.iter().filter(|r| r.0.starts_with('@')).count() > 70_000);
    assert!(rows.iter().any(|r| !r.0.is_ascii()));
    assert!(rows.iter().any(|r| r.0.as_bytes()[0].is_ascii_uppercase()));
}

#[tokio::test]
async fn inclusive_end_decides_whether_consecutive_ranges_share_their_boundary() {
    let sim = Sim::start(&["--packages", "3000"], &[]);
    let all = names(&sim);
    let (a, b, c) = (&all[100], &all[200], &all[300]);
    let first = json(
        &sim,
        &format!("/_all_docs?startkey={}&endkey={}&limit=10000", q(a), q(b)),
    )
    .await;
    let second = json(
        &sim,
        &format!("/_all_docs?startkey={}&endkey={}&limit=10000", q(b), q(c)),
    )
    .await;
    assert_eq!(ids(&first).last(), Some(b), "inclusive_end defaults to true");
    assert_eq!(ids(&second).first(), Some(b), "so the boundary row is in both");
    let first = json(
        &sim,
        &format!("/_all_docs?startkey={}&endkey={}&inclusive_end=false", q(a), q(b)),
    )
    .await;
    let second = json(
        &sim,
        &format!("/_all_docs?startkey={}&endkey={}&inclusive_end=false", q(b), q(c)),
    )
    .await;
    let (x, y) = (ids(&first), ids(&second));
    assert_eq!(x.len() + y.len(), 200);
    assert!(!x.contains(b) && y.first() == Some(b), "half-open: [a,b) then [b,c)");
    assert_eq!([x, y].concat(), all[100..300].to_vec());
}

#[tokio::test]
async fn limit_defaults_to_1000_and_may_not_exceed_10000() {
    let sim = Sim::start(&["--packages", "12000"], &[]);
    assert_eq!(ids(&json(&sim, "/_all_docs").await).len(), 1_000);
    assert_eq!(ids(&json(&sim, "/_all_docs?limit=10000").await).len(), 10_000);
    assert_eq!(ids(&json(&sim, "/_all_docs?limit=0").await).len(), 0);
    for bad in ["limit=10001", "limit=20000", "limit=ten", "limit=-1"] {
        let resp = get(&sim, &format!("/_all_docs?{bad}")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "bad_request", "{bad}");
    }
}

#[tokio::test]
async fn descending_key_and_keys() {
    let sim = Sim::start(&["--packages", "500"], &[]);
    let all = names(&sim);
    let down = json(
        &sim,
        &format!("/_all_docs?descending=true&startkey={}&limit=3", q(&all[10])),
    )
    .await;
    assert_eq!(ids(&down), vec![all[10].clone(), all[9].clone(), all[8].clone()]);
    let down = json(
        &sim,
        &format!(
            "/_all_docs?descending=true&startkey={}&endkey={}",
            q(&all[10]),
            q(&all[8])
        ),
    )
    .await;
    assert_eq!(ids(&down).len(), 3);
    let one = json(&sim, &format!("/_all_docs?key={}", q(&all[42]))).await;
    assert_eq!(ids(&one), vec![all[42].clone()]);
    let keys = percent_encode(&serde_json::to_string(&[&all[7], "no-such-package-xyz", &all[3]]).unwrap());
    let page = json(&sim, &format!("/_all_docs?keys={keys}")).await;
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows[0]["id"], all[7].as_str());
    assert_eq!(
        rows[1],
        serde_json::json!({"key": "no-such-package-xyz", "error": "not_found"})
    );
    assert_eq!(rows[2]["id"], all[3].as_str());
}

#[tokio::test]
async fn skip_include_docs_and_bad_keys_are_rejected_like_upstream() {
    let sim = Sim::start(&["--packages", "100"], &[]);
    for bad in [
        "skip=10".to_owned(),
        "include_docs=true".to_owned(),
        "startkey=abc".to_owned(),
        "startkey=42".to_owned(),
        format!("startkey={}&endkey={}", q("b"), q("a")),
        "inclusive_end=maybe".to_owned(),
    ] {
        let resp = get(&sim, &format!("/_all_docs?{bad}")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn total_rows_and_offset() {
    let sim = Sim::start(&["--packages", "800"], &[]);
    let all = names(&sim);
    let page = json(&sim, &format!("/_all_docs?startkey={}&limit=2", q(&all[300]))).await;
    assert_eq!(page["total_rows"], 800);
    assert_eq!(page["offset"], 300);
    assert_eq!(ids(&page), all[300..302].to_vec());
}

#[tokio::test]
async fn full_form_only_for_plain_json_accept_and_scoped_names_both_ways() {
    let sim = Sim::start(&["--packages", "2000"], &[]);
    let truth = sim.truth();
    let (name, rev) = truth
        .lines()
        .find(|l| l.starts_with('@'))
        .unwrap()
        .split_once('\t')
        .unwrap();
    let (scope, pkg) = name.split_once('/').unwrap();
    for path in [
        format!("/{scope}%2f{pkg}"),
        format!("/{scope}%2F{pkg}"),
        format!("/{scope}/{pkg}"),
    ] {
        let resp = doc(&sim, &path, Some("application/json")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let d: Value = resp.json().await.unwrap();
        assert_eq!(d["name"], name);
        assert_eq!(d["_rev"], rev, "the document's _rev is the listed rev");
        assert!(d["time"].is_object() && d["versions"].is_object());
    }
    for accept in [
        Some("*/*"),
        Some("application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"),
        None,
    ] {
        let resp = doc(&sim, &format!("/{scope}%2f{pkg}"), accept).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let d: Value = resp.json().await.unwrap();
        assert!(
            d.get("_rev").is_none() && d.get("time").is_none(),
            "abbreviated for {accept:?}"
        );
        assert!(d["versions"].is_object() && d["modified"].is_string());
    }
}

#[tokio::test]
async fn etag_gives_304_with_no_body_and_caching_headers_are_set() {
    let sim = Sim::start(&["--packages", "50"], &[]);
    let name = names(&sim)
        .into_iter()
        .find(|n| n.is_ascii() && !n.contains('/'))
        .unwrap();
    let resp = doc(&sim, &format!("/{name}"), Some("application/json")).await;
    assert!(resp.headers()[CACHE_CONTROL].to_str().unwrap().contains("max-age=300"));
    assert!(resp.headers().contains_key(LAST_MODIFIED));
    let etag = resp.headers()[ETAG].clone();
    let again = client()
        .get(format!("{}/{name}", sim.url))
        .header(ACCEPT, "application/json")
        .header(IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[ETAG], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = client()
        .get(format!("{}/{name}", sim.url))
        .header(ACCEPT, "application/json")
        .header(IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_names_are_404_and_unpublished_packages_are_stubs() {
    let sim = Sim::start(&["--packages", "3000"], &[]);
    assert_eq!(
        doc(&sim, "/no-such-package-anywhere", Some("application/json"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let mut stub = None;
    for name in names(&sim) {
        let path = format!("/{}", percent_encode(&name).replace("%40", "@"));
        let d: Value = doc(&sim, &path, Some("application/json")).await.json().await.unwrap();
        if d["time"]["unpublished"].is_object() {
            stub = Some(d);
            break;
        }
    }
    let stub = stub.expect("about 0.5 % of packages are unpublished");
    assert!(stub["_id"].is_string() && stub["_rev"].is_string() && stub["name"].is_string());
    assert!(stub.get("versions").is_none());
}

#[tokio::test]
async fn a_huge_document_has_its_size_and_is_valid_json() {
    let sim = Sim::start(&["--packages", "10", "--huge", "big-doc=8MB"], &[]);
    assert!(sim.truth().lines().any(|l| l.starts_with("big-doc\t")));
    let resp = doc(&sim, "/big-doc", Some("application/json")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 8_000_000);
    let d: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(d["name"], "big-doc");
}

#[tokio::test]
async fn the_change_feed_lists_base_documents_then_live_changes_and_deletions() {
    let sim = Sim::start(&["--packages", "1000"], &["--changes-per-sec", "200"]);
    let base = json(&sim, "/_changes?since=0&limit=10000").await;
    let rows = base["results"].as_array().unwrap();
    assert!(rows.len() >= 900, "base documents appear in the feed");
    assert!(
        rows.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "seqs increase"
    );
    assert_eq!(
        get(&sim, "/_changes?limit=10001").await.status(),
        StatusCode::BAD_REQUEST
    );

    // Wait (bounded) until a deletion has happened after the base sequence.
    let deadline = Instant::now() + Duration::from_secs(30);
    let deleted = loop {
        let feed = json(&sim, "/_changes?since=1000&limit=10000").await;
        let found = feed["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["deleted"] == true)
            .cloned();
        if let Some(row) = found {
            assert!(feed["last_seq"].as_u64().unwrap() > 1000);
            break row;
        }
        assert!(Instant::now() < deadline, "no deletion within 30 s at 200 changes/s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name = deleted["id"].as_str().unwrap();
    assert!(deleted["changes"][0]["rev"].is_string());
    let path = format!("/{}", percent_encode(name).replace("%40", "@"));
    assert_eq!(
        doc(&sim, &path, Some("application/json")).await.status(),
        StatusCode::NOT_FOUND
    );
    let index = get(&sim, "/-/sim/index").await.text().await.unwrap();
    assert!(
        !index.lines().any(|l| l.split('\t').next() == Some(name)),
        "deleted names leave the index"
    );
    let listed = json(&sim, &format!("/_all_docs?key={}", q(name))).await;
    assert!(ids(&listed).is_empty(), "and _all_docs");

    // Pausing stops the sequence.
    client()
        .post(format!("{}/-/sim/pause-changes", sim.url))
        .send()
        .await
        .unwrap();
    let a = json(&sim, "/").await["update_seq"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = json(&sim, "/").await["update_seq"].as_u64().unwrap();
    assert_eq!(a, b, "paused");
    client()
        .post(format!("{}/-/sim/resume-changes", sim.url))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while json(&sim, "/").await["update_seq"].as_u64().unwrap() == b {
        assert!(Instant::now() < deadline, "resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_ignoring_it_is_a_violation() {
    let sim = Sim::start(
        &["--packages", "100"],
        &[
            "--rate-limit",
            "5",
            "--burst",
            "5",
            "--retry-after",
            "3",
            "--violation-grace-ms",
            "0",
        ],
    );
    for _ in 0..5 {
        assert_eq!(get(&sim, "/").await.status(), StatusCode::OK);
    }
    let limited = get(&sim, "/").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()[RETRY_AFTER], "3");
    assert_eq!(get(&sim, "/_all_docs").await.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = sim.stats();
    assert_eq!(stats["violations"], 1, "{stats}");
    assert_eq!(stats["rateLimited"], 2);
    assert_eq!(stats["byStatus"]["429"], 2);
    // Control routes are never limited.
    assert_eq!(get(&sim, "/-/sim/stats").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_penalty_extends_each_violation_restarts_the_window() {
    let sim = Sim::start(
        &["--packages", "100"],
        &[
            "--rate-limit",
            "50",
            "--burst",
            "1",
            "--retry-after",
            "1",
            "--penalty-extends",
            "--violation-grace-ms",
            "0",
        ],
    );
    assert_eq!(get(&sim, "/").await.status(), StatusCode::OK);
    assert_eq!(get(&sim, "/").await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Keep knocking every 300 ms for 1.5 s: each knock extends the 1 s window.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get(&sim, "/").await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(sim.stats()["violations"], 5);
    // Honour Retry-After and the upstream forgives.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(get(&sim, "/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_fault_kind_does_what_it_says() {
    let name_of = |sim: &Sim| {
        names(sim)
            .into_iter()
            .find(|n| n.is_ascii() && !n.contains('/'))
            .unwrap()
    };

    let sim = Sim::start(&["--packages", "50"], &["--faults", "status5xx=1"]);
    let name = name_of(&sim);
    assert!(doc(&sim, &format!("/{name}"), Some("application/json"))
        .await
        .status()
        .is_server_error());
    assert!(get(&sim, "/_all_docs").await.status().is_server_error());
    assert!(get(&sim, "/_changes").await.status().is_server_error());
    assert_eq!(get(&sim, "/").await.status(), StatusCode::OK, "never on /");
    assert_eq!(sim.stats()["faults"]["status5xx"], 3);

    let sim = Sim::start(&["--packages", "50"], &["--faults", "reset=1"]);
    let err = client().get(format!("{}/{}", sim.url, name_of(&sim))).send().await;
    assert!(err.is_err(), "connection closed without an answer");

    let sim = Sim::start(&["--packages", "50"], &["--faults", "truncate=1"]);
    let resp = doc(&sim, &format!("/{}", name_of(&sim)), Some("application/json")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.is_err(), "body cut short of its Content-Length");

    let sim = Sim::start(&["--packages", "50"], &["--faults", "badjson=1"]);
    let resp = doc(&sim, &format!("/{}", name_of(&sim)), Some("application/json")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).is_err());

    let sim = Sim::start(&["--packages", "50"], &["--faults", "flap404=1"]);
    let name = name_of(&sim);
    assert_eq!(
        doc(&sim, &format!("/{name}"), Some("application/json")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(sim.truth().contains(&format!("{name}\t")), "it exists");

    let sim = Sim::start(&["--packages", "50"], &["--faults", "stall=1", "--stall-secs", "30"]);
    let slow = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = slow
        .get(format!("{}/{}", sim.url, name_of(&sim)))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn faults_repeat_with_the_seed() {
    let outcomes = |sim: &Sim, name: &str| {
        let (sim_url, name) = (sim.url.clone(), name.to_owned());
        async move {
            let mut out = Vec::new();
            for _ in 0..40 {
                let status = client()
                    .get(format!("{sim_url}/{name}"))
                    .header(ACCEPT, "application/json")
                    .send()
                    .await
                    .unwrap()
                    .status();
                out.push(status.as_u16());
            }
            out
        }
    };
    let a = Sim::start(&["--packages", "50", "--seed", "7"], &["--faults", "status5xx=0.5"]);
    let b = Sim::start(&["--packages", "50", "--seed", "7"], &["--faults", "status5xx=0.5"]);
    let name = names(&a)
        .into_iter()
        .find(|n| n.is_ascii() && !n.contains('/'))
        .unwrap();
    let (x, y) = (outcomes(&a, &name).await, outcomes(&b, &name).await);
    assert_eq!(x, y, "same seed, same faults");
    assert!(x.contains(&200) && x.iter().any(|s| *s >= 500), "{x:?}");
}

#[tokio::test]
async fn stats_count_routes_statuses_and_bytes_and_reset() {
    let sim = Sim::start(&["--packages", "20"], &[]);
    let name = names(&sim)
        .into_iter()
        .find(|n| n.is_ascii() && !n.contains('/'))
        .unwrap();
    let body = doc(&sim, &format!("/{name}"), Some("application/json"))
        .await
        .bytes()
        .await
        .unwrap();
    get(&sim, "/").await;
    get(&sim, "/_all_docs").await;
    get(&sim, "/_changes").await;
    get(&sim, "/nope-not-here").await;
    let s = sim.stats();
    assert_eq!(s["requests"], 5);
    assert_eq!(s["byStatus"]["200"], 4);
    assert_eq!(s["byStatus"]["404"], 1);
    assert_eq!(s["routes"]["packument"], 2);
    assert_eq!(s["routes"]["allDocs"], 1);
    assert_eq!(s["routes"]["changes"], 1);
    assert_eq!(s["routes"]["root"], 1);
    assert!(s["bytesSent"].as_u64().unwrap() >= body.len() as u64);
    sim.reset_stats();
    assert_eq!(sim.stats()["requests"], 0);
}

#[test]
fn sigterm_stops_it_cleanly() {
    let mut sim = Sim::start(&["--packages", "10"], &[]);
    let pid = sim.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = sim.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_names_file_is_served_in_byte_order() {
    let tmp = common::TempDir::new("names");
    let file = tmp.path().join("names.txt");
    std::fs::write(&file, "zebra\n@types/node\n\ncafé\nAardvark\n9lives\n-dash\nlodash\n").unwrap();
    let out = Command::new(BIN)
        .args(["sim", "--dump-index", "--names-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["-dash", "9lives", "@types/node", "Aardvark", "café", "lodash", "zebra"]
    );
}

#[test]
fn bad_flags_exit_2_with_a_message_naming_them() {
    for (args, needle) in [
        (vec!["--faults", "bogus=0.1"], "bogus"),
        (vec!["--faults", "reset=2"], "reset"),
        (vec!["--names-file", "/nonexistent/names.txt"], "/nonexistent/names.txt"),
        (vec!["--huge", "big=lots"], "lots"),
        (vec!["--huge", "big=1GB"], "1GB"),
        (vec!["--rate-limit", "-3"], "-3"),
    ] {
        let out = Command::new(BIN)
            .args(["sim", "--dump-index"])
            .args(&args)
            .output()
            .unwrap();
        common::assert_usage_error(&out, needle, &format!("{args:?}"));
    }
}

/// Every command raises its soft limit on open files to the hard limit (the simulator is the
/// quickest long-lived one to look at), so a busy service does not run out at 1024.
#[cfg(target_os = "linux")]
#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
    use std::io::{BufRead as _, BufReader};
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(BIN);
    cmd.args(["sim", "-q", "--port", "0", "--packages", "10"])
        .stdout(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = limit.rlim_max.min(256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start the simulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let row: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files row")
        .split_whitespace()
        .collect();
    let (soft, hard) = (row[3], row[4]);
    assert_eq!(soft, hard, "{limits}");
}
