//! What a stored entry is: the one piece of the store's metadata the core decides on.

use serde::{Deserialize, Serialize};

/// What a stored entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A document as served.
    Ok,
    /// The upstream's stub for an unpublished package.
    Unpublished,
    /// A tombstone: the upstream says the package is gone (the last body may be kept).
    Deleted,
}
