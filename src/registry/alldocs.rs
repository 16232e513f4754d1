//! Listing a key range of `_all_docs` over HTTP: the pure query, page parser and paging rules
//! ([`Pager`]) are the core's; this drives them with the client.

pub use all_docs_core::alldocs::*;

use super::client::{Client, FetchError};
use super::origin::Origin;

/// Lists every live `{id, rev}` in `[start, end)`, in byte order.
pub async fn list_range(
    client: &Client,
    origin: &Origin,
    start: Option<&str>,
    end: Option<&str>,
) -> Result<Vec<Row>, FetchError> {
    let mut pager = Pager::new(start, end, PAGE_LIMIT);
    let mut rows = Vec::new();
    let what = format!("_all_docs [{:?}, {:?})", start.unwrap_or(""), end.unwrap_or(""));
    while let Some(q) = pager.next_query() {
        let page: Page = client.get_json(origin, &q, &what).await?;
        let new = pager.accept(page).map_err(|reason| FetchError::Invalid {
            what: what.clone(),
            reason,
        })?;
        rows.extend(new);
    }
    Ok(rows)
}
