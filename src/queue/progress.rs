//! Progress of a run: counters the workers bump, and a reporter that shows them (a live line
//! on a terminal, a log line every ten seconds otherwise).

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::registry::client::ClientStats;

#[derive(Debug, Default)]
pub struct Progress {
    pub partitions_total: AtomicU64,
    pub partitions_done: AtomicU64,
    pub partitions_failed: AtomicU64,
    pub packuments_total: AtomicU64,
    pub stored: AtomicU64,
    pub not_modified: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    /// Listed packages deleted upstream before their document was fetched (404, and gone from
    /// `_all_docs` when checked): done, not failures.
    pub deleted_upstream: AtomicU64,
    pub stored_bytes: AtomicU64,
    /// The first few failures, for the summary.
    pub failures: Mutex<Vec<String>>,
}

impl Progress {
    pub fn packuments_done(&self) -> u64 {
        self.stored.load(Relaxed)
            + self.not_modified.load(Relaxed)
            + self.skipped.load(Relaxed)
            + self.deleted_upstream.load(Relaxed)
            + self.failed.load(Relaxed)
    }

    pub fn fail(&self, what: String) {
        let mut f = self.failures.lock();
        if f.len() < 20 {
            f.push(what);
        }
    }

    /// The summary's sentence about deletions seen during the run, if there were any.
    pub fn deletions_seen(&self) -> Option<String> {
        match self.deleted_upstream.load(Relaxed) {
            0 => None,
            1 => Some("1 package deleted upstream during the run (recorded as deleted; not a failure)".into()),
            n => Some(format!(
                "{n} packages deleted upstream during the run (recorded as deleted; not failures)"
            )),
        }
    }

    /// One line: counts, rate, 429s, ETA.
    pub fn line(&self, client: &ClientStats, elapsed: Duration) -> String {
        let done = self.packuments_done();
        let total = self.packuments_total.load(Relaxed);
        let secs = elapsed.as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 && total > done {
            format_secs((total - done) as f64 / rate)
        } else {
            "-".into()
        };
        let deleted = match self.deleted_upstream.load(Relaxed) {
            0 => String::new(),
            n => format!(" deleted upstream {n}"),
        };
        format!(
            "partitions {}/{} | packuments {done}/{total} ({rate:.0}/s) stored {} unchanged {}{deleted} failed {} | requests {} 429s {} | {} MB | ETA {eta}",
            self.partitions_done.load(Relaxed),
            self.partitions_total.load(Relaxed),
            self.stored.load(Relaxed),
            self.not_modified.load(Relaxed) + self.skipped.load(Relaxed),
            self.failed.load(Relaxed),
            client.requests.load(Relaxed),
            client.rate_limited.load(Relaxed),
            self.stored_bytes.load(Relaxed) / 1_000_000,
        )
    }
}

fn format_secs(s: f64) -> String {
    let s = s as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Shows progress until `stop` is cancelled.
pub async fn report(
    progress: Arc<Progress>,
    client: Arc<ClientStats>,
    stop: tokio_util::sync::CancellationToken,
    quiet: bool,
) {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal() && !quiet;
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(10)
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => break,
        }
        let line = progress.line(&client, started.elapsed());
        if tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else if !quiet {
            tracing::info!("{line}");
        }
    }
    if tty {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
}
