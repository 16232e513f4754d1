//! The fault matrix's service half: the Cloud Run shape (the Pub/Sub emulator pushing to
//! `all-docs serve`, fake-gcs-server as the bucket) with a dependency killed mid-run. Pub/Sub
//! keeps redelivering what was not acknowledged; each case ends with the bucket's index equal to
//! the simulator's truth, every object matching its integrity, and no dead letter.

mod common;

use std::time::Duration;

use common::cloud::{parse_index, wait_until, Gcs, PubSub, Service};
use common::Sim;

const PACKAGES: usize = 3000;

/// The emulators, a bucket and a service replicating a fresh simulator; the run is started.
struct Run {
    sim: Sim,
    pubsub: PubSub,
    gcs: Gcs,
    service: Service,
}

impl Run {
    async fn start(seed: &str) -> Run {
        let sim = Sim::start(&["--packages", &PACKAGES.to_string(), "--seed", seed], &[]);
        let (pubsub, gcs) = tokio::join!(PubSub::start(), Gcs::start());
        gcs.create_bucket("replica").await;
        let service = Service::for_sim(&sim.url, &pubsub, "gs://replica", Some(&gcs), &[]);
        // No retry policy: see tests/service.rs (the emulator's backoff stops redelivering).
        pubsub.setup(&service.url, &["--no-retry-policy", "--max-delivery-attempts", "100"]);
        pubsub.publish(&["--partitions", "8"]);
        Run {
            sim,
            pubsub,
            gcs,
            service,
        }
    }

    /// Waits until the service has finished `n` items.
    async fn wait_done(&self, n: usize) {
        wait_until(&format!("{n} items done"), Duration::from_secs(300), async || {
            self.service.done_count() >= n
        })
        .await;
    }

    /// Waits for the bucket to equal the truth, then checks integrity and dead letters.
    async fn assert_complete(&self) {
        let truth = parse_index(&self.sim.truth());
        assert_eq!(truth.len(), PACKAGES);
        wait_until(
            "the bucket's index equal to the truth",
            Duration::from_secs(300),
            async || {
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.gcs.index("replica").await == truth
            },
        )
        .await;
        self.gcs.assert_integrity("replica", "v1/").await;
        for topic in ["partition-set", "partition", "packument"] {
            let dead = self.pubsub.pull(&format!("{topic}-dead-letter-pull")).await;
            assert!(dead.is_empty(), "{} dead letters on {topic}", dead.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_killed_mid_run_resumes_from_redelivery_and_loses_nothing() {
    let mut run = Run::start("31").await;
    run.wait_done(PACKAGES / 4).await;
    // SIGKILL: requests in flight are cut, their messages are not acknowledged.
    run.service.sigkill_and_restart(Duration::from_millis(500));
    run.assert_complete().await;
    assert!(run.service.done_count() > 0, "the new process finished the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gcs_restarted_mid_run_loses_nothing() {
    let mut run = Run::start("32").await;
    run.wait_done(PACKAGES / 4).await;
    // The bucket goes away for 2 s (SIGKILL, then a new process on the same data).
    run.gcs.restart(Duration::from_secs(2)).await;
    run.assert_complete().await;
    let waited = run
        .service
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l["message"] == "a dependency failed; trying again shortly")
        .count();
    assert!(waited > 0, "the outage was seen and waited out inside requests");
    let statuses = run.service.statuses();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no request answered anything but 200, so no delivery attempt was spent: {statuses:?}"
    );
}
