//! all-docs: build and keep a complete replica of an npm-style registry's metadata.
//!
//! The map (see `ARCHITECTURE.md` for the invariants):
//!
//! - [`sim`]: `all-docs sim`, a registry simulator on loopback that behaves like the real
//!   upstream (byte-ordered `_all_docs`, `_changes`, packuments with ETags, rate limiting with
//!   `Retry-After` and penalty windows, injected faults). Every test and benchmark talks to it.
//! - [`work`], [`keys`], [`pivots`], [`follow`]: re-exported from the `all-docs-core` crate,
//!   which holds everything the runtimes share with no I/O (work items and their wire format,
//!   names, keys, pivots, origins, the `_all_docs` pager and `_changes` parser, the JSON check,
//!   the governor, the change-feed tracker, the push envelope).
//! - [`registry`]: the upstream client; [`registry::governor`] decides pacing and retries
//!   (no I/O).
//! - [`handlers`]: what each work item does, with I/O, shared by every runner.
//! - [`feed`]: [`feed::Feed::step`], the one change-feed step `follow` and the service's ticks
//!   share.
//! - [`run`]: [`run::run_item`], the one entry point every runner runs a work item through;
//!   runners differ only in where fanned-out work goes ([`run::FanOut`]).
//! - [`queue`]: where work runs: the local runner and follower, their progress display, and
//!   the Pub/Sub publisher.
//! - [`service`]: `all-docs serve`, the Cloud Run service behind Pub/Sub push.
//! - [`store`]: the `Store` trait (streaming bodies, verified reads, listings with metadata) and
//!   its drivers: local files (atomic, the default), GCS (the cloud replica) and memory (tests),
//!   opened from one spec. Only this module touches stored data.
//! - [`bench`](mod@bench): `all-docs bench`, the benchmark scenarios behind BENCHMARKS.md.
//! - [`cli`]: the command line (clap) and dispatch; [`commands`]: what each command does;
//!   [`config`]: flags, environment and npm config into typed settings.
//! - [`select`]: jq filters over one document (`show --select`), through the jaq crates, and
//!   the formats results print in.
//! - [`error`]: the binary's error type and exit codes; [`clock`]: the one wall clock.
//! - [`telemetry`]: logs to stderr (text, or Cloud Logging JSON), and OpenTelemetry traces and
//!   metrics over OTLP when an endpoint is configured.
//! - [`shutdown`]: Ctrl-C and SIGTERM.

pub mod bench;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod error;
pub mod feed;
pub mod handlers;
pub mod queue;
pub mod registry;
pub mod run;
pub mod select;
pub mod service;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod telemetry;

/// The core crate's modules, where this crate's code has always found them.
pub use all_docs_core::{follow, keys, pivots, work};
