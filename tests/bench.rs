//! `all-docs bench --quick`: the benchmark harness itself works end to end (every scenario
//! runs and reports). The figures of a quick run are not checked: targets live in
//! BENCHMARKS.md, from a full run.

mod common;

use std::process::Command;

use common::{TempDir, BIN};

#[test]
fn quick_bench_runs_every_scenario_and_writes_a_report() {
    let tmp = TempDir::new("bench");
    let dir = tmp.path();
    let report = dir.join("BENCHMARKS.md");
    let out = Command::new(BIN)
        .args(["bench", "--quick", "--output"])
        .arg(&report)
        .arg("--workdir")
        .arg(dir.join("work"))
        .output()
        .expect("run the bench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&report).expect("report written");
    for (i, title) in [
        "Enumeration",
        "Goodput under rate limiting",
        "Loopback ceiling",
        "Huge documents",
        "Refresh",
        "Resume after kill -9",
        "Scale curve",
        "Full-registry projection",
        "Follow the change feed",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            text.contains(&format!("## {}. {title}", i + 1)),
            "section {title} missing:\n{text}"
        );
    }
    assert!(
        text.contains("- commit: `") && text.contains("cores"),
        "machine and commit recorded"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table
            .lines()
            .filter(|l| l
                .strip_prefix("| ")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit())))
            .count(),
        9,
        "{table}"
    );
}
