//! `all-docs follow` end to end against `all-docs sim --changes-per-sec`: a bootstrap while
//! documents change, appear and are deleted, then the change feed; each test ends with the
//! replica's index equal to the simulator's truth at the final seq.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{all_docs, assert_index_is, assert_ok, run, store, Sim};

fn stats(store: &Path, sim: &Sim) -> serde_json::Value {
    let out = run(store, sim, &["cache", "stats"]);
    assert_ok(&out, "cache stats");
    serde_json::from_slice(&out.stdout).expect("stats JSON")
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
    let dir = store("follow-boot");
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn follow_killed_with_sigkill_then_resumed_loses_no_change() {
    let sim = Sim::start(&["--packages", "3000", "--seed", "22"], &["--changes-per-sec", "60"]);
    let dir = store("follow-kill9");
    sim.changes(false);
    assert_ok(&run(&dir, &sim, &["replicate"]), "replicate");
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn follow_needs_a_checkpoint_or_since() {
    let sim = Sim::start(&["--packages", "10"], &[]);
    let dir = store("follow-nocp");
    let out = run(&dir, &sim, &["follow", "--once"]);
    common::assert_usage_error(&out, "run `all-docs replicate` first", "follow without a checkpoint");
    let out = run(&dir, &sim, &["follow", "--once", "--since", "0"]);
    assert_ok(&out, "follow --since 0");
    assert_eq!(
        common::index_of(&dir, &sim),
        sim.truth(),
        "the whole feed from 0 is the corpus"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
