//! `all-docs follow` end to end against `all-docs sim --changes-per-sec`: a bootstrap while
//! documents change, appear and are deleted, then the change feed; each test ends with the
//! replica's index equal to the simulator's truth at the final seq.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{all_docs, all_docs_saying, assert_index_is, assert_ok, run, Sim, TempDir};

fn stats(store: &Path, sim: &Sim) -> serde_json::Value {
    let out = run(store, sim, &["cache", "stats"]);
    assert_ok(&out, "cache stats");
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

/// A simulator of `packages` changing `per_sec` times a second, with its changes paused, and a
/// replica of it made by `replicate` in a fresh folder for `tag`.
fn replicated_then_paused(tag: &str, packages: &str, seed: &str, per_sec: &str) -> (Sim, TempDir) {
    let sim = Sim::start(
        &["--packages", packages, "--seed", seed],
        &["--changes-per-sec", per_sec],
    );
    let dir = TempDir::new(tag);
    sim.changes(false);
    assert_ok(&run(dir.path(), &sim, &["replicate"]), "replicate");
    (sim, dir)
}

/// Stops the changes, lets `follow --once` catch up, and compares with the truth at that seq.
fn catch_up_and_compare(dir: &Path, sim: &Sim) -> serde_json::Value {
    sim.changes(false);
    let out = run(dir, sim, &["follow", "--once", "--give-up-after", "120"]);
    assert_ok(&out, "follow --once");
    assert_index_is(dir, sim, &sim.live_truth());
    let st = stats(dir, sim);
    let upstream = common::http("GET", &format!("{}/", sim.url))["update_seq"]
        .as_u64()
        .unwrap();
    assert_eq!(st["follow"]["checkpoint"].as_u64(), Some(upstream), "{st}");
    assert_eq!(st["follow"]["lagSeqs"].as_u64(), Some(0), "{st}");
    assert_eq!(st["follow"]["pending"].as_u64(), Some(0), "{st}");
    st
}

#[test]
fn bootstrap_while_changing_then_follow_equals_the_truth_despite_cdn_lag() {
    // Changes at 40/s during and after the bootstrap; the CDN serves the previous version
    // (or a 404 for a new package) for 2 s after each change.
    let sim = Sim::start(
        &["--packages", "4000", "--seed", "21"],
        &["--changes-per-sec", "40", "--cdn-lag-secs", "2"],
    );
    let dir_tmp = TempDir::new("follow-boot");
    let dir = dir_tmp.path().to_path_buf();
    let before = common::http("GET", &format!("{}/", sim.url))["update_seq"]
        .as_u64()
        .unwrap();
    assert_ok(&run(&dir, &sim, &["replicate"]), "replicate");
    let st = stats(&dir, &sim);
    let recorded = st["follow"]["checkpoint"]
        .as_u64()
        .expect("replicate recorded a checkpoint");
    assert!(recorded >= before, "{recorded} < {before}");
    // Follow for a while with changes flowing, then catch up with them paused.
    let mut child = all_docs(&dir, &sim, &["follow", "--interval", "0.5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(6));
    let _ = child.kill();
    let _ = child.wait();
    let st = catch_up_and_compare(&dir, &sim);
    assert!(
        st["deleted"].as_u64().unwrap() > 0,
        "deletions were applied as tombstones: {st}"
    );
}

/// The count in the run summary's "N packages deleted upstream during the run" (0 without it).
fn deletions_seen(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            rest.contains("deleted upstream during the run")
                .then(|| n.parse().ok())?
        })
        .unwrap_or(0)
}

#[test]
fn packages_deleted_while_replicate_runs_are_deletions_not_failures() {
    // 5 000 packages and 20 changes a second, a tenth of them deletions. One partition is
    // listed first, then its documents are fetched at 400 requests a second (about 12 s):
    // packages deleted in between answer 404 from then on, about one a second.
    let sim = Sim::start(&["--packages", "5000", "--seed", "23"], &["--changes-per-sec", "20"]);
    let dir_tmp = TempDir::new("follow-deleted-during-run");
    let dir = dir_tmp.path().to_path_buf();
    let pivots = common::TempDir::new("one-partition");
    let one_partition = pivots.path().join("pivots.json");
    std::fs::write(&one_partition, "[null]").unwrap();
    let pivots_arg = one_partition.to_str().unwrap();
    let out = all_docs_saying(&dir, &sim, &["replicate", "--max-rps", "400", "--pivots", pivots_arg])
        .output()
        .unwrap();
    assert_ok(&out, "replicate while packages are deleted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen = deletions_seen(&stderr);
    assert!(seen > 0, "some listed package was deleted before its fetch: {stderr}");
    // On a fresh replica every tombstone after the run is a deletion seen during it.
    let st = stats(&dir, &sim);
    assert_eq!(st["deleted"].as_u64(), Some(seen), "{st}\n{stderr}");
    catch_up_and_compare(&dir, &sim);
}

#[test]
fn fetch_list_of_a_package_deleted_upstream_reports_it_and_exits_1() {
    let (sim, tmp) = replicated_then_paused("fetch-list-deleted", "2000", "24", "50");
    let dir = tmp.path().to_path_buf();
    let stored: std::collections::BTreeSet<String> = common::index_of(&dir, &sim)
        .lines()
        .filter_map(|l| Some(l.split_once('\t')?.0.to_owned()))
        .collect();
    let since = common::http("GET", &format!("{}/", sim.url))["update_seq"]
        .as_u64()
        .unwrap();
    // Let changes flow until a stored package is deleted upstream.
    sim.changes(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    let deleted = loop {
        assert!(Instant::now() < deadline, "no stored package was deleted in 60 s");
        std::thread::sleep(Duration::from_millis(200));
        let feed = common::http("GET", &format!("{}/_changes?since={since}&limit=10000", sim.url));
        let gone = feed["results"].as_array().unwrap().iter().find_map(|r| {
            let name = r["id"].as_str()?;
            (r["deleted"] == true && stored.contains(name)).then(|| name.to_owned())
        });
        if let Some(name) = gone {
            break name;
        }
    };
    sim.changes(false);
    let truth = sim.live_truth();
    let live = truth.lines().find_map(|l| stored.get(l.split_once('\t')?.0)).unwrap();
    let list = dir.join("list.json");
    std::fs::write(&list, serde_json::to_string(&[&deleted, live]).unwrap()).unwrap();
    let out = run(&dir, &sim, &["packument", "fetch-list", list.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "asked for by name, gone: a failure\n{stderr}"
    );
    assert!(stderr.contains(&format!("{deleted}: deleted upstream")), "{stderr}");
    let index = common::index_of(&dir, &sim);
    assert!(
        !index.lines().any(|l| l.starts_with(&format!("{deleted}\t"))),
        "recorded as deleted"
    );
    assert!(index.lines().any(|l| l.starts_with(&format!("{live}\t"))));
}

#[test]
fn follow_killed_with_sigkill_then_resumed_loses_no_change() {
    let (sim, tmp) = replicated_then_paused("follow-kill9", "3000", "22", "60");
    let dir = tmp.path().to_path_buf();
    let start = stats(&dir, &sim)["follow"]["checkpoint"].as_u64().unwrap();
    sim.changes(true);
    for round in 0..3 {
        let mut child = all_docs(&dir, &sim, &["follow", "--interval", "0.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it once the checkpoint has moved in this round.
        let at = stats(&dir, &sim)["follow"]["checkpoint"].as_u64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while stats(&dir, &sim)["follow"]["checkpoint"].as_u64().unwrap() <= at {
            assert!(Instant::now() < deadline, "round {round}: follow made no progress");
            std::thread::sleep(Duration::from_millis(100 + 150 * round));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    let st = catch_up_and_compare(&dir, &sim);
    assert!(st["follow"]["checkpoint"].as_u64().unwrap() > start);
}

#[test]
fn follow_needs_a_checkpoint_or_since() {
    let sim = Sim::start(&["--packages", "10"], &[]);
    let dir_tmp = TempDir::new("follow-nocp");
    let dir = dir_tmp.path().to_path_buf();
    let out = run(&dir, &sim, &["follow", "--once"]);
    common::assert_usage_error(&out, "run `all-docs replicate` first", "follow without a checkpoint");
    let out = run(&dir, &sim, &["follow", "--once", "--since", "0"]);
    assert_ok(&out, "follow --since 0");
    assert_eq!(
        common::index_of(&dir, &sim),
        sim.truth(),
        "the whole feed from 0 is the corpus"
    );
}
