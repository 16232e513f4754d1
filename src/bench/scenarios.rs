//! The nine scenarios: what each runs, what it measures, and the target it is held to.
//!
//! Each reports through an [`Outcome`]; scenario 8 is arithmetic on 2 and 7.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::Bench;
use super::measure::run_measured;
use super::report::Outcome;
use super::sim_process::SimProc;
use crate::error::Error;

/// Sizes of the scenarios.
pub(super) struct Sizes {
    enumerate: usize,
    goodput: usize,
    ceiling: usize,
    huge: (usize, u64),
    refresh: usize,
    resume: usize,
    scale: [usize; 3],
    wrk_secs: u32,
    /// Packages, and seconds of steady-state following.
    follow: (usize, u64),
}

pub(super) const FULL: Sizes = Sizes {
    enumerate: 1_000_000,
    goodput: 20_000,
    ceiling: 100_000,
    huge: (5, 100_000_000),
    refresh: 20_000,
    resume: 20_000,
    scale: [10_000, 100_000, 1_000_000],
    wrk_secs: 10,
    follow: (20_000, 60),
};

pub(super) const QUICK: Sizes = Sizes {
    enumerate: 50_000,
    goodput: 1_000,
    ceiling: 3_000,
    huge: (1, 20_000_000),
    refresh: 2_000,
    resume: 3_000,
    scale: [1_000, 2_000, 4_000],
    wrk_secs: 2,
    follow: (1_000, 5),
};

/// The measured polite rate of the real upstream, and the original tool's bootstrap time.
const UPSTREAM_RPS: f64 = 227.0;
const ONE_WEEK_SECS: f64 = 7.0 * 24.0 * 3600.0;
const REGISTRY_SIZE: f64 = 4_500_000.0;

impl Bench {
    /// Scenario 1: list every name (`--list-only`): requests against the lower bound of one page
    /// per 10 000 names plus one per partition.
    pub(super) async fn enumeration(&self) -> Result<Outcome, Error> {
        let size = self.sizes.enumerate;
        let mut o = Outcome::new(1, "Enumeration", "requests / lower bound ≤ 1.05");
        let sim = self.sim(&["--packages".into(), size.to_string()])?;
        let store = self.store("enumerate");
        let run = self.replicate(&store, &sim, &[], &["--list-only"]).await?;
        let stats = sim.stats().await?;
        let requests = n(&stats["routes"]["allDocs"]);
        let partitions = crate::commands::default_partition_count() as u64;
        let bound = size.div_ceil(10_000) as u64 + partitions;
        let ratio = requests as f64 / bound as f64;
        o.fig(format!(
            "{size} names in {:.1} s: {:.0} names/s",
            run.wall,
            size as f64 / run.wall
        ));
        o.fig(format!(
            "{requests} requests; lower bound ceil(N/10000) + {partitions} partitions = {bound}; ratio {ratio:.3}"
        ));
        o.met = Some(run.ok && ratio <= 1.05);
        let _ = std::fs::remove_dir_all(&store);
        Ok(o)
    }

    /// Scenario 2: packuments under a 200/s limit with penalty windows, the limit known and
    /// unknown: docs/s against the limit, 429s, violations. Also returns the first ratio, for
    /// scenario 8.
    pub(super) async fn goodput(&self) -> Result<(Outcome, Option<f64>), Error> {
        let size = self.sizes.goodput;
        let mut o = Outcome::new(
            2,
            "Goodput under rate limiting",
            "docs/s ÷ 200 ≥ 0.95, violations = 0, 429s ≤ 1 %",
        );
        let mut best = None;
        let mut all_met = true;
        for (label, extra) in [
            ("limit known (--max-rps 200)", vec!["--max-rps", "200"]),
            ("limit unknown", vec![]),
        ] {
            let args: Vec<String> = [
                "--packages",
                &size.to_string(),
                "--rate-limit",
                "200",
                "--burst",
                "50",
                "--retry-after",
                "2",
                "--penalty-extends",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let sim = self.sim(&args)?;
            let store = self.store("goodput");
            let run = self.replicate(&store, &sim, &extra, &[]).await?;
            let stats = sim.stats().await?;
            let docs = n(&stats["routes"]["packument"])
                .saturating_sub(n(&stats["byStatus"]["429"]).min(n(&stats["routes"]["packument"])));
            let ok_docs = size as f64;
            let ratio = ok_docs / run.wall / 200.0;
            let requests = n(&stats["requests"]);
            let r429 = n(&stats["rateLimited"]);
            let violations = n(&stats["violations"]);
            let share = r429 as f64 / requests.max(1) as f64;
            o.fig(format!(
                "{label}: {size} docs in {:.1} s = {:.1} docs/s, ratio {ratio:.3}; {requests} requests, {r429} 429s ({:.2} %), {violations} violations",
                run.wall,
                ok_docs / run.wall,
                share * 100.0
            ));
            let _ = docs;
            let met = run.ok && ratio >= 0.95 && violations == 0 && share <= 0.01;
            all_met &= met;
            if best.is_none() {
                best = Some(ratio);
            }
            let _ = std::fs::remove_dir_all(&store);
        }
        o.notes.push(
            "The wall time includes start-up, the slow-start probe and the listing requests, which count against the same limit.".into(),
        );
        o.met = Some(all_met);
        Ok((o, best))
    }

    /// Scenario 3: no limit: documents stored per second against wrk's raw request rate on the
    /// same endpoint.
    pub(super) async fn ceiling(&self) -> Result<Outcome, Error> {
        let size = self.sizes.ceiling;
        let mut o = Outcome::new(
            3,
            "Loopback ceiling",
            "all-docs docs/s ≥ 50 % of the raw request rate at the same concurrency",
        );
        let sim = self.sim(&["--packages".into(), size.to_string()])?;
        let store = self.store("ceiling");
        let run = self.replicate(&store, &sim, &["--max-rps", "1000000"], &[]).await?;
        let stats = sim.stats().await?;
        let bytes = n(&stats["bytesSent"]);
        let rate = size as f64 / run.wall;
        o.fig(format!(
            "{size} documents ({:.0} MB) stored durably in {:.1} s: {rate:.0} docs/s; CPU {:.2} ms per document (user+sys of the replicator)",
            bytes as f64 / 1e6,
            run.wall,
            run.cpu * 1000.0 / size as f64
        ));
        match wrk_rate(&sim, &store, self.sizes.wrk_secs).await {
            Some(raw) => {
                let share = rate / raw;
                o.fig(format!(
                    "raw rate of the same endpoint, wrk -t1 -c64: {raw:.0} requests/s; all-docs at {:.1} % of it",
                    share * 100.0
                ));
                o.met = Some(run.ok && share >= 0.5);
            }
            None => o
                .notes
                .push("wrk is not installed (apt-get install wrk): no raw rate to compare".into()),
        }
        o.notes
            .push("Both the simulator and the load tool share the machine's cores with the replicator.".into());
        let _ = std::fs::remove_dir_all(&store);
        Ok(o)
    }

    /// Scenario 4: documents of tens of megabytes stream through: peak RSS.
    pub(super) async fn huge(&self) -> Result<Outcome, Error> {
        let (count, bytes) = self.sizes.huge;
        let mut o = Outcome::new(4, "Huge documents", "peak RSS ≤ 150 MB");
        let mut args = vec!["--packages".to_string(), "1000".into()];
        for i in 0..count {
            args.push("--huge".into());
            args.push(format!("huge-doc-{i}={bytes}"));
        }
        let sim = self.sim(&args)?;
        let store = self.store("huge");
        let run = self.replicate(&store, &sim, &[], &[]).await?;
        o.fig(format!(
            "1000 packages plus {count} × {} MB documents in {:.1} s; peak RSS {:.1} MB",
            bytes / 1_000_000,
            run.wall,
            run.max_rss_mb
        ));
        o.met = Some(run.ok && run.max_rss_mb <= 150.0);
        let _ = std::fs::remove_dir_all(&store);
        Ok(o)
    }

    /// Scenario 5: a re-run against an unchanged upstream, then one after about 1 % of the
    /// packages changed: requests and bytes against the bootstrap's.
    pub(super) async fn refresh(&self) -> Result<Outcome, Error> {
        let size = self.sizes.refresh;
        let mut o = Outcome::new(
            5,
            "Refresh",
            "bytes of a refresh ≤ 1 % + the changed share of the bootstrap's",
        );
        let rate = (size as f64 / 100.0).max(10.0);
        let sim = self.sim(&[
            "--packages".into(),
            size.to_string(),
            "--changes-per-sec".into(),
            format!("{rate}"),
        ])?;
        sim.post("pause-changes").await?;
        let store = self.store("refresh");
        let boot = self.replicate(&store, &sim, &["--max-rps", "1000000"], &[]).await?;
        let s0 = sim.stats().await?;
        let (req0, bytes0) = (n(&s0["requests"]), n(&s0["bytesSent"]));
        sim.post("reset-stats").await?;
        let same = self.replicate(&store, &sim, &["--max-rps", "1000000"], &[]).await?;
        let s1 = sim.stats().await?;
        let (req1, bytes1) = (n(&s1["requests"]), n(&s1["bytesSent"]));
        // About 1 % of the documents change.
        let seq_before = n(&sim.root().await?["update_seq"]);
        sim.post("resume-changes").await?;
        tokio::time::sleep(Duration::from_secs_f64(size as f64 * 0.01 / rate)).await;
        sim.post("pause-changes").await?;
        let changed = n(&sim.root().await?["update_seq"]) - seq_before;
        sim.post("reset-stats").await?;
        let after = self.replicate(&store, &sim, &["--max-rps", "1000000"], &[]).await?;
        let s2 = sim.stats().await?;
        let (req2, bytes2) = (n(&s2["requests"]), n(&s2["bytesSent"]));
        let share = changed as f64 / size as f64;
        let f1 = bytes1 as f64 / bytes0.max(1) as f64;
        let f2 = bytes2 as f64 / bytes0.max(1) as f64;
        o.fig(format!("bootstrap: {req0} requests, {:.1} MB", bytes0 as f64 / 1e6));
        o.fig(format!(
            "unchanged upstream: {req1} requests ({:.2} %), {:.2} MB ({:.3} %)",
            req1 as f64 * 100.0 / req0.max(1) as f64,
            bytes1 as f64 / 1e6,
            f1 * 100.0
        ));
        o.fig(format!(
            "after {changed} changes ({:.2} % of packages): {req2} requests ({:.2} %), {:.2} MB ({:.3} %)",
            share * 100.0,
            req2 as f64 * 100.0 / req0.max(1) as f64,
            bytes2 as f64 / 1e6,
            f2 * 100.0
        ));
        o.met = Some(boot.ok && same.ok && after.ok && f1 <= 0.01 && f2 <= 0.01 + share);
        let _ = std::fs::remove_dir_all(&store);
        Ok(o)
    }

    /// Scenario 6: `replicate` killed half way and run again: total requests against a clean
    /// run's.
    pub(super) async fn resume(&self) -> Result<Outcome, Error> {
        let size = self.sizes.resume;
        let mut o = Outcome::new(6, "Resume after kill -9", "total requests ÷ a clean run's ≤ 1.05");
        // A steady rate so that "half way" is a moment, not a blur.
        let rps = (size as f64 / 10.0).max(200.0);
        let args: Vec<String> = vec![
            "--packages".into(),
            size.to_string(),
            "--rate-limit".into(),
            format!("{rps}"),
            "--burst".into(),
            "50".into(),
        ];
        let rps_s = format!("{rps}");
        let sim = self.sim(&args)?;
        let clean_store = self.store("resume-clean");
        let clean = self.replicate(&clean_store, &sim, &["--max-rps", &rps_s], &[]).await?;
        let clean_requests = n(&sim.stats().await?["requests"]);
        let _ = std::fs::remove_dir_all(&clean_store);
        sim.post("reset-stats").await?;
        let store = self.store("resume");
        let mut child = self
            .replicate_cmd(&store, &sim, &["--max-rps", &rps_s])
            .spawn()
            .map_err(|e| Error::Io {
                what: "starting all-docs replicate".into(),
                source: e,
            })?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while n(&sim.stats().await?["routes"]["packument"]) < size as u64 / 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let first = n(&sim.stats().await?["requests"]);
        let resumed = self.replicate(&store, &sim, &["--max-rps", &rps_s], &[]).await?;
        let total = n(&sim.stats().await?["requests"]);
        let ratio = total as f64 / clean_requests.max(1) as f64;
        o.fig(format!(
            "clean run: {clean_requests} requests; killed at {first} requests, resumed: {} more; total {total}; ratio {ratio:.3}",
            total - first
        ));
        o.met = Some(clean.ok && resumed.ok && ratio <= 1.05);
        let _ = std::fs::remove_dir_all(&store);
        Ok(o)
    }

    /// Scenario 7: the per-package cost at three sizes. Also returns the cost at the largest,
    /// for scenario 8.
    pub(super) async fn scale(&self) -> Result<(Outcome, Option<f64>), Error> {
        let mut o = Outcome::new(
            7,
            "Scale curve",
            "per-package cost at the largest size ÷ at the smallest ≤ 1.3",
        );
        let mut costs = Vec::new();
        for size in self.sizes.scale {
            let sim = self.sim(&["--packages".into(), size.to_string()])?;
            let store = self.store("scale");
            let run = self.replicate(&store, &sim, &["--max-rps", "1000000"], &[]).await?;
            let per = run.wall / size as f64;
            o.fig(format!(
                "{size} packages: {:.1} s ({:.3} ms per package, {:.0} docs/s), peak RSS {:.1} MB",
                run.wall,
                per * 1000.0,
                1.0 / per,
                run.max_rss_mb
            ));
            costs.push((per, run.ok));
            let _ = std::fs::remove_dir_all(&store);
        }
        let ratio = costs.last().map(|c| c.0).unwrap_or(0.0) / costs.first().map(|c| c.0).unwrap_or(1.0);
        o.fig(format!("ratio of per-package cost, largest ÷ smallest: {ratio:.2}"));
        o.met = Some(costs.iter().all(|c| c.1) && ratio <= 1.3);
        Ok((o, costs.last().map(|c| c.0)))
    }

    /// Scenario 9: the change feed after a bootstrap. A backlog of changes applied by
    /// `follow --once` (changes/s), then `follow --interval 1` against a steady stream of
    /// changes, with the lag `cache stats` reports sampled every second.
    pub(super) async fn follow(&self) -> Result<Outcome, Error> {
        let (size, secs) = self.sizes.follow;
        let mut o = Outcome::new(
            9,
            "Follow the change feed",
            "steady-state lag p50 ≤ 5 s at 20 changes/s (twenty times the upstream's rate)",
        );
        let backlog_rate = 500.0;
        let sim = self.sim(&[
            "--packages".into(),
            size.to_string(),
            "--changes-per-sec".into(),
            format!("{backlog_rate}"),
        ])?;
        sim.post("pause-changes").await?;
        let store = self.store("follow");
        self.replicate(&store, &sim, &["--max-rps", "1000000"], &[]).await?;
        let seq0 = n(&sim.root().await?["update_seq"]);
        sim.post("resume-changes").await?;
        tokio::time::sleep(Duration::from_secs(secs.min(10))).await;
        sim.post("pause-changes").await?;
        let backlog = n(&sim.root().await?["update_seq"]) - seq0;
        let cmd = self.command(&store, &sim, &["follow", "--once", "--max-rps", "1000000"]);
        let run = run_measured(cmd, "follow --once").await?;
        let rate = backlog as f64 / run.wall.max(0.001);
        o.fig(format!(
            "backlog: {backlog} changes (one {backlog_rate}/s burst) applied by `follow --once` in {:.1} s: {rate:.0} changes/s, {:.0} MB peak RSS",
            run.wall, run.max_rss_mb
        ));
        // Steady state: the same simulator changes for 40 ms of each second (20 changes/s at
        // 500/s), and the lag is sampled at the end of each second.
        let mut follower = self
            .command(&store, &sim, &["follow", "--interval", "1", "--max-rps", "1000000"])
            .spawn()
            .map_err(|e| Error::Io {
                what: "starting all-docs follow".into(),
                source: e,
            })?;
        let (mut lags, mut seq_lags) = (Vec::new(), Vec::new());
        let start_seq = n(&sim.root().await?["update_seq"]);
        for _ in 0..secs {
            sim.post("resume-changes").await?;
            tokio::time::sleep(Duration::from_millis(40)).await;
            sim.post("pause-changes").await?;
            tokio::time::sleep(Duration::from_millis(960)).await;
            let stats = self.cache_stats(&store, &sim)?;
            if let Some(l) = stats["follow"]["lagSecs"].as_f64() {
                lags.push(l);
            }
            seq_lags.push(n(&stats["follow"]["lagSeqs"]));
        }
        let changes = n(&sim.root().await?["update_seq"]) - start_seq;
        let _ = follower.kill();
        let _ = follower.wait();
        lags.sort_by(f64::total_cmp);
        seq_lags.sort_unstable();
        let pct = |v: &[f64], p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied();
        let p50 = pct(&lags, 0.5);
        o.fig(format!(
            "steady state: {changes} changes in {secs} s ({:.1}/s), `follow --interval 1`; lag sampled each second: p50 {}, max {}; seqs behind p50 {}, max {}",
            changes as f64 / secs as f64,
            p50.map_or("-".into(), |v| format!("{v:.1} s")),
            pct(&lags, 1.0).map_or("-".into(), |v| format!("{v:.1} s")),
            seq_lags.get(seq_lags.len() / 2).copied().unwrap_or(0),
            seq_lags.last().copied().unwrap_or(0),
        ));
        o.notes.push(
            "lag = now − the start of the last poll after which every change up to the upstream's update_seq was stored; it includes the poll interval."
                .into(),
        );
        o.met = Some(run.ok && p50.is_some_and(|v| v <= 5.0));
        let _ = std::fs::remove_dir_all(&store);
        Ok(o)
    }
}

/// Scenario 8: the full registry at the upstream's polite rate, from scenarios 2 and 7.
pub(super) fn projection(goodput: Option<f64>, per_package: Option<f64>) -> Outcome {
    let mut o = Outcome::new(8, "Full-registry projection", "well under the original tool's one week");
    let ratio = goodput.unwrap_or(1.0);
    let rate = UPSTREAM_RPS * ratio;
    let secs = REGISTRY_SIZE / rate;
    o.fig(format!(
        "4.5 M packuments ÷ (227 requests/s × goodput {ratio:.3}) = 4 500 000 ÷ {rate:.1} = {secs:.0} s = {:.1} h",
        secs / 3600.0
    ));
    o.fig(format!(
        "versus one week = 604 800 s: {:.1}× faster",
        ONE_WEEK_SECS / secs
    ));
    if let Some(p) = per_package {
        let local = REGISTRY_SIZE * p;
        o.fig(format!(
            "the replicator itself needs {:.3} ms per package on loopback (scenario 7) = {:.1} h for 4.5 M: the upstream's limit, not the client, sets the pace",
            p * 1000.0,
            local / 3600.0
        ));
    }
    o.notes
        .push("Listing adds about 450 requests at 10 000 rows each, 0.01 % of the total.".into());
    o.met = Some(secs < ONE_WEEK_SECS);
    o
}

/// The raw request rate of packument requests with wrk at 64 connections, if wrk is installed.
async fn wrk_rate(sim: &SimProc, scratch: &Path, secs: u32) -> Option<f64> {
    Command::new("wrk").arg("--version").output().ok()?;
    let body = sim
        .http
        .get(format!("{}/_all_docs?limit=2000", sim.url))
        .send()
        .await
        .ok()?
        .json::<Value>()
        .await
        .ok()?;
    let mut lua = String::from("paths = {\n");
    for row in body["rows"].as_array()? {
        let id = row["id"].as_str()?;
        let enc = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string();
        let _ = writeln!(
            lua,
            "  \"/{}\",",
            enc.replace("%40", "@")
                .replace("%2D", "-")
                .replace("%2E", ".")
                .replace("%5F", "_")
        );
    }
    lua.push_str("}\ni = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i % #paths) + 1], {[\"Accept\"]=\"application/json\"})\nend\n");
    std::fs::create_dir_all(scratch).ok()?;
    let script = scratch.join("paths.lua");
    std::fs::write(&script, lua).ok()?;
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{secs}s"), "-s"])
        .arg(&script)
        .arg(&sim.url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A counter from the simulator's JSON; 0 when it is absent.
fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}
