//! `all-docs sim`: a faithful, misbehaving registry on loopback, for tests and benchmarks.
//!
//! It serves both upstream origins on one port (the replication API: `/`, `/_all_docs`,
//! `/_changes`; the registry: `/{name}`) from a corpus generated from `--seed`, with the
//! upstream's rate limiting and faults, and counters at `/-/sim/stats`.
//!
//! - [`corpus`]: every name, sorted, in one arena (4.5 M names in ~100 MB).
//! - [`names`]: the synthetic name mix.
//! - [`docgen`]: deterministic packuments, generated in chunks.
//! - [`world`]: corpus plus live changes; answers ranges, lookups and the change feed.
//! - [`query`]: query-string rules of `_all_docs` and `_changes`.
//! - [`limiter`], [`faults`], [`stats`]: rate limit, fault injection, counters.
//! - [`server`]: hyper routes and the accept loop.
//!
//! It only ever binds 127.0.0.1.

pub mod corpus;
pub mod docgen;
pub mod faults;
pub mod limiter;
pub mod names;
pub mod query;
pub mod rng;
pub mod server;
pub mod stats;
pub mod world;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corpus::{Corpus, CorpusBuilder};
use docgen::Profile;
use faults::FaultSpec;
use limiter::{LimitConfig, Limiter};
use world::{Range, World};

use crate::error::Error;

/// `all-docs sim` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Port on 127.0.0.1 to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 5984, env = "ALL_DOCS_SIM_PORT")]
    pub port: u16,
    /// Number of synthetic packages.
    #[arg(long, default_value_t = 10_000, conflicts_with = "names_file")]
    pub packages: usize,
    /// Serve these names instead (one per line, any order; blank lines ignored).
    #[arg(long, value_name = "FILE")]
    pub names_file: Option<PathBuf>,
    /// Seed of every generated name, document, fault and change.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sustained requests per second before 429s (token bucket); unlimited when absent.
    #[arg(long, value_name = "RPS", value_parser = positive_f64)]
    pub rate_limit: Option<f64>,
    /// Bucket size of the rate limit [default: one second's worth of --rate-limit].
    #[arg(long, value_name = "B", requires = "rate_limit", value_parser = positive_f64)]
    pub burst: Option<f64>,
    /// Value of `Retry-After` on a 429, and length of the penalty window it opens.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub retry_after: u64,
    /// Restart the penalty window on every request made inside it.
    #[arg(long)]
    pub penalty_extends: bool,
    /// Requests arriving this soon after the 429 that opened a window were already in flight:
    /// refused, but not counted as violations.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub violation_grace_ms: u64,
    /// Faults to inject, e.g. `status5xx=0.05,reset=0.02,truncate=0.02,stall=0.01,flap404=0.01,badjson=0.01`.
    #[arg(long, value_name = "SPEC", default_value = "")]
    pub faults: FaultSpec,
    /// How long a `stall` fault waits before answering.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stall_secs: u64,
    /// Make NAME a huge document of about BYTES (suffixes K, M, KiB, MiB; at most 128 MiB); repeatable.
    #[arg(long, value_name = "NAME=BYTES", value_parser = parse_huge)]
    pub huge: Vec<(String, u64)>,
    /// Mutate documents at this rate (updates, new packages, deletions), with `_changes` rows.
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub changes_per_sec: f64,
    /// Serve the previous version of a document for this long after it changes (CDN lag).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub cdn_lag_secs: u64,
    /// Gzip responses (up to 1 MiB) for clients that accept it.
    #[arg(long)]
    pub gzip: bool,
    /// Print `name<TAB>rev` of every live document in byte order, then exit.
    #[arg(long)]
    pub dump_index: bool,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// `NAME=BYTES` with an optional unit: `big=100MB`, `big=64MiB`, `big=5000000`.
fn parse_huge(s: &str) -> Result<(String, u64), String> {
    let (name, size) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=BYTES"))?;
    if name.is_empty() {
        return Err(format!("`{s}` has an empty package name"));
    }
    let size = size.trim();
    let split = size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len());
    let (digits, unit) = size.split_at(split);
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1_024,
        "m" | "mb" => 1_000_000,
        "mib" => 1_048_576,
        _ => return Err(format!("`{size}` has an unknown unit (use K, KB, KiB, M, MB or MiB)")),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|d| d.checked_mul(mult))
        .ok_or_else(|| format!("`{size}` is not a size in bytes"))?;
    if !(1_000..=docgen::MAX_DOC_BYTES).contains(&bytes) {
        return Err(format!(
            "size of `{name}` must be from 1 KB to 128 MiB, got {bytes} bytes"
        ));
    }
    Ok((name.to_owned(), bytes))
}

/// Builds the corpus the flags describe (huge names included).
fn build_corpus(args: &SimArgs) -> Result<Corpus, Error> {
    let corpus = match &args.names_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::usage(format!("cannot read names file `{}`: {e}", path.display())))?;
            let mut b = CorpusBuilder::default();
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if !b.push(line) {
                    return Err(Error::usage(format!(
                        "names file `{}` is too large (over 4 GiB of names)",
                        path.display()
                    )));
                }
            }
            let corpus = b.finish();
            if corpus.is_empty() {
                return Err(Error::usage(format!("names file `{}` has no names", path.display())));
            }
            corpus
        }
        None => Corpus::synthetic(args.packages, args.seed),
    };
    if args.huge.iter().all(|(name, _)| corpus.find(name).is_some()) {
        return Ok(corpus);
    }
    let mut b = CorpusBuilder::from(corpus);
    for (name, _) in &args.huge {
        b.push(name);
    }
    Ok(b.finish())
}

fn build_world(args: &SimArgs, base_url: &str) -> Result<World, Error> {
    let corpus = build_corpus(args)?;
    let mut huge = HashMap::new();
    for (name, bytes) in &args.huge {
        let mut p = Profile::huge(args.seed, name, *bytes);
        docgen::fit_huge(args.seed, name, &mut p, *bytes, base_url);
        huge.insert(name.clone(), p);
    }
    Ok(World::new(
        args.seed,
        corpus,
        huge,
        Duration::from_secs(args.cdn_lag_secs),
    ))
}

/// `all-docs sim --dump-index`: the truth, to diff a replica against.
pub fn dump_index(args: &SimArgs) -> Result<(), Error> {
    let world = build_world(args, "http://127.0.0.1:0")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut failed = None;
    world.scan(
        &Range {
            inclusive_end: true,
            limit: usize::MAX,
            ..Range::default()
        },
        |name, rev| {
            if failed.is_none() {
                if let Err(e) = writeln!(out, "{name}\t{rev}") {
                    failed = Some(e);
                }
            }
        },
    );
    match failed.map_or_else(|| out.flush(), Err) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Error::Io {
            what: "writing the index to stdout".into(),
            source: e,
        }),
    }
}

/// A simulator running inside this process (for `replicate --simulate` and tests).
pub struct RunningSim {
    pub url: String,
    stop: tokio_util::sync::CancellationToken,
    /// Stops the simulator when this is dropped without [`RunningSim::stop`] (an early error).
    _stop_on_drop: tokio_util::sync::DropGuard,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// Stops serving and waits for open connections to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds 127.0.0.1, builds the corpus and starts serving in the background.
pub async fn spawn(args: SimArgs) -> Result<RunningSim, Error> {
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| Error::Io {
            what: format!("binding 127.0.0.1:{} (use --port 0 for any free port)", args.port),
            source: e,
        })?;
    let addr = listener.local_addr().map_err(|e| Error::Io {
        what: "reading the bound address".into(),
        source: e,
    })?;
    let base_url = format!("http://{addr}");
    let world = {
        let args = args.clone();
        let base_url = base_url.clone();
        tokio::task::spawn_blocking(move || build_world(&args, &base_url))
            .await
            .map_err(|e| Error::Internal(format!("corpus builder failed: {e}")))??
    };
    let limiter = args.rate_limit.map(|rate| {
        Limiter::new(LimitConfig {
            rate,
            burst: args.burst.unwrap_or(rate).max(1.0),
            retry_after: Duration::from_secs(args.retry_after),
            extends: args.penalty_extends,
            grace: Duration::from_millis(args.violation_grace_ms),
        })
    });
    let opts = server::ServerOptions {
        limiter,
        faults: args.faults,
        stall: Duration::from_secs(args.stall_secs),
        gzip: args.gzip,
        changes_per_sec: args.changes_per_sec,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let docs = world.doc_count();
    let app = Arc::new(server::App::new(Arc::new(world), &opts, base_url.clone(), stop.clone()));
    tracing::info!(
        docs,
        startup_ms = started.elapsed().as_millis() as u64,
        faults = %args.faults,
        rate_limit = ?args.rate_limit,
        "simulator ready"
    );
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        let changes = tokio::spawn(app.clone().run_changes(opts.changes_per_sec));
        server::serve(listener, app, shutdown).await;
        let _ = changes.await;
    });
    Ok(RunningSim {
        url: base_url,
        _stop_on_drop: stop.clone().drop_guard(),
        stop,
        task,
    })
}

/// `all-docs sim`: starts, prints `listening on URL`, serves until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> Result<(), Error> {
    let sim = spawn(args).await?;
    let stop = crate::shutdown::signal();
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {}", sim.url);
        let _ = stdout.flush();
    }
    stop.await;
    tracing::info!("shutting down");
    sim.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_sizes_parse_with_units() {
        assert_eq!(parse_huge("big=100MB"), Ok(("big".into(), 100_000_000)));
        assert_eq!(parse_huge("@s/big=2MiB"), Ok(("@s/big".into(), 2_097_152)));
        assert_eq!(parse_huge("x=5000"), Ok(("x".into(), 5_000)));
        assert!(parse_huge("x=200MiB").unwrap_err().contains("128 MiB"));
        assert!(parse_huge("x=lots").is_err());
        assert!(parse_huge("=5MB").is_err());
        assert!(parse_huge("x").is_err());
    }
}
