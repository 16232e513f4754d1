//! `follow`: keeping the replica fresh from the change feed.

use std::time::{Duration, Instant};

use super::{setup, stop_on_signal};
use crate::config::Global;
use crate::error::Error;

#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// Start after this sequence number instead of the stored checkpoint.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Apply the changes up to the upstream's `update_seq` at start, then exit (exit 1 if some
    /// could not be applied within --give-up-after).
    #[arg(long)]
    pub once: bool,
    /// Seconds between polls of the change feed once caught up.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, env = "ALL_DOCS_FOLLOW_INTERVAL")]
    pub interval: f64,
    /// With --once: seconds to keep retrying changes whose document is still stale or failing.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub give_up_after: f64,
}

/// `follow`: apply the change feed from the stored checkpoint, until stopped (or caught up,
/// with `--once`).
pub async fn follow(g: &Global, args: &FollowArgs) -> Result<(), Error> {
    let secs = |v: f64, flag: &str| {
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(Error::usage(format!("{flag} must be 0..=86400 seconds, got {v}")))
        }
    };
    let opts = crate::queue::follow::FollowOptions {
        since: args.since,
        once: args.once,
        interval: secs(args.interval, "--interval")?,
        give_up_after: secs(args.give_up_after, "--give-up-after")?,
        parallelism: g.concurrency as usize,
    };
    let s = setup(g, None).await?;
    stop_on_signal(s.stop.clone());
    let started = Instant::now();
    let summary = crate::queue::follow::follow(&s.ctx, &opts).await.map_err(|e| match e {
        crate::queue::follow::FollowError::NoCheckpoint => Error::usage(e.to_string()),
        e => Error::Incomplete(e.to_string()),
    })?;
    eprintln!(
        "follow: {} changes applied ({} deletions, {} retries) in {:.1}s; checkpoint {}",
        summary.applied,
        summary.deleted,
        summary.retries,
        started.elapsed().as_secs_f64(),
        summary.checkpoint
    );
    if s.stop.is_cancelled() {
        return Err(Error::Incomplete(
            "interrupted; run `all-docs follow` again to resume from the checkpoint".into(),
        ));
    }
    if args.once && !summary.caught_up {
        let shown: Vec<&str> = summary.pending.iter().take(20).map(String::as_str).collect();
        return Err(Error::Incomplete(format!(
            "{} changes not applied yet (the checkpoint stays before them; run follow again):\n  {}",
            summary.pending.len(),
            shown.join("\n  ")
        )));
    }
    Ok(())
}
