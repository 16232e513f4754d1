//! The fuzz targets' properties (`fuzz/checks.rs`) over the committed corpus and every input a
//! fuzzer once crashed on (`fuzz/regressions/<target>/`), on stable and without libFuzzer: a
//! short, deterministic run of the fuzzing in the test suite.

use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("pivots", checks::pivots),
    ("work_item", checks::work_item),
    ("envelope", checks::envelope),
    ("keys", checks::keys),
    ("all_docs_page", checks::all_docs_page),
    ("changes_page", checks::changes_page),
    ("json_check", checks::json_check),
];

/// Runs `check` over every file in `dir`; returns how many there were.
fn run_dir(dir: &Path, check: Check) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for entry in entries {
        let path = entry.expect("read the corpus folder").path();
        let data = std::fs::read(&path).expect("read a corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its fuzz check", path.display());
        n += 1;
    }
    n
}

#[test]
fn every_corpus_input_and_every_past_crash_passes_its_target_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, check) in TARGETS {
        let corpus = run_dir(&root.join("corpus").join(target), *check);
        assert!(corpus >= 2, "fuzz/corpus/{target} has seeds ({corpus})");
        run_dir(&root.join("regressions").join(target), *check);
    }
}

#[test]
fn the_regression_folders_hold_the_inputs_the_fuzzers_found() {
    // Each finding stays as an input (and a named unit test next to the code it fixed).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    assert!(run_dir(&root.join("keys"), checks::keys) >= 1);
    assert!(run_dir(&root.join("json_check"), checks::json_check) >= 3);
}
