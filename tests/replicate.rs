//! Local replication end to end: the `all-docs` binary against `all-docs sim`, both real
//! processes on 127.0.0.1. Every test ends by comparing the replica's index with the
//! simulator's truth.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{all_docs, assert_ok, assert_replica_matches, run, Sim, TempDir, BIN};

#[test]
fn replicates_50k_packages_exactly_and_a_second_run_downloads_no_bodies() {
    let sim = Sim::start(&["--packages", "50000"], &[]);
    let dir_tmp = TempDir::new("50k");
    let dir = dir_tmp.path().to_path_buf();
    assert_ok(&run(&dir, &sim, &["replicate"]), "replicate");
    assert_replica_matches(&dir, &sim);

    sim.reset_stats();
    assert_ok(&run(&dir, &sim, &["replicate"]), "second replicate");
    let stats = sim.stats();
    assert_eq!(
        stats["routes"]["packument"], 0,
        "no packument requested on an unchanged upstream: {stats}"
    );
    assert!(
        stats["routes"]["allDocs"].as_u64().unwrap() >= 5,
        "it did list: {stats}"
    );
}

/// Names up to npm's 214 bytes, scoped and not, at the edges of where the file store shards a
/// name (2, 4 and 6 hex digits) and cuts it into folders (a file name holds 255 bytes, so 127
/// bytes is the longest name kept in one), are all replicated, listed in byte order and shown;
/// partitions whose pivots are such names too.
#[test]
fn names_of_every_legal_length_are_replicated() {
    let dir = TempDir::new("long-names");
    let p = "a".repeat(126);
    let mut names: Vec<String> = vec![
        "a".into(),
        "ab".into(),
        "abc".into(),
        "abcd".into(),
        p.clone(),
        format!("{p}a"),
        format!("{p}ab"),
        format!("{p}a-{}", "x".repeat(86)),
        format!("{p}b"),
        "z".repeat(214),
        format!("@{}/{}", "s".repeat(3), "n".repeat(209)),
        format!("@{}/{}", "s".repeat(150), "n".repeat(62)),
        format!("@{}/x", "s".repeat(125)),
        format!("@{}/xy", "s".repeat(125)),
        format!("{}-ü", "c".repeat(211)),
        "lodash".into(),
        "@types/node".into(),
    ];
    for n in &names {
        assert!(n.len() <= 214, "{n}");
    }
    names.sort();
    let list = dir.path().join("names.txt");
    std::fs::write(&list, names.join("\n")).unwrap();
    let sim = Sim::start(&["--names-file", list.to_str().unwrap()], &[]);
    let store = dir.path().join("replica");
    assert_ok(&run(&store, &sim, &["replicate"]), "replicate");
    assert_replica_matches(&store, &sim);
    let longest = &names.iter().max_by_key(|n| n.len()).unwrap()[..];
    let shown = run(&store, &sim, &["show", longest]);
    assert_ok(&shown, "show the longest name");
    let doc: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(doc["name"], longest);

    // Pivots that are long names make partitions with long ends.
    let pivots = dir.path().join("pivots.json");
    let cuts = [serde_json::Value::Null, format!("{p}a").into(), "z".repeat(214).into()];
    std::fs::write(&pivots, serde_json::to_string(&cuts).unwrap()).unwrap();
    let refreshed = run(
        &store,
        &sim,
        &["partition", "refresh", "--pivots", pivots.to_str().unwrap()],
    );
    assert_ok(&refreshed, "partition refresh with long pivots");
    assert_replica_matches(&store, &sim);
}

/// `partition list` shows each stored range with its rows (adding up to the replica), and
/// `cache stats --format table` the same counts as the JSON, for people.
#[test]
fn stored_ranges_and_counts_are_reported_for_programs_and_people() {
    let sim = Sim::start(&["--packages", "600", "--seed", "5"], &[]);
    let tmp = TempDir::new("partition-list");
    let dir = tmp.path().join("replica");
    let pivots = tmp.path().join("pivots.json");
    std::fs::write(&pivots, r#"[null, "@", "m"]"#).unwrap();
    assert_ok(
        &run(&dir, &sim, &["replicate", "--pivots", pivots.to_str().unwrap()]),
        "replicate",
    );

    let listed = run(&dir, &sim, &["partition", "list", "--format", "json"]);
    assert_ok(&listed, "partition list");
    let ranges: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let ranges = ranges.as_array().unwrap();
    let ends: Vec<(&serde_json::Value, &serde_json::Value)> =
        ranges.iter().map(|r| (&r["startKey"], &r["endKey"])).collect();
    assert_eq!(
        ends,
        [
            (&serde_json::Value::Null, &serde_json::json!("@")),
            (&serde_json::json!("@"), &serde_json::json!("m")),
            (&serde_json::json!("m"), &serde_json::Value::Null),
        ]
    );
    let rows: u64 = ranges.iter().map(|r| r["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows as usize, sim.truth().lines().count());
    assert!(ranges
        .iter()
        .all(|r| r["bytes"].as_u64().unwrap() > 0 && r["fetchedAt"].as_u64().unwrap() > 0));

    let table = run(&dir, &sim, &["partition", "list"]);
    assert_ok(&table, "partition list (table)");
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three ranges:\n{table}");
    assert!(lines[0].starts_with("start") && lines[0].contains("rows"), "{table}");
    assert!(lines[1].starts_with("(open)") && lines[3].contains("(open)"), "{table}");

    let stats = run(&dir, &sim, &["cache", "stats", "--format", "table"]);
    assert_ok(&stats, "cache stats --format table");
    let stats = String::from_utf8(stats.stdout).unwrap();
    let packuments = stats
        .lines()
        .find_map(|l| l.strip_prefix("packuments"))
        .map(str::trim)
        .expect("a packuments line");
    assert_eq!(packuments, rows.to_string(), "{stats}");
    assert!(stats.lines().any(|l| l.starts_with("follow.checkpoint")), "{stats}");
}

#[test]
fn a_rate_limited_upstream_sees_no_violations_with_or_without_a_known_limit() {
    let sim = Sim::start(
        &["--packages", "4000"],
        &[
            "--rate-limit",
            "400",
            "--burst",
            "40",
            "--retry-after",
            "1",
            "--penalty-extends",
        ],
    );
    for (tag, extra) in [("known", vec!["--max-rps", "380"]), ("unknown", vec![])] {
        let dir_tmp = TempDir::new(&format!("rl-{tag}"));
        let dir = dir_tmp.path().to_path_buf();
        sim.reset_stats();
        let mut args = vec!["replicate"];
        args.extend(extra.iter().copied());
        assert_ok(&run(&dir, &sim, &args), "replicate under a rate limit");
        let stats = sim.stats();
        assert_eq!(stats["violations"], 0, "{tag}: {stats}");
        assert_replica_matches(&dir, &sim);
    }
}

#[test]
fn faults_lose_nothing() {
    let sim = Sim::start(
        &["--packages", "5000"],
        &[
            "--faults",
            "status5xx=0.05,reset=0.02,truncate=0.02,flap404=0.01,badjson=0.02",
        ],
    );
    let dir_tmp = TempDir::new("faults");
    let dir = dir_tmp.path().to_path_buf();
    assert_ok(&run(&dir, &sim, &["replicate"]), "replicate under faults");
    let stats = sim.stats();
    for kind in ["status5xx", "reset", "truncate", "flap404", "badjson"] {
        assert!(
            stats["faults"][kind].as_u64().unwrap() > 0,
            "{kind} was injected: {stats}"
        );
    }
    assert_replica_matches(&dir, &sim);
}

#[test]
fn a_transient_404_never_removes_a_stored_document() {
    let sim = Sim::start(&["--packages", "300"], &[]);
    let dir_tmp = TempDir::new("flap");
    let dir = dir_tmp.path().to_path_buf();
    assert_ok(&run(&dir, &sim, &["replicate"]), "first replicate");
    let port: u16 = sim.url.rsplit(':').next().unwrap().parse().unwrap();
    drop(sim);
    // Same corpus and origin, every packument answer is now a 404: nothing may change.
    let sim = Sim::start_on(port, &["--packages", "300"], &["--faults", "flap404=1"]);
    let names: Vec<String> = sim
        .truth()
        .lines()
        .take(3)
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    let list = dir.join("list.json");
    std::fs::write(&list, serde_json::to_string(&names).unwrap()).unwrap();
    let out = run(&dir, &sim, &["packument", "fetch-list", list.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "404s for listed names are failures, not deletions"
    );
    assert_replica_matches(&dir, &sim);
}

#[test]
fn killed_with_sigkill_then_resumed_gives_the_same_replica_for_little_extra() {
    let sim = Sim::start(&["--packages", "12000"], &["--rate-limit", "3000", "--burst", "100"]);
    let dir_tmp = TempDir::new("kill9");
    let dir = dir_tmp.path().to_path_buf();
    let mut child = all_docs(&dir, &sim, &["replicate", "--max-rps", "3000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once about half the documents are stored.
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim.stats()["routes"]["packument"].as_u64().unwrap_or(0) < 6_000 {
        assert!(Instant::now() < deadline, "replication made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_ok(&run(&dir, &sim, &["replicate"]), "resumed replicate");
    assert_replica_matches(&dir, &sim);
    let stats = sim.stats();
    let requests = stats["routes"]["packument"].as_u64().unwrap() + stats["routes"]["allDocs"].as_u64().unwrap();
    let clean = 12_000 + 20;
    assert!(
        requests as f64 <= clean as f64 * 1.05,
        "{requests} requests over both runs vs {clean} for a clean run"
    );
}

#[test]
fn a_100_mb_packument_is_streamed_with_bounded_memory() {
    let sim = Sim::start(&["--packages", "50", "--huge", "huge-doc=100MB"], &[]);
    let dir_tmp = TempDir::new("huge");
    let dir = dir_tmp.path().to_path_buf();
    let child = all_docs(&dir, &sim, &["replicate"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, max_rss_kb) = wait_with_rusage(child);
    assert!(status.success(), "replicate failed");
    assert_replica_matches(&dir, &sim);
    let stored = run(&dir, &sim, &["show", "huge-doc"]);
    assert_ok(&stored, "show");
    assert_eq!(
        stored.stdout.len(),
        100_000_000 + 1,
        "the whole document (plus a newline)"
    );
    assert!(
        max_rss_kb < 150 * 1024,
        "peak RSS {max_rss_kb} KiB while replicating a 100 MB document"
    );
}

/// Waits for `child` and returns its exit status and peak RSS in KiB (from `wait4`).
fn wait_with_rusage(mut child: Child) -> (std::process::ExitStatus, i64) {
    use std::os::unix::process::ExitStatusExt as _;
    // Drain stderr so the child never blocks on a full pipe.
    let err = child.stderr.take();
    let drain = std::thread::spawn(move || {
        if let Some(mut e) = err {
            let mut sink = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut sink);
            sink
        } else {
            String::new()
        }
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain syscall on our own child; `usage` is a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let stderr = drain.join().unwrap_or_default();
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        eprintln!("{stderr}");
    }
    (status, usage.ru_maxrss)
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2() {
    let dir_tmp = TempDir::new("bad");
    let dir = dir_tmp.path().to_path_buf();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["replicate"], "no replication origin"),
        (
            vec![
                "replicate",
                "--replicate-origin",
                "ftp://x",
                "--registry-origin",
                "http://127.0.0.1:9",
            ],
            "http://",
        ),
        (
            vec![
                "replicate",
                "--replicate-origin",
                "http://u:p@127.0.0.1:9",
                "--registry-origin",
                "http://127.0.0.1:9",
            ],
            "credentials",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .arg("--store")
            .arg(&dir)
            .env_remove("ALL_DOCS_REPLICATE_ORIGIN")
            .env_remove("ALL_DOCS_REGISTRY_ORIGIN")
            .env("HOME", &dir)
            .output()
            .unwrap();
        common::assert_usage_error(&out, needle, &format!("{args:?}"));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let pivots = dir.join("pivots.js");
    std::fs::write(&pivots, "module.exports = [null, 'b', 'a']").unwrap();
    let out = Command::new(BIN)
        .args(["partition", "refresh", "--store"])
        .arg(&dir)
        .args([
            "--replicate-origin",
            "http://127.0.0.1:9",
            "--registry-origin",
            "http://127.0.0.1:9",
            "--pivots",
        ])
        .arg(&pivots)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pivots.js") && stderr.contains("not sorted"),
        "{stderr}"
    );
}
