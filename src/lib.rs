//! all-docs: build and keep a complete replica of an npm-style registry's metadata.
//!
//! The map (see `ARCHITECTURE.md` for the invariants):
//!
//! - [`sim`]: `all-docs sim`, a registry simulator on loopback that behaves like the real
//!   upstream (byte-ordered `_all_docs`, `_changes`, packuments with ETags, rate limiting with
//!   `Retry-After` and penalty windows, injected faults). Every test and benchmark talks to it.
//! - [`work`]: work items (`partition-set`, `partition`, `packument`), their wire format and
//!   package-name rules. No I/O.
//! - [`keys`]: cache keys (`v1:packument:{origin}:{hex}`) and their paths. No I/O.
//! - [`pivots`]: pivot files (JSON or JavaScript arrays), ranges and equal-count plans. No I/O.
//! - [`registry`]: the upstream client; [`registry::governor`] decides pacing and retries
//!   (no I/O).
//! - [`handlers`]: what each work item does, with I/O, shared by every runner.
//! - [`queue`]: where work runs: the local runner and its progress display.
//! - [`store`]: the `Store` trait (streaming bodies, verified reads) and its drivers: local
//!   files (atomic, the default) and memory (tests). Only this module touches stored data.
//! - [`bench`](mod@bench): `all-docs bench`, the benchmark scenarios behind BENCHMARKS.md.
//! - [`cli`]: the command line (clap) and dispatch; [`commands`]: what each command does;
//!   [`config`]: flags, environment and npm config into typed settings.
//! - [`error`]: the binary's error type and exit codes.
//! - [`telemetry`]: logs to stderr (text, or Cloud Logging JSON), and OpenTelemetry traces and
//!   metrics over OTLP when an endpoint is configured.
//! - [`shutdown`]: Ctrl-C and SIGTERM.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod follow;
pub mod handlers;
pub mod keys;
pub mod pivots;
pub mod queue;
pub mod registry;
pub mod service;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod work;
