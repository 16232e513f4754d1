//! `all-docs bench`: the benchmark scenarios, run against `all-docs sim` on loopback, written to
//! `BENCHMARKS.md`.
//!
//! Every scenario starts its own simulator and runs `all-docs replicate` as a child process (so
//! its wall time, CPU time and peak RSS are its own, read with `wait4`), then reads the
//! simulator's counters. Figures are reported as ratios to the scenario's limit, since absolute
//! times vary between machines. `--quick` shrinks every scenario so the whole run takes well
//! under two minutes (the test suite runs it); the figures in `BENCHMARKS.md` come from a full
//! run.
//!
//! - `scenarios`: the nine scenarios, their sizes (full and `--quick`) and targets.
//! - `harness`: the context a scenario runs in: the binary, the scratch folder, the commands
//!   that run `all-docs` against a simulator.
//! - `sim_process`: a simulator child process and its `/-/sim/*` control routes.
//! - `measure`: waiting for a child with `wait4` (wall, CPU, peak RSS).
//! - `report`: each scenario's outcome, the summary table and `BENCHMARKS.md`.

mod harness;
mod measure;
mod report;
mod scenarios;
mod sim_process;

use std::path::PathBuf;
use std::time::Instant;

use crate::error::Error;
use harness::Bench;
use report::Outcome;
use scenarios::{projection, FULL, QUICK};

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
    let report = report::render(&out, args, started.elapsed());
    println!("{}", report::table(&out));
    report::write_report(&args.output, &report)?;
    eprintln!(
        "wrote {} in {:.0}s",
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
