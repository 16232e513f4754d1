//! `all-docs bench`: the benchmark scenarios, run against `all-docs sim` on loopback, written to
//! `BENCHMARKS.md`.
//!
//! Every scenario starts its own simulator and runs `all-docs replicate` as a child process (so
//! its wall time, CPU time and peak RSS are its own, read with `wait4`), then reads the
//! simulator's counters. Figures are reported as ratios to the scenario's limit, since absolute
//! times vary between machines. `--quick` shrinks every scenario so the whole run takes well
//! under two minutes (the test suite runs it); the figures in `BENCHMARKS.md` come from a full
//! run.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::Error;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Small sizes: every scenario in seconds (a smoke test, not figures to publish).
    #[arg(long)]
    pub quick: bool,
    /// Where to write the report.
    #[arg(long, value_name = "FILE", default_value = "BENCHMARKS.md")]
    pub output: PathBuf,
    /// Scratch folder for replicas (emptied per scenario).
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub workdir: PathBuf,
    /// Run only these scenarios (numbers, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "N,..")]
    pub only: Vec<u32>,
}

/// One scenario's outcome.
#[derive(Debug, Clone)]
struct Outcome {
    id: u32,
    title: &'static str,
    figures: Vec<String>,
    target: String,
    met: Option<bool>,
    notes: Vec<String>,
}

impl Outcome {
    fn new(id: u32, title: &'static str, target: impl Into<String>) -> Outcome {
        Outcome {
            id,
            title,
            figures: Vec::new(),
            target: target.into(),
            met: None,
            notes: Vec::new(),
        }
    }

    fn fig(&mut self, s: impl Into<String>) {
        self.figures.push(s.into());
    }
}

/// Sizes of the scenarios.
struct Sizes {
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

const FULL: Sizes = Sizes {
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

const QUICK: Sizes = Sizes {
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

pub async fn run(args: &BenchArgs) -> Result<(), Error> {
    let exe = std::env::current_exe().map_err(|e| Error::Io {
        what: "finding the all-docs binary".into(),
        source: e,
    })?;
    let sizes = if args.quick { &QUICK } else { &FULL };
    std::fs::create_dir_all(&args.workdir)
        .map_err(|e| Error::usage(format!("cannot create `{}`: {e}", args.workdir.display())))?;
    let b = Bench {
        exe,
        workdir: args.workdir.clone(),
        sizes,
    };
    let wanted = |n: u32| args.only.is_empty() || args.only.contains(&n);
    let started = Instant::now();
    let mut out: Vec<Outcome> = Vec::new();
    let mut goodput_ratio = None;
    let mut per_package = None;
    if wanted(1) {
        out.push(b.enumeration().await?);
    }
    if wanted(2) {
        let o = b.goodput().await?;
        goodput_ratio = o.1;
        out.push(o.0);
    }
    if wanted(3) {
        out.push(b.ceiling().await?);
    }
    if wanted(4) {
        out.push(b.huge().await?);
    }
    if wanted(5) {
        out.push(b.refresh().await?);
    }
    if wanted(6) {
        out.push(b.resume().await?);
    }
    if wanted(7) {
        let o = b.scale().await?;
        per_package = o.1;
        out.push(o.0);
    }
    if wanted(8) {
        out.push(projection(goodput_ratio, per_package));
    }
    if wanted(9) {
        out.push(b.follow().await?);
    }
    let report = render(&out, args, started.elapsed());
    println!("{}", table(&out));
    write_report(&args.output, &report)?;
    eprintln!(
        "wrote {} in {:.0}s",
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

struct Bench {
    exe: PathBuf,
    workdir: PathBuf,
    sizes: &'static Sizes,
}

/// A simulator child process, killed on drop.
struct SimProc {
    url: String,
    child: Child,
    http: reqwest::Client,
}

impl SimProc {
    fn start(exe: &Path, args: &[String]) -> Result<SimProc, Error> {
        let mut child = Command::new(exe)
            .args(["sim", "--port", "0", "-q"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Io {
                what: "starting the simulator".into(),
                source: e,
            })?;
        let mut line = String::new();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Internal("simulator without stdout".into()))?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| Error::Io {
            what: "reading the simulator's first line".into(),
            source: e,
        })?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| Error::Internal(format!("simulator said {line:?}")))?
            .to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(SimProc { url, child, http })
    }

    async fn stats(&self) -> Result<Value, Error> {
        let r = self.http.get(format!("{}/-/sim/stats", self.url)).send().await;
        let r = r.map_err(|e| Error::Internal(format!("simulator stats: {e}")))?;
        r.json()
            .await
            .map_err(|e| Error::Internal(format!("simulator stats: {e}")))
    }

    async fn post(&self, what: &str) -> Result<(), Error> {
        self.http
            .post(format!("{}/-/sim/{what}", self.url))
            .send()
            .await
            .map_err(|e| Error::Internal(format!("simulator {what}: {e}")))?;
        Ok(())
    }
}

impl Drop for SimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// What one `all-docs` child run cost.
#[derive(Debug, Clone, Copy)]
struct Run {
    ok: bool,
    wall: f64,
    cpu: f64,
    max_rss_mb: f64,
}

impl Bench {
    fn store(&self, tag: &str) -> PathBuf {
        let dir = self.workdir.join(tag);
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn replicate_cmd(&self, store: &Path, sim: &SimProc, extra: &[&str]) -> Command {
        let mut cmd = self.command(store, sim, extra);
        cmd.arg("replicate");
        cmd
    }

    async fn replicate(&self, store: &Path, sim: &SimProc, extra: &[&str], more: &[&str]) -> Result<Run, Error> {
        let mut cmd = self.replicate_cmd(store, sim, extra);
        cmd.args(more);
        run_measured(cmd, "replicate").await
    }

    fn sim(&self, args: &[String]) -> Result<SimProc, Error> {
        SimProc::start(&self.exe, args)
    }

    /// Scenario 9: the change feed after a bootstrap. A backlog of changes applied by
    /// `follow --once` (changes/s), then `follow --interval 1` against a steady stream of
    /// changes, with the lag `cache stats` reports sampled every second.
    async fn follow(&self) -> Result<Outcome, Error> {
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
        let seq0 = n(&root(&sim).await?["update_seq"]);
        sim.post("resume-changes").await?;
        tokio::time::sleep(Duration::from_secs(secs.min(10))).await;
        sim.post("pause-changes").await?;
        let backlog = n(&root(&sim).await?["update_seq"]) - seq0;
        let cmd = self.command(&store, &sim, &["--max-rps", "1000000", "follow", "--once"]);
        let run = run_measured(cmd, "follow --once").await?;
        let rate = backlog as f64 / run.wall.max(0.001);
        o.fig(format!(
            "backlog: {backlog} changes (one {backlog_rate}/s burst) applied by `follow --once` in {:.1} s: {rate:.0} changes/s, {:.0} MB peak RSS",
            run.wall, run.max_rss_mb
        ));
        // Steady state: the same simulator changes for 40 ms of each second (20 changes/s at
        // 500/s), and the lag is sampled at the end of each second.
        let mut follower = self
            .command(&store, &sim, &["--max-rps", "1000000", "follow", "--interval", "1"])
            .spawn()
            .map_err(|e| Error::Io {
                what: "starting all-docs follow".into(),
                source: e,
            })?;
        let (mut lags, mut seq_lags) = (Vec::new(), Vec::new());
        let start_seq = n(&root(&sim).await?["update_seq"]);
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
        let changes = n(&root(&sim).await?["update_seq"]) - start_seq;
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

    fn command(&self, store: &Path, sim: &SimProc, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--store")
            .arg(store)
            .args(["--replicate-origin", &sim.url, "--registry-origin", &sim.url, "-q"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn cache_stats(&self, store: &Path, sim: &SimProc) -> Result<Value, Error> {
        let out = self
            .command(store, sim, &["cache", "stats"])
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| Error::Io {
                what: "running all-docs cache stats".into(),
                source: e,
            })?;
        serde_json::from_slice(&out.stdout).map_err(|e| Error::Internal(format!("cache stats: {e}")))
    }

    async fn enumeration(&self) -> Result<Outcome, Error> {
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

    async fn goodput(&self) -> Result<(Outcome, Option<f64>), Error> {
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

    async fn ceiling(&self) -> Result<Outcome, Error> {
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

    async fn huge(&self) -> Result<Outcome, Error> {
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

    async fn refresh(&self) -> Result<Outcome, Error> {
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
        let seq_before = n(&root(&sim).await?["update_seq"]);
        sim.post("resume-changes").await?;
        tokio::time::sleep(Duration::from_secs_f64(size as f64 * 0.01 / rate)).await;
        sim.post("pause-changes").await?;
        let changed = n(&root(&sim).await?["update_seq"]) - seq_before;
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

    async fn resume(&self) -> Result<Outcome, Error> {
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

    async fn scale(&self) -> Result<(Outcome, Option<f64>), Error> {
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
}

async fn root(sim: &SimProc) -> Result<Value, Error> {
    let r = sim
        .http
        .get(format!("{}/", sim.url))
        .send()
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    r.json().await.map_err(|e| Error::Internal(e.to_string()))
}

fn projection(goodput: Option<f64>, per_package: Option<f64>) -> Outcome {
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

/// Starts `all-docs {what}` as built in `cmd` and waits for it, measured.
async fn run_measured(mut cmd: Command, what: &str) -> Result<Run, Error> {
    let child = cmd.spawn().map_err(|e| Error::Io {
        what: format!("starting all-docs {what}"),
        source: e,
    })?;
    tokio::task::spawn_blocking(move || wait_measured(child, Instant::now()))
        .await
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Waits for `child`; wall time, CPU time and peak RSS from `wait4`.
fn wait_measured(child: Child, started: Instant) -> Run {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waiting on our own child; `usage` is a valid, zeroed out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        ok: r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

fn table(out: &[Outcome]) -> String {
    let mut t = String::from("| # | scenario | target | met |\n| --- | --- | --- | --- |\n");
    for o in out {
        let met = match o.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "n/a",
        };
        let _ = writeln!(t, "| {} | {} | {} | {met} |", o.id, o.title, o.target);
    }
    t
}

fn render(out: &[Outcome], args: &BenchArgs, took: Duration) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mode = if args.quick {
        "quick (smoke sizes; not figures to publish)"
    } else {
        "full"
    };
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Every figure below comes from one run of `all-docs bench{}` against `all-docs sim` on 127.0.0.1.\n",
        if args.quick { " --quick" } else { "" }
    );
    let _ = writeln!(s, "- commit: `{commit}`");
    let _ = writeln!(s, "- machine: {cores} cores ({cpu}), {mem} memory");
    let _ = writeln!(s, "- mode: {mode}; the run took {:.0} s", took.as_secs_f64());
    let _ = writeln!(
        s,
        "- command: `cargo run --release -- bench{}`\n",
        if args.quick { " --quick" } else { "" }
    );
    s.push_str(&table(out));
    for o in out {
        let _ = writeln!(s, "\n## {}. {}\n\nTarget: {}\n", o.id, o.title, o.target);
        for f in &o.figures {
            let _ = writeln!(s, "- {f}");
        }
        for n in &o.notes {
            let _ = writeln!(s, "\nNote: {n}");
        }
    }
    s
}

fn write_report(path: &Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("md.tmp");
    let io = |e| Error::Io {
        what: format!("writing `{}`", path.display()),
        source: e,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
