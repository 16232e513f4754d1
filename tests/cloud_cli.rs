//! Every replica command works on the cloud replica: the same replica in a folder and in a
//! bucket (fake-gcs-server on 127.0.0.1) answers byte for byte the same. (A store spec that
//! names nothing usable is bad input: rows C25 and C26 of `tests/bad_input.rs`.)

mod common;

use std::path::Path;
use std::process::Output;

use common::cloud::Gcs;
use common::{all_docs, assert_ok, Sim, TempDir};

/// `all-docs ARGS --store STORE` against `sim`, with the emulator for `gs://` stores.
fn cli(store: &str, sim: &Sim, gcs: &Gcs, args: &[&str]) -> Output {
    all_docs(Path::new(store), sim, args)
        .env("STORAGE_EMULATOR_HOST", &gcs.url)
        .output()
        .expect("run all-docs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_and_a_bucket_holding_the_same_replica_answer_the_same() {
    let sim = Sim::start(&["--packages", "1500", "--seed", "3", "--huge", "big-doc=9MB"], &[]);
    let gcs = Gcs::start().await;
    gcs.create_bucket("replica").await;
    let dir = TempDir::new("cloud-cli");
    let folder = dir.path().join("replica");
    let folder = folder.to_str().unwrap();
    let bucket = "gs://replica/some/prefix";

    for store in [folder, bucket] {
        assert_ok(&cli(store, &sim, &gcs, &["replicate", "--partitions", "4"]), store);
        assert_ok(&cli(store, &sim, &gcs, &["follow", "--once"]), store);
    }
    let truth = sim.truth();
    let same = |args: &[&str]| {
        let (a, b) = (cli(folder, &sim, &gcs, args), cli(bucket, &sim, &gcs, args));
        assert_ok(&a, &format!("{args:?} on the folder"));
        assert_ok(&b, &format!("{args:?} on the bucket"));
        assert_eq!(stdout(&a), stdout(&b), "{args:?}");
        stdout(&a)
    };
    assert_eq!(same(&["cache", "create-index"]), truth);
    let names: Vec<&str> = truth.lines().map(|l| l.split('\t').next().unwrap()).collect();
    for name in names.iter().step_by(97).chain(["big-doc"].iter()) {
        let shown = same(&["show", name]);
        let doc: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(doc["name"], *name);
        let selected = same(&[
            "show",
            name,
            "--select",
            ".name, (.versions // {} | length)",
            "--format",
            "lines",
        ]);
        assert!(selected.starts_with(&format!("{name}\n")), "{selected}");
    }
    same(&["cache", "validate"]);
    same(&["partition", "plan", "--count", "5"]);

    // The same ranges with the same rows and sizes (each store listed them at its own time).
    let ranges = |store: &str| {
        let out = cli(store, &sim, &gcs, &["partition", "list", "--format", "json"]);
        assert_ok(&out, &format!("partition list on {store}"));
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for r in v.as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("fetchedAt");
        }
        v
    };
    assert_eq!(ranges(folder), ranges(bucket));
    // A first run into an empty replica uses the built-in split.
    assert_eq!(
        ranges(bucket).as_array().unwrap().len(),
        all_docs::commands::default_partition_count()
    );

    let counts = |out: &str| {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        ["packuments", "ok", "unpublished", "deleted", "bytes"].map(|k| v[k].as_u64().unwrap())
    };
    let (a, b) = (
        cli(folder, &sim, &gcs, &["cache", "stats"]),
        cli(bucket, &sim, &gcs, &["cache", "stats"]),
    );
    assert_ok(&a, "stats on the folder");
    assert_ok(&b, "stats on the bucket");
    assert_eq!(counts(&stdout(&a)), counts(&stdout(&b)));
    assert_eq!(counts(&stdout(&a))[0] as usize, names.len());

    // Export reads the bucket too; fetch-list writes to it.
    let list = dir.path().join("list.json");
    std::fs::write(&list, serde_json::to_string(&names[..10]).unwrap()).unwrap();
    for (store, out) in [(folder, "out-folder"), (bucket, "out-bucket")] {
        let out = dir.path().join(out);
        let args = ["packument", "export", list.to_str().unwrap(), out.to_str().unwrap()];
        assert_ok(&cli(store, &sim, &gcs, &args), "export");
        let fetched = cli(store, &sim, &gcs, &["packument", "fetch-list", list.to_str().unwrap()]);
        assert_ok(&fetched, "fetch-list");
    }
    for name in &names[..10] {
        let file = format!("{name}.json");
        let a = std::fs::read(dir.path().join("out-folder").join(&file)).unwrap();
        let b = std::fs::read(dir.path().join("out-bucket").join(&file)).unwrap();
        assert_eq!(a, b, "{name}");
    }

    // The bucket holds the layout any GCS client can read, under the prefix.
    let objects = gcs.list("replica", "some/prefix/v1/packument/").await;
    assert_eq!(objects.len(), names.len());
}
