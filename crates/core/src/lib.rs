//! all-docs-core: what every runtime of all-docs shares (the local binary, the Cloud Run service
//! and the edge workers), with no I/O at all.
//!
//! The map:
//!
//! - [`work`]: work items (`partition-set`, `partition`, `packument`), their wire format,
//!   package-name rules, and the pure decisions a handler applies (`fan_out`, `diff_rows`,
//!   `plan_packument`).
//! - [`keys`]: cache keys (`v1:packument:{origin}:{hex}`) and their object paths.
//! - [`pivots`]: pivot files (JSON or JavaScript arrays), ranges and equal-count plans.
//! - [`origin`]: validated origin URLs, their key ids, package URLs.
//! - [`alldocs`]: the `_all_docs` query and the exact paging of one key range ([`alldocs::Pager`]).
//! - [`changes`]: the `_changes` page parser and its checks.
//! - [`follow`]: the change-feed checkpoint and the [`follow::Tracker`] of changes read but not
//!   stored.
//! - [`governor`]: pacing, one `Retry-After` pausing an origin, the ceiling search, retry
//!   decisions; the time and the jitter are passed in.
//! - [`jsoncheck`]: a push-based JSON validator for streamed bodies.
//! - [`envelope`]: Pub/Sub push envelopes (or bare items) to work items, or a named rejection.
//! - [`outcome`]: the runtime-neutral end of a work item ([`outcome::Disposition`]: done, retry
//!   after a delay, reject with a reason), which each runtime maps to its queue's signal.
//! - [`status`]: what a stored entry is (ok, unpublished, deleted).
//!
//! **Invariant**: no I/O, no clock, no randomness, no async runtime. The crate's dependencies
//! are the proof: it builds for `wasm32-unknown-unknown` and `wasm32-wasip1`, which
//! `scripts/test` checks.

pub mod alldocs;
pub mod changes;
pub mod envelope;
pub mod follow;
pub mod governor;
pub mod jsoncheck;
pub mod keys;
pub mod origin;
pub mod outcome;
pub mod pivots;
pub mod status;
pub mod work;
