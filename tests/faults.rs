//! The fault matrix: `all-docs replicate` against `all-docs sim --faults ...`, one upstream
//! misbehaviour per case, each ending with the replica's index equal to the simulator's truth
//! and `cache validate` clean. Then the process killed with SIGKILL at seeded random points and
//! resumed, and two processes on one store at once. The service's half is in
//! `tests/service_faults.rs`, the bad-input table in `tests/bad_input.rs`.

use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::{all_docs, assert_index_is, assert_ok, assert_replica_matches, run, Sim, TempDir};

/// Replicates `packages` documents from a simulator started with `sim_extra`, passing `args`
/// to `replicate`; asserts the replica equals the truth and returns the simulator's stats.
fn survives(tag: &str, packages: &str, sim_extra: &[&str], args: &[&str]) -> serde_json::Value {
    let sim = Sim::start(&["--packages", packages, "--seed", "3"], sim_extra);
    let dir_tmp = TempDir::new(tag);
    let dir = dir_tmp.path().to_path_buf();
    let started = Instant::now();
    let out = run(&dir, &sim, &[&["replicate"], args].concat());
    assert_ok(&out, &format!("{tag}: replicate"));
    let stats = sim.stats();
    assert_replica_matches(&dir, &sim);
    eprintln!("{tag}: {:?}, {stats}", started.elapsed());
    stats
}

/// Asserts the simulator injected `kind` at least once.
fn injected(stats: &serde_json::Value, kind: &str) {
    assert!(
        stats["faults"][kind].as_u64().unwrap_or(0) > 0,
        "{kind} was injected: {stats}"
    );
}

#[test]
fn bursts_of_5xx_lose_nothing() {
    // Half of all answers are 500/502/503: runs of several in a row are common.
    injected(
        &survives("f-5xx", "1000", &["--faults", "status5xx=0.5"], &[]),
        "status5xx",
    );
}

#[test]
fn connection_resets_lose_nothing() {
    injected(&survives("f-reset", "3000", &["--faults", "reset=0.2"], &[]), "reset");
}

#[test]
fn truncated_bodies_are_never_stored() {
    // The length is announced in full and the connection closes early: a short body must be
    // refused, not stored (`cache validate` and the revs would show it).
    injected(
        &survives("f-trunc", "3000", &["--faults", "truncate=0.2"], &[]),
        "truncate",
    );
}

#[test]
fn stalls_beyond_the_client_timeout_are_abandoned_and_retried() {
    // A stalled answer waits 20 s; the client gives up on silence after 1 s.
    injected(
        &survives(
            "f-stall",
            "2000",
            &["--faults", "stall=0.02", "--stall-secs", "20"],
            &["--read-timeout", "1"],
        ),
        "stall",
    );
}

#[test]
fn invalid_json_bodies_are_never_stored() {
    injected(
        &survives("f-json", "3000", &["--faults", "badjson=0.2"], &[]),
        "badjson",
    );
}

#[test]
fn a_transient_404_for_an_existing_package_does_not_tombstone_it() {
    // Every package listed by `_all_docs` exists; a 404 for one is the CDN flapping. A tombstone
    // would drop it from the index, which must equal the truth.
    injected(
        &survives("f-404", "2000", &["--faults", "flap404=0.05"], &[]),
        "flap404",
    );
}

#[test]
fn a_429_storm_with_a_long_retry_after_is_waited_out_without_violations() {
    // 150 requests/s, then 429 with `Retry-After: 5`; every request inside the window restarts
    // it, so a client that does not wait never gets through.
    let stats = survives(
        "f-429",
        "1500",
        &[
            "--rate-limit",
            "150",
            "--burst",
            "30",
            "--retry-after",
            "5",
            "--penalty-extends",
        ],
        &[],
    );
    assert!(
        stats["byStatus"]["429"].as_u64().unwrap_or(0) > 0,
        "a storm happened: {stats}"
    );
    assert_eq!(stats["violations"], 0, "{stats}");
}

#[test]
fn cdn_lag_stale_documents_and_5xx_end_equal_to_the_truth() {
    // Documents change at 30/s during the run, the CDN serves the previous version for 2 s
    // after a change, and some answers fail: replicate, then follow the feed to the end.
    let sim = Sim::start(
        &["--packages", "2000", "--seed", "8"],
        &[
            "--changes-per-sec",
            "30",
            "--cdn-lag-secs",
            "2",
            "--faults",
            "status5xx=0.05",
        ],
    );
    let dir_tmp = TempDir::new("f-cdn");
    let dir = dir_tmp.path().to_path_buf();
    assert_ok(&run(&dir, &sim, &["replicate"]), "replicate");
    sim.changes(false);
    assert_ok(
        &run(&dir, &sim, &["follow", "--once", "--give-up-after", "120"]),
        "follow --once",
    );
    assert_index_is(&dir, &sim, &sim.live_truth());
    let stats = sim.stats();
    assert!(stats["faults"]["status5xx"].as_u64().unwrap_or(0) > 0, "{stats}");
}

/// A small deterministic generator (SplitMix64), so each seed kills at its own points.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn killed_with_sigkill_at_random_points_then_resumed_loses_nothing() {
    const PACKAGES: u64 = 2500;
    let mut kills = 0;
    for seed in 1..=5u64 {
        let sim = Sim::start(
            &["--packages", &PACKAGES.to_string(), "--seed", &seed.to_string()],
            &["--faults", "status5xx=0.02"],
        );
        let dir_tmp = TempDir::new(&format!("f-kill-{seed}"));
        let dir = dir_tmp.path().to_path_buf();
        let mut rng = seed;
        // One to three kills per seed, each after a random number of upstream requests (the
        // first ones can land while partitions are still being listed).
        let rounds = 1 + splitmix(&mut rng) % 3;
        for _ in 0..rounds {
            let before = sim.stats()["requests"].as_u64().unwrap_or(0);
            let after = 1 + splitmix(&mut rng) % (PACKAGES / 2);
            let mut child = all_docs(&dir, &sim, &["replicate"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start replicate");
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if child.try_wait().expect("try_wait").is_some() {
                    break; // finished before its kill point
                }
                if sim.stats()["requests"].as_u64().unwrap_or(0) >= before + after {
                    child.kill().expect("SIGKILL");
                    kills += 1;
                    eprintln!("seed {seed}: killed after {after} requests");
                    break;
                }
                assert!(Instant::now() < deadline, "seed {seed}: no progress");
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.wait();
        }
        assert_ok(&run(&dir, &sim, &["replicate"]), "the resumed replicate");
        assert_replica_matches(&dir, &sim);
        // Writes cut by a kill leave their temporary files (most seeds do); once they are an
        // hour old, `cache validate` removes them and nothing else. One more is planted, the
        // way a killed checkpoint write leaves it, so the sweep always has work.
        let mut leftovers = temporary_files(&dir);
        eprintln!("seed {seed}: {} temporary files left by the kills", leftovers.len());
        let checkpoints = std::fs::read_dir(dir.join("v1/checkpoint")).expect("a checkpoint folder");
        let checkpoint = checkpoints.flatten().next().expect("a checkpoint").path();
        let origin = checkpoint.file_name().unwrap().to_string_lossy().into_owned();
        let planted = checkpoint.with_file_name(format!(".{origin}.4194304.0.tmp"));
        std::fs::write(&planted, b"{\"seq\":").unwrap();
        leftovers.push(planted);
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        for path in &leftovers {
            let file = std::fs::File::options().write(true).open(path).expect("a leftover");
            file.set_modified(two_hours_ago).expect("backdate");
        }
        let validated = run(&dir, &sim, &["cache", "validate"]);
        assert_ok(&validated, "cache validate after the kills");
        let said = String::from_utf8_lossy(&validated.stdout);
        assert!(
            said.contains(&format!("removed {} temporary files", leftovers.len())),
            "{said}"
        );
        assert_eq!(temporary_files(&dir), Vec::<std::path::PathBuf>::new());
        assert_replica_matches(&dir, &sim);
    }
    assert!(kills >= 5, "{kills} kills landed over 5 seeds");
}

/// Files of the store whose names start with a dot: the temporary files of writes.
fn temporary_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn two_replicate_processes_on_one_store_leave_no_corrupt_or_partial_entry() {
    let sim = Sim::start(&["--packages", "5000", "--seed", "4"], &["--faults", "status5xx=0.02"]);
    let dir_tmp = TempDir::new("f-two");
    let dir = dir_tmp.path().to_path_buf();
    let spawn = || {
        all_docs(&dir, &sim, &["replicate"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start replicate")
    };
    let (a, b) = (spawn(), spawn());
    for (name, child) in [("first", a), ("second", b)] {
        let out = child.wait_with_output().expect("wait");
        assert_ok(&out, &format!("the {name} of two concurrent replicates"));
    }
    assert_replica_matches(&dir, &sim);
    assert_eq!(
        temporary_files(&dir),
        Vec::<std::path::PathBuf>::new(),
        "left by either writer"
    );
}
