//! Listing a key range of `_all_docs`: the query, the page parser, and the paging rules.
//!
//! A partition is the half-open range `[start, end)`. Pages are requested with
//! `inclusive_end=false` and `limit` 10 000 (the upstream's maximum); the next page starts at
//! the last key seen (the upstream has no `skip`), and its first row, the one already seen, is
//! dropped. Rows must come strictly increasing in byte order and inside the range; rows at or
//! past `end` end the listing even if the upstream ignored `inclusive_end`. The paging logic is
//! pure ([`Pager`]); each runtime drives it over its own HTTP client.

use serde::Deserialize;

/// The upstream's largest page.
pub const PAGE_LIMIT: usize = 10_000;

/// One `{id, rev}` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub rev: String,
}

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub total_rows: Option<u64>,
    pub rows: Vec<RawRow>,
}

#[derive(Debug, Deserialize)]
pub struct RawRow {
    pub id: Option<String>,
    pub value: Option<RowValue>,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RowValue {
    pub rev: String,
    #[serde(default)]
    pub deleted: bool,
}

/// The query string of one `_all_docs` request.
pub fn query(start: Option<&str>, end: Option<&str>, limit: usize) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(s) = start {
        q.append_pair("startkey", &json(s));
    }
    if let Some(e) = end {
        q.append_pair("endkey", &json(e));
        q.append_pair("inclusive_end", "false");
    }
    q.append_pair("limit", &limit.to_string());
    format!("/_all_docs?{}", q.finish())
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Paging state over one range.
#[derive(Debug, Clone)]
pub struct Pager {
    start: Option<String>,
    end: Option<String>,
    limit: usize,
    last: Option<String>,
    done: bool,
}

impl Pager {
    pub fn new(start: Option<&str>, end: Option<&str>, limit: usize) -> Pager {
        Pager {
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
            limit: limit.max(2),
            last: None,
            done: false,
        }
    }

    /// The next request, or `None` when the range is complete.
    pub fn next_query(&self) -> Option<String> {
        if self.done {
            return None;
        }
        let from = self.last.as_deref().or(self.start.as_deref());
        Some(query(from, self.end.as_deref(), self.limit))
    }

    /// Takes a page; returns its new rows (without the repeated boundary row).
    pub fn accept(&mut self, page: Page) -> Result<Vec<Row>, String> {
        let returned = page.rows.len();
        let mut out = Vec::with_capacity(returned);
        for raw in page.rows {
            if let Some(e) = raw.error {
                return Err(format!("row error `{e}` in a range listing"));
            }
            let (Some(id), Some(value)) = (raw.id, raw.value) else {
                return Err("row without `id` or `value.rev`".into());
            };
            if self.last.as_deref() == Some(id.as_str()) && out.is_empty() {
                continue; // the boundary row, seen on the previous page
            }
            if self.end.as_deref().is_some_and(|e| id.as_str() >= e) {
                self.done = true;
                return Ok(out);
            }
            if self.start.as_deref().is_some_and(|s| id.as_str() < s) {
                return Err(format!("row {id:?} is before the range start {:?}", self.start));
            }
            let prev = out.last().map(|r: &Row| r.id.as_str()).or(self.last.as_deref());
            if prev.is_some_and(|p| id.as_str() <= p) {
                return Err(format!("rows out of byte order: {id:?} after {prev:?}"));
            }
            if value.deleted {
                continue;
            }
            out.push(Row { id, rev: value.rev });
        }
        if let Some(last) = out.last() {
            self.last = Some(last.id.clone());
        }
        if returned < self.limit || out.is_empty() {
            self.done = true;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[&str]) -> Page {
        let rows = ids
            .iter()
            .map(|id| RawRow {
                id: Some((*id).into()),
                value: Some(RowValue {
                    rev: format!("1-{id}"),
                    deleted: false,
                }),
                error: None,
            })
            .collect();
        Page { total_rows: None, rows }
    }

    #[test]
    fn query_encodes_keys_as_json() {
        assert_eq!(
            query(Some("@types/node"), Some("b"), 10_000),
            "/_all_docs?startkey=%22%40types%2Fnode%22&endkey=%22b%22&inclusive_end=false&limit=10000"
        );
        assert_eq!(query(None, None, 5), "/_all_docs?limit=5");
        assert!(query(Some("caf\u{e9}"), None, 5).contains("startkey=%22caf%C3%A9%22"));
    }

    #[test]
    fn pages_continue_from_the_last_key_without_duplicates() {
        let mut p = Pager::new(Some("a"), Some("z"), 3);
        assert_eq!(p.next_query().unwrap(), query(Some("a"), Some("z"), 3));
        let rows = p.accept(page(&["a", "b", "c"])).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(p.next_query().unwrap(), query(Some("c"), Some("z"), 3));
        let rows = p.accept(page(&["c", "d", "e"])).unwrap();
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["d", "e"]);
        let rows = p.accept(page(&["e", "f"])).unwrap();
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["f"]);
        assert_eq!(p.next_query(), None);
    }

    #[test]
    fn an_upstream_that_ignores_inclusive_end_cannot_leak_the_end_key() {
        let mut p = Pager::new(None, Some("c"), 10);
        let rows = p.accept(page(&["a", "b", "c", "d"])).unwrap();
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.next_query(), None);
    }

    #[test]
    fn disorder_and_errors_are_refused() {
        assert!(Pager::new(None, None, 10).accept(page(&["b", "a"])).is_err());
        assert!(Pager::new(Some("m"), None, 10).accept(page(&["a"])).is_err());
        let bad = Page {
            total_rows: None,
            rows: vec![RawRow {
                id: None,
                value: None,
                error: Some("not_found".into()),
            }],
        };
        assert!(Pager::new(None, None, 10).accept(bad).is_err());
    }

    #[test]
    fn a_full_page_of_only_the_boundary_row_ends_the_listing() {
        let mut p = Pager::new(None, None, 2);
        p.accept(page(&["a", "b"])).unwrap();
        assert!(p.accept(page(&["b"])).unwrap().is_empty());
        assert_eq!(p.next_query(), None);
    }
}
