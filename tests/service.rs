//! The Cloud Run shape, black-box: the official Pub/Sub emulator pushes to `all-docs serve`,
//! which fetches from `all-docs sim` and stores into fake-gcs-server (or a folder). Everything
//! runs on 127.0.0.1 on random ports.

mod common;

use std::time::Duration;

use common::cloud::{integrity_of, parse_index, wait_until, wait_until_or, Gcs, PubSub, Service};
use common::{all_docs, assert_ok, index_of, Sim, TempDir};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_set_replicates_20k_packages_into_the_bucket_and_redelivery_changes_nothing() {
    let sim = Sim::start(&["--packages", "20000", "--seed", "6"], &[]);
    let (pubsub, gcs) = tokio::join!(PubSub::start(), Gcs::start());
    gcs.create_bucket("replica").await;
    let service = Service::for_sim(&sim.url, &pubsub, "gs://replica", Some(&gcs), &[]);
    // No retry policy: the emulator's (0.8.20) retry-policy backoff stops redelivering for good
    // once its expiry task meets a message nacked by several failures at once (seen in CI).
    pubsub.setup(&service.url, &["--no-retry-policy", "--max-delivery-attempts", "10"]);
    pubsub.publish(&["--partitions", "16"]);

    let truth = parse_index(&sim.truth());
    assert_eq!(truth.len(), 20_000);
    // Listing is slow in fake-gcs-server's memory backend (it walks every object), so the
    // waits look rarely and first at the service's own count of finished items.
    wait_until("16 partitions committed", Duration::from_secs(600), async || {
        tokio::time::sleep(Duration::from_secs(2)).await;
        service.done_count() >= 16 + 20_000 && gcs.list("replica", "v1/partition/").await.len() == 16
    })
    .await;
    wait_until(
        "the bucket's index equal to the upstream's",
        Duration::from_secs(300),
        async || {
            tokio::time::sleep(Duration::from_secs(5)).await;
            gcs.index("replica").await == truth
        },
    )
    .await;
    assert!(
        pubsub.pull("packument-dead-letter-pull").await.is_empty(),
        "nothing was dead-lettered"
    );
    // The command line reads the bucket the service filled, through the same store interface.
    let cli = |args: &[&str]| {
        all_docs(std::path::Path::new("gs://replica"), &sim, args)
            .env("STORAGE_EMULATOR_HOST", &gcs.url)
            .output()
            .expect("run all-docs")
    };
    let index = cli(&["cache", "create-index"]);
    assert_ok(&index, "cache create-index on the bucket");
    assert_eq!(String::from_utf8(index.stdout).unwrap(), sim.truth());
    assert_ok(&cli(&["cache", "validate"]), "cache validate on the bucket");

    // Redeliveries: the same partition-set again, and packument items by hand. Nothing is
    // duplicated or rewritten differently; each object still matches its integrity.
    let before = gcs.list("replica", "v1/").await;
    let done_before = service.done_count();
    let requests_before = sim.stats()["routes"]["packument"].as_u64().unwrap();
    pubsub.publish(&["--partitions", "16"]);
    for name in truth.keys().take(20) {
        let item = format!(
            r#"{{"type":"packument","payload":{{"packageName":{}}}}}"#,
            Value::from(name.as_str())
        );
        pubsub.publish_raw("packument", item.as_bytes()).await;
    }
    wait_until("the redelivered work done", Duration::from_secs(120), async || {
        service.done_count() >= done_before + 1 + 16 + 20
    })
    .await;
    let after = gcs.list("replica", "v1/").await;
    assert_eq!(after.len(), before.len(), "no new objects");
    let packuments = after
        .iter()
        .filter(|o| o["name"].as_str().unwrap().starts_with("v1/packument/"));
    assert_eq!(packuments.count(), 20_000);
    // Unchanged revs: the partitions published nothing, so no document was fetched again except
    // the 20 asked for by hand (conditional requests: 304s).
    let requests_after = sim.stats()["routes"]["packument"].as_u64().unwrap();
    assert!(
        requests_after - requests_before <= 20,
        "{requests_before} -> {requests_after}"
    );
    for object in after.iter().step_by(997) {
        let name = object["name"].as_str().unwrap();
        let body = gcs.read("replica", name).await;
        assert_eq!(
            object["metadata"]["integrity"].as_str(),
            Some(integrity_of(&body).as_str()),
            "{name}"
        );
        if name.starts_with("v1/packument/") {
            let doc: Value = serde_json::from_slice(&body).expect("a packument is JSON as fetched");
            assert!(doc["_rev"].is_string(), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_reaches_the_dead_letter_subscription_intact() {
    let sim = Sim::start(&["--packages", "100"], &[]);
    let pubsub = PubSub::start().await;
    let dir = TempDir::new("service");
    let service = Service::for_sim(&sim.url, &pubsub, dir.as_str(), None, &[]);
    pubsub.setup(
        &service.url,
        &[
            "--min-backoff",
            "1",
            "--max-backoff",
            "2",
            "--max-delivery-attempts",
            "5",
        ],
    );
    // One poison message per subscription: the emulator (0.8.20) stops redelivering nacked
    // messages when several fail at once on one push subscription, which Pub/Sub does not.
    let poison: [(&str, &[u8]); 3] = [
        ("partition-set", b"\x00\xffnot json at all"),
        (
            "partition",
            br#"{"type":"partition","payload":{"startKey":"b","endKey":"a"}}"#,
        ),
        (
            "packument",
            br#"{"type":"packument","payload":{"packageName":"../../etc/passwd"}}"#,
        ),
    ];
    for (topic, data) in poison {
        pubsub.publish_raw(topic, data).await;
    }
    let mut dead: Vec<Vec<u8>> = Vec::new();
    wait_until("three dead letters", Duration::from_secs(120), async || {
        for topic in ["partition-set", "partition", "packument"] {
            dead.extend(pubsub.pull(&format!("{topic}-dead-letter-pull")).await);
        }
        dead.len() >= 3
    })
    .await;
    dead.sort();
    let mut want: Vec<Vec<u8>> = poison.iter().map(|(_, p)| p.to_vec()).collect();
    want.sort();
    assert_eq!(dead, want, "dead letters keep their data byte for byte");
    // Each was refused with 400 on every delivery (5 attempts each), and logged with a reason.
    let refusals: Vec<Value> = service
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("message rejected")))
        .cloned()
        .collect();
    assert!(refusals.len() >= 15, "{} refusals", refusals.len());
    assert!(refusals
        .iter()
        .all(|l| l["reason"].is_string() && l["message_id"].is_string()));
    assert!(service.statuses().iter().all(|s| *s == 400), "{:?}", service.statuses());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_makes_the_service_answer_429_and_the_run_still_completes_without_violations() {
    let sim = Sim::start(
        &["--packages", "1500", "--seed", "9"],
        &[
            "--rate-limit",
            "100",
            "--burst",
            "10",
            "--retry-after",
            "2",
            "--penalty-extends",
        ],
    );
    let pubsub = PubSub::start().await;
    let dir = TempDir::new("service-rl");
    // A 429 pauses the origin for 2 s, as long as a request may take: requests that meet more
    // than 1 s of pause answer 429 at once, and Pub/Sub delivers them again.
    let service = Service::for_sim(&sim.url, &pubsub, dir.as_str(), None, &["--request-budget", "2"]);
    // No retry policy, so a nacked message comes back at once: with one, the emulator (0.8.20,
    // unlike Pub/Sub) stops redelivering when many messages of a subscription fail together,
    // which is what a 429 storm does (this test timed out in CI that way).
    pubsub.setup(&service.url, &["--no-retry-policy", "--max-delivery-attempts", "100"]);
    pubsub.publish(&["--partitions", "4"]);
    let truth = sim.truth();
    let store = dir.path().to_path_buf();
    wait_until_or(
        "4 partitions committed",
        Duration::from_secs(300),
        async || {
            std::fs::read_dir(store.join("v1/partition")).is_ok_and(|d| d.flat_map(|o| o.ok()).count() > 0)
                && index_of(&store, &sim) == truth
        },
        || {
            let (want, have) = (parse_index(&truth), parse_index(&index_of(&store, &sim)));
            let missing: Vec<&String> = want.keys().filter(|k| have.get(*k) != want.get(*k)).take(10).collect();
            format!(
                "replica has {} of {} packages right (first wrong or missing: {missing:?})\nsim stats: {}\n{}\nemulator:\n{}",
                want.iter().filter(|(k, v)| have.get(*k) == Some(v)).count(),
                want.len(),
                sim.stats(),
                service.summary(30),
                pubsub.log_tail(30),
            )
        },
    )
    .await;
    let stats = sim.stats();
    assert_eq!(stats["violations"], 0, "{stats}");
    assert!(
        stats["byStatus"]["429"].as_u64().unwrap_or(0) >= 1,
        "the limit was hit: {stats}"
    );
    let statuses = service.statuses();
    assert!(
        statuses.iter().any(|s| *s == 429 || *s == 503),
        "the service pushed back: {statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s != 400), "no good work refused: {statuses:?}");
    assert!(pubsub.pull("packument-dead-letter-pull").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_ticks_keep_the_replica_equal_to_the_truth_deletions_included() {
    let sim = Sim::start(
        &["--packages", "1500", "--seed", "31"],
        &["--changes-per-sec", "30", "--cdn-lag-secs", "1"],
    );
    let pubsub = PubSub::start().await;
    let dir = TempDir::new("service");
    let service = Service::for_sim(&sim.url, &pubsub, dir.as_str(), None, &[]);
    // No retry policy: see the rate-limit test (stale documents are nacked until the CDN
    // catches up, many at once).
    pubsub.setup(&service.url, &["--no-retry-policy", "--max-delivery-attempts", "100"]);
    // The bootstrap runs while documents change.
    pubsub.publish(&["--partitions", "4"]);
    let store = dir.path().to_path_buf();
    wait_until("4 partitions committed", Duration::from_secs(300), async || {
        std::fs::read_dir(store.join("v1/partition")).is_ok_and(|d| d.flat_map(|o| o.ok()).count() == 1)
            && std::fs::read_dir(store.join("v1/partition"))
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|o| o.ok())
                .is_some_and(|o| std::fs::read_dir(o.path()).is_ok_and(|d| d.count() == 4))
    })
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = async |path: &str| {
        http.get(format!("{}{path}", sim.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Ticks through Pub/Sub (as Cloud Scheduler sends them) while changes go on, then with the
    // changes paused until the replica has caught up.
    for _ in 0..3 {
        pubsub.publish_raw("changes", b"{}").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    common::http("POST", &format!("{}/-/sim/pause-changes", sim.url));
    let upstream: u64 = serde_json::from_str::<Value>(&get("/").await).unwrap()["update_seq"]
        .as_u64()
        .unwrap();
    let truth = get("/-/sim/index").await;
    let checkpoint = dir.path().join("v1/checkpoint");
    wait_until("the replica equals the truth", Duration::from_secs(300), async || {
        pubsub.publish_raw("changes", b"{}").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seq = std::fs::read_dir(&checkpoint)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read(e.path()).ok())
            .and_then(|b| {
                // The file store's entry: a metadata line, then the body.
                let body = b.splitn(2, |c| *c == b'\n').nth(1)?.to_vec();
                serde_json::from_slice::<Value>(&body).ok()?["seq"].as_u64()
            });
        seq == Some(upstream) && index_of(&store, &sim) == truth
    })
    .await;
    let stats = std::process::Command::new(common::BIN)
        .args(["cache", "stats", "--store", dir.as_str()])
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(
        stats["deleted"].as_u64().unwrap() > 0,
        "deletions became tombstones: {stats}"
    );
    assert!(
        service.statuses().iter().all(|s| *s != 400),
        "no tick or item refused: {:?}",
        service.statuses()
    );
    assert!(pubsub.pull("packument-dead-letter-pull").await.is_empty());
}
