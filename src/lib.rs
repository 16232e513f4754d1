//! all-docs: build and keep a complete replica of an npm-style registry's metadata.
//!
//! The map (see `ARCHITECTURE.md` for the invariants):
//!
//! - [`sim`]: `all-docs sim`, a registry simulator on loopback that behaves like the real
//!   upstream (byte-ordered `_all_docs`, `_changes`, packuments with ETags, rate limiting with
//!   `Retry-After` and penalty windows, injected faults). Every test and benchmark talks to it.
//! - [`cli`]: the command line (clap) and dispatch.
//! - [`error`]: the binary's error type and exit codes.
//! - [`telemetry`]: logging to stderr, text or JSON.
//! - [`shutdown`]: Ctrl-C and SIGTERM.

pub mod cli;
pub mod error;
pub mod shutdown;
pub mod sim;
pub mod telemetry;
