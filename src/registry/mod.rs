//! Talking to the upstream. Every request goes through the per-origin [`governor`].
//!
//! - [`governor`] (from the core crate): pacing, global `Retry-After` pauses, AIMD, retry
//!   decisions. No I/O.
//! - [`origin`] (from the core crate): validated origin URLs, their key ids, package URLs.
//! - [`client`]: the shared HTTP client and the retry loop every request runs in.
//! - [`alldocs`]: listing one key range of `_all_docs` exactly, page by page.
//! - [`changes`]: the change feed (`update_seq`, `_changes` pages).
//! - [`packument`]: one document, conditional and streamed into the store.
//! - [`jsoncheck`] (from the core crate): streaming JSON validation of bodies, picking out
//!   `_rev`. No I/O.

pub mod alldocs;
pub mod changes;
pub mod client;
pub mod packument;

pub use all_docs_core::{governor, jsoncheck, origin};
