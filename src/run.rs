//! One way to run a work item, for every runner.
//!
//! The local runner ([`crate::queue::local`]) and the service ([`crate::service`]) both run
//! every item through [`run_item`]: the same steps, the same handlers, the same order of
//! storing. They differ only in where the work an item fans out goes ([`FanOut`]): the service
//! publishes it to Pub/Sub and is done once Pub/Sub has accepted it; the local runner runs it in
//! this process, and is done once it is stored. Either way a partition's rows are committed
//! only after its packuments are handed on, so a crash in between makes the next run list the
//! range again (the packument handler skips what is stored at its rev).

use std::time::Duration;

use serde_json::{json, Value};

use crate::handlers::{Ctx, HandlerError, PackumentDone};
use crate::registry::alldocs::Row;
use crate::work::{self, RowDiff, Work, WorkItem};

/// What a work item came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The change feed's start is recorded and the partitions are handed on.
    PartitionSet {
        partitions: usize,
    },
    /// The range is listed, its packuments handed on, its rows committed (with tombstones for
    /// the names gone from the listing).
    Partition {
        rows: usize,
        fanned_out: usize,
        removed: usize,
        /// Listed, then found deleted upstream before their document was fetched.
        gone: usize,
    },
    Packument(PackumentDone),
}

impl Done {
    /// The result data a runtime reports (the service's answer body and logs).
    pub fn data(&self) -> Value {
        match self {
            Done::PartitionSet { partitions } => json!({ "published": partitions }),
            Done::Partition {
                rows,
                fanned_out,
                removed,
                gone,
            } => json!({ "rows": rows, "published": fanned_out, "removed": removed, "deletedUpstream": gone }),
            Done::Packument(done) => match done {
                PackumentDone::Stored { bytes } => json!({ "stored": true, "bytes": bytes }),
                PackumentDone::NotModified => json!({ "notModified": true }),
                PackumentDone::Skipped => json!({ "skipped": true }),
                PackumentDone::Superseded => json!({ "superseded": true }),
                PackumentDone::NotFound => json!({ "notFound": true }),
                PackumentDone::Deleted => json!({ "deleted": true }),
                PackumentDone::GoneUpstream => json!({ "deletedUpstream": true }),
            },
        }
    }
}

/// The packuments a listed partition handed on.
#[derive(Debug, Default)]
pub struct Fanned {
    /// Items handed on.
    pub count: usize,
    /// Names found deleted upstream since the listing (tombstoned already): left out of the
    /// rows the partition commits, so it does not claim them live.
    pub gone: Vec<String>,
}

/// Why fanned-out work was not handed on.
#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    /// The queue did not take the items (Pub/Sub unreachable): run the item again later.
    #[error("handing on the fanned-out items failed: {0}")]
    Unavailable(String),
    /// Some of the work run in this process failed (each one is counted and reported where it
    /// failed): the item is not done, and its partition is not committed.
    #[error("{failed} of the fanned-out items failed")]
    Incomplete { failed: u64 },
}

/// Where the work an item fans out goes.
#[async_trait::async_trait]
pub trait FanOut: Send + Sync {
    /// A partition-set's partitions; `Ok` once every one is handed on.
    async fn partitions(&self, items: Vec<WorkItem>) -> Result<(), FanOutError>;

    /// A listed partition's packuments: `rows` as listed, `diff` against the rows the partition
    /// stored last. `Ok` once every one is handed on.
    async fn packuments(&self, rows: &[Row], diff: &RowDiff) -> Result<Fanned, FanOutError>;
}

/// Runs one work item: the single entry point of every runner. `patience` bounds how long a
/// packument item waits, inside the item, for a CDN that still serves an older revision.
pub async fn run_item(
    ctx: &Ctx,
    item: &WorkItem,
    fan_out: &dyn FanOut,
    patience: Duration,
) -> Result<Done, HandlerError> {
    match &item.work {
        Work::PartitionSet { pivots } => {
            // Where the change feed starts, read before any partition is listed.
            ctx.record_bootstrap_seq().await?;
            let partitions = work::fan_out(pivots);
            let count = partitions.len();
            fan_out.partitions(partitions).await?;
            Ok(Done::PartitionSet { partitions: count })
        }
        Work::Partition { start, end } => {
            let (start, end) = (start.as_deref(), end.as_deref());
            let (rows, diff) = ctx.list_partition(start, end).await?;
            let fanned = fan_out.packuments(&rows, &diff).await?;
            let listed = rows.len();
            let rows = if fanned.gone.is_empty() {
                rows
            } else {
                let gone: std::collections::HashSet<&str> = fanned.gone.iter().map(String::as_str).collect();
                rows.into_iter().filter(|r| !gone.contains(r.id.as_str())).collect()
            };
            ctx.commit_partition(start, end, &rows, &diff.removed).await?;
            Ok(Done::Partition {
                rows: listed,
                fanned_out: fanned.count,
                removed: diff.removed.len(),
                gone: fanned.gone.len(),
            })
        }
        Work::Packument { name, rev } => Ok(Done::Packument(
            ctx.packument_or_gone(name, rev.as_deref(), patience).await?,
        )),
    }
}
