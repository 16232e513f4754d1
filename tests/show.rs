//! `all-docs show NAME[@VERSION|@TAG] [--select JQ] [--format json|ndjson|lines]` on a replica
//! of the simulator: versions and dist-tags, jq selections, and the three output formats. (Its
//! bad inputs are rows C27 to C30 of `tests/bad_input.rs`.)

mod common;

use std::path::Path;
use std::process::Output;

use common::{assert_ok, run, Sim, TempDir};
use serde_json::Value;

/// `show ARGS` on the replica at `store`, which must succeed; its stdout.
fn show(store: &Path, sim: &Sim, args: &[&str]) -> String {
    let out = run(store, sim, &[&["show"], args].concat());
    assert_ok(&out, &format!("show {args:?}"));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The stored document of `name`, as `show NAME` prints it.
fn document(store: &Path, sim: &Sim, name: &str) -> Value {
    serde_json::from_str(&show(store, sim, &[name])).expect("the document is JSON")
}

fn versions(doc: &Value) -> Vec<String> {
    doc["versions"]
        .as_object()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn show_selects_versions_and_dist_tags_with_jq() {
    let sim = Sim::start(&["--packages", "300", "--seed", "11"], &[]);
    let dir = TempDir::new("show");
    let store = dir.path().join("replica");
    assert_ok(&run(&store, &sim, &["replicate"]), "replicate");

    // A package with several versions, and a scoped one with at least one.
    let truth = sim.truth();
    let names: Vec<&str> = truth.lines().map(|l| l.split('\t').next().unwrap()).collect();
    let pick = |scoped: bool, at_least: usize| {
        names
            .iter()
            .filter(|n| n.starts_with('@') == scoped)
            .map(|n| (n.to_string(), document(&store, &sim, n)))
            .find(|(_, doc)| versions(doc).len() >= at_least && doc["dist-tags"]["latest"].is_string())
            .expect("the corpus has such a package")
    };
    let (name, doc) = pick(false, 2);
    let (scoped, scoped_doc) = pick(true, 1);

    // A selection on the whole document.
    assert_eq!(
        show(&store, &sim, &[&name, "--select", ".name"]),
        format!("\"{name}\"\n")
    );
    assert_eq!(
        show(&store, &sim, &[&name, "--select", ".name", "--format", "lines"]),
        format!("{name}\n"),
        "lines prints a string raw"
    );

    // `@latest` is the version the dist-tag points to.
    let latest = doc["dist-tags"]["latest"].as_str().unwrap();
    assert_eq!(
        show(&store, &sim, &[&format!("{name}@latest"), "--select", ".version"]),
        format!("\"{latest}\"\n")
    );

    // `@VERSION` is that version's object.
    let version = versions(&doc).into_iter().next().unwrap();
    let spec = format!("{name}@{version}");
    let integrity = &doc["versions"][&version]["dist"]["integrity"];
    assert!(integrity.is_string(), "{integrity}");
    assert_eq!(
        show(&store, &sim, &[&spec, "--select", ".dist.integrity"]),
        format!("{integrity}\n")
    );
    let whole: Value = serde_json::from_str(&show(&store, &sim, &[&spec])).unwrap();
    assert_eq!(whole, doc["versions"][&version], "the version object, unselected");

    // Several results: one per line, as JSON or raw.
    let mut keys = versions(&doc);
    keys.sort();
    let expected: String = keys.iter().map(|k| format!("\"{k}\"\n")).collect();
    assert_eq!(show(&store, &sim, &[&name, "--select", ".versions | keys[]"]), expected);
    let raw: String = keys.iter().map(|k| format!("{k}\n")).collect();
    assert_eq!(
        show(
            &store,
            &sim,
            &[&name, "--select", ".versions | keys[]", "--format", "lines"]
        ),
        raw
    );
    let objects = show(
        &store,
        &sim,
        &[&name, "--select", ".versions[] | {version}", "--format", "ndjson"],
    );
    assert_eq!(objects.lines().count(), keys.len());
    for line in objects.lines() {
        let v: Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(keys.contains(&v["version"].as_str().unwrap().to_owned()), "{v}");
    }

    // The whole document as one line of JSON.
    let one_line = show(&store, &sim, &[&name, "--format", "ndjson"]);
    assert_eq!(one_line.lines().count(), 1);
    assert_eq!(serde_json::from_str::<Value>(&one_line).unwrap(), doc);

    // A scoped name with a version: the version separator is the last `@`.
    let scoped_version = versions(&scoped_doc).into_iter().last().unwrap();
    assert_eq!(
        show(
            &store,
            &sim,
            &[
                &format!("{scoped}@{scoped_version}"),
                "--select",
                ".version",
                "--format",
                "lines"
            ]
        ),
        format!("{scoped_version}\n")
    );
    assert_eq!(
        show(&store, &sim, &[&scoped, "--select", ".name", "--format", "lines"]),
        format!("{scoped}\n")
    );

    // A version the document does not have: not found (exit 1), naming both.
    let out = run(
        &store,
        &sim,
        &["show", &format!("{scoped}@9999.0.0-none"), "--select", "."],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("`{scoped}` has no version or dist-tag `9999.0.0-none`")),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // A filter that does not parse: bad input (exit 2), naming it.
    let out = run(&store, &sim, &["show", &name, "--select", ".versions | keys["]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--select `.versions | keys[`"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}
