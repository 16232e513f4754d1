//! Talking to the upstream. Every request goes through the per-origin [`governor`].
//!
//! - [`governor`]: pacing, global `Retry-After` pauses, AIMD, retry decisions. No I/O.
//! - [`jsoncheck`]: streaming JSON validation of bodies, picking out `_rev`. No I/O.

pub mod governor;
pub mod jsoncheck;
