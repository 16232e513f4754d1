//! Running one `all-docs` child and measuring what it cost.
//!
//! Each measured command is its own process so that its CPU time and peak RSS are its own:
//! `wait4` reports them for exactly that child, which the benchmark's own threads (and the
//! simulator, another process) cannot blur.

use std::process::{Child, Command};
use std::time::Instant;

use crate::error::Error;

/// What one `all-docs` child run cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) ok: bool,
    pub(super) wall: f64,
    pub(super) cpu: f64,
    pub(super) max_rss_mb: f64,
}

/// Starts `all-docs {what}` as built in `cmd` and waits for it, measured.
pub(super) async fn run_measured(mut cmd: Command, what: &str) -> Result<Run, Error> {
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
