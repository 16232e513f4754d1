//! Following the change feed after the bootstrap: the decisions, with no I/O.
//!
//! A [`Checkpoint`] says how far the feed is applied: every change with `seq <= checkpoint.seq`
//! is durably stored. The [`Tracker`] holds the changes read past it that are not applied yet,
//! one per package (the earliest seq, the latest wanted rev), and decides when each is tried
//! again. The checkpoint only moves up to just before the earliest change still pending, so a
//! document the CDN still serves stale (or that fails) holds the checkpoint back without
//! blocking the changes after it. Times are Unix milliseconds passed in by the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::changes::Page;
use crate::work::{validate_name, NameError};

/// The stored position in the change feed (the body of `v1:checkpoint:{origin}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Every change with a seq up to this one is stored.
    pub seq: u64,
    /// The upstream's `update_seq` when last read.
    #[serde(default)]
    pub upstream_seq: Option<u64>,
    /// The replica held every change made before this time (ms) when it was last caught up.
    #[serde(default)]
    pub caught_up_at: Option<u64>,
    /// When this checkpoint was written (ms).
    pub updated_at: u64,
    /// Changes after `seq` known but not yet stored when this was written.
    #[serde(default)]
    pub pending: u64,
}

impl Checkpoint {
    /// A checkpoint at the start of a bootstrap: the upstream's `update_seq` read before the
    /// enumeration (changes after it are replayed by `follow`).
    pub fn bootstrap(update_seq: u64, now: u64) -> Checkpoint {
        Checkpoint {
            seq: update_seq,
            upstream_seq: Some(update_seq),
            caught_up_at: None,
            updated_at: now,
            pending: 0,
        }
    }

    /// How many sequence numbers the replica is behind the upstream as last seen.
    pub fn lag_seqs(&self) -> Option<u64> {
        self.upstream_seq.map(|u| u.saturating_sub(self.seq))
    }

    /// How old the newest change the replica may be missing is, in seconds: `now` minus the
    /// last time it was caught up.
    pub fn lag_secs(&self, now: u64) -> Option<f64> {
        self.caught_up_at.map(|t| now.saturating_sub(t) as f64 / 1000.0)
    }
}

/// What a bootstrap should store as the checkpoint, given the stored one: the lower seq wins,
/// so a resumed bootstrap keeps the seq read before its first enumeration (changes between the
/// two runs are replayed), and a checkpoint `follow` already advanced is not moved forward past
/// changes it has not applied. `None`: keep the stored one.
pub fn bootstrap_checkpoint(stored: Option<&Checkpoint>, update_seq: u64, now: u64) -> Option<Checkpoint> {
    match stored {
        Some(cp) if cp.seq <= update_seq => None,
        _ => Some(Checkpoint::bootstrap(update_seq, now)),
    }
}

/// The generation of a rev (`"12-abc"` → 12).
pub fn rev_generation(rev: &str) -> Option<u64> {
    rev.split_once('-').and_then(|(n, _)| n.parse().ok())
}

/// Whether a document at `got` is older than the change to `wanted` (a CDN still serving the
/// previous version). Revs whose generations cannot be read are not called older.
pub fn is_older(got: Option<&str>, wanted: &str) -> bool {
    let Some(want) = rev_generation(wanted) else {
        return false;
    };
    match got.map(rev_generation) {
        None => true,
        Some(None) => false,
        Some(Some(have)) => have < want,
    }
}

/// One package to bring up to a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    pub rev: String,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    /// The earliest change not applied yet: the checkpoint stays below it.
    seq: u64,
    rev: String,
    deleted: bool,
    attempts: u32,
    next_at: u64,
    last_error: Option<String>,
}

/// Changes read but not yet applied, and the checkpoint they allow.
#[derive(Debug, Clone)]
pub struct Tracker {
    cursor: u64,
    pending: BTreeMap<String, Pending>,
    first_retry: u64,
    max_retry: u64,
}

impl Tracker {
    /// Starts at a stored checkpoint. Retries wait `first_retry_ms`, doubling up to `max_retry_ms`.
    pub fn new(checkpoint: u64, first_retry_ms: u64, max_retry_ms: u64) -> Tracker {
        Tracker {
            cursor: checkpoint,
            pending: BTreeMap::new(),
            first_retry: first_retry_ms.max(1),
            max_retry: max_retry_ms.max(first_retry_ms.max(1)),
        }
    }

    /// Where the next page of the feed starts.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Takes a page read at `since = cursor()`: each package's latest change becomes due now.
    /// Rows whose id is not a valid package name are passed over and returned, for the caller
    /// to report: they can be neither fetched nor stored safely.
    pub fn add_page(&mut self, page: &Page, now: u64) -> Vec<NameError> {
        let mut invalid = Vec::new();
        for c in &page.rows {
            if let Err(e) = validate_name(&c.id) {
                invalid.push(e);
                continue;
            }
            match self.pending.get_mut(&c.id) {
                Some(p) => {
                    p.seq = p.seq.min(c.seq);
                    p.rev.clone_from(&c.rev);
                    p.deleted = c.deleted;
                    p.next_at = now;
                }
                None => {
                    self.pending.insert(
                        c.id.clone(),
                        Pending {
                            seq: c.seq,
                            rev: c.rev.clone(),
                            deleted: c.deleted,
                            attempts: 0,
                            next_at: now,
                            last_error: None,
                        },
                    );
                }
            }
        }
        self.cursor = self.cursor.max(page.last_seq);
        invalid
    }

    /// The tasks due at `now`, in name order.
    pub fn due(&self, now: u64) -> Vec<Task> {
        self.pending
            .iter()
            .filter(|(_, p)| p.next_at <= now)
            .map(|(name, p)| Task {
                name: name.clone(),
                rev: p.rev.clone(),
                deleted: p.deleted,
            })
            .collect()
    }

    /// `task` is stored. (If a newer change for the package came meanwhile, it stays pending.)
    pub fn done(&mut self, task: &Task) {
        if self
            .pending
            .get(&task.name)
            .is_some_and(|p| p.rev == task.rev && p.deleted == task.deleted)
        {
            self.pending.remove(&task.name);
        }
    }

    /// `task` failed (or the document is still stale): try again after a backoff. Returns the
    /// attempts so far.
    pub fn failed(&mut self, task: &Task, error: String, now: u64) -> u32 {
        let Some(p) = self.pending.get_mut(&task.name) else {
            return 0;
        };
        p.attempts += 1;
        let wait = self
            .first_retry
            .saturating_mul(1u64 << (p.attempts - 1).min(20))
            .min(self.max_retry);
        p.next_at = now + wait;
        p.last_error = Some(error);
        p.attempts
    }

    /// Every change up to this seq is stored: just before the earliest pending change, or the
    /// cursor when nothing is pending.
    pub fn checkpoint(&self) -> u64 {
        self.pending.values().map(|p| p.seq - 1).min().unwrap_or(self.cursor)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When the next pending task is due.
    pub fn next_due(&self) -> Option<u64> {
        self.pending.values().map(|p| p.next_at).min()
    }

    /// The pending packages with their attempts and last error, for a report.
    pub fn stuck(&self) -> Vec<(String, u64, u32, Option<String>)> {
        self.pending
            .iter()
            .map(|(n, p)| (n.clone(), p.seq, p.attempts, p.last_error.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::Change;

    fn page(rows: &[(u64, &str, &str, bool)], last_seq: u64) -> Page {
        Page {
            rows: rows
                .iter()
                .map(|&(seq, id, rev, deleted)| Change {
                    seq,
                    id: id.into(),
                    rev: rev.into(),
                    deleted,
                })
                .collect(),
            last_seq,
        }
    }

    #[test]
    fn the_checkpoint_waits_for_the_earliest_pending_change_only() {
        let mut t = Tracker::new(10, 1000, 60_000);
        t.add_page(
            &page(
                &[(11, "a", "2-a", false), (12, "b", "3-b", false), (14, "c", "1-c", true)],
                15,
            ),
            0,
        );
        assert_eq!(t.cursor(), 15);
        assert_eq!(t.checkpoint(), 10);
        let due = t.due(0);
        assert_eq!(due.len(), 3);
        // b and c are stored; a is still stale at the CDN.
        t.done(&due[1]);
        t.done(&due[2]);
        assert_eq!(t.failed(&due[0], "stale".into(), 0), 1);
        assert_eq!(t.checkpoint(), 10, "not past a");
        assert!(t.due(500).is_empty(), "a waits for its backoff");
        assert_eq!(t.next_due(), Some(1000));
        // Later changes keep flowing while a waits.
        t.add_page(&page(&[(16, "d", "1-d", false)], 16), 600);
        assert_eq!(t.due(600).iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["d"]);
        t.done(&t.due(600)[0].clone());
        assert_eq!(t.failed(&due[0], "stale".into(), 1000), 2);
        assert_eq!(t.next_due(), Some(3000), "the backoff doubles");
        t.done(&t.due(3000)[0].clone());
        assert_eq!(t.checkpoint(), 16);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn an_invalid_name_in_the_feed_is_returned_and_does_not_hold_the_checkpoint() {
        let mut t = Tracker::new(0, 1000, 4000);
        let invalid = t.add_page(
            &page(
                &[
                    (1, "_design/app", "1-a", false),
                    (2, "ok", "1-b", false),
                    (3, "../x", "1-c", true),
                ],
                3,
            ),
            0,
        );
        assert_eq!(invalid.len(), 2, "{invalid:?}");
        let due = t.due(0);
        assert_eq!(due.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["ok"]);
        t.done(&due[0]);
        assert_eq!(t.checkpoint(), 3);
    }

    #[test]
    fn a_newer_change_replaces_the_wanted_rev_but_keeps_the_earliest_seq() {
        let mut t = Tracker::new(0, 1000, 4000);
        t.add_page(&page(&[(1, "a", "1-a", false)], 1), 0);
        let old = t.due(0)[0].clone();
        t.failed(&old, "stale".into(), 0);
        t.add_page(&page(&[(5, "a", "2-a", false)], 5), 10);
        let new = t.due(10);
        assert_eq!(
            new,
            vec![Task {
                name: "a".into(),
                rev: "2-a".into(),
                deleted: false
            }]
        );
        t.done(&old);
        assert_eq!(t.pending(), 1, "finishing the old rev does not finish the new one");
        assert_eq!(t.checkpoint(), 0);
        for _ in 0..10 {
            t.failed(&new[0], "x".into(), 0);
        }
        assert_eq!(t.next_due(), Some(4000), "the backoff is capped");
        t.done(&new[0]);
        assert_eq!(t.checkpoint(), 5);
    }

    #[test]
    fn revs_compare_by_generation() {
        assert!(is_older(Some("1-a"), "2-b"));
        assert!(is_older(None, "2-b"));
        assert!(!is_older(Some("2-a"), "2-b"), "same generation: not older");
        assert!(!is_older(Some("3-a"), "2-b"));
        assert!(!is_older(Some("x"), "2-b"));
        assert!(!is_older(Some("1-a"), "weird"));
        assert_eq!(rev_generation("12-abc"), Some(12));
    }

    #[test]
    fn a_bootstrap_keeps_the_lower_checkpoint() {
        let stored = Checkpoint::bootstrap(100, 1);
        assert_eq!(bootstrap_checkpoint(Some(&stored), 150, 2), None);
        assert_eq!(bootstrap_checkpoint(Some(&stored), 90, 2).map(|c| c.seq), Some(90));
        assert_eq!(bootstrap_checkpoint(None, 150, 2).map(|c| c.seq), Some(150));
        let cp = Checkpoint {
            seq: 90,
            upstream_seq: Some(100),
            caught_up_at: Some(1_000),
            updated_at: 0,
            pending: 0,
        };
        assert_eq!(cp.lag_seqs(), Some(10));
        assert_eq!(cp.lag_secs(3_500), Some(2.5));
    }
}
