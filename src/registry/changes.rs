//! The replication origin's change feed over HTTP: `GET /` for `update_seq`, `GET /_changes`
//! pages, checked by the core's pure parser.

pub use all_docs_core::changes::*;

use serde_json::Value;

use super::client::{Client, FetchError};
use super::origin::Origin;

/// Reads one page of the feed after `since`.
pub async fn read_page(client: &Client, origin: &Origin, since: u64, limit: usize) -> Result<Page, FetchError> {
    let what = format!("_changes since {since}");
    let raw: RawPage = client.get_json(origin, &query(since, limit), &what).await?;
    check_page(raw, since).map_err(|reason| FetchError::Invalid { what, reason })
}

/// The origin's current `update_seq` (from `GET /`).
pub async fn update_seq(client: &Client, origin: &Origin) -> Result<u64, FetchError> {
    let what = "the replication origin's update_seq (GET /)";
    let root: Value = client.get_json(origin, "/", what).await?;
    let seq = root.get("update_seq").ok_or_else(|| FetchError::Invalid {
        what: what.into(),
        reason: "no `update_seq` in the answer".into(),
    })?;
    seq_of(seq).map_err(|reason| FetchError::Invalid {
        what: what.into(),
        reason,
    })
}
