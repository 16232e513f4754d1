//! The replication origin's change feed: `GET /` for `update_seq`, `GET /_changes` pages.
//!
//! `GET /_changes?since=SEQ&limit=N` answers
//! `{"results":[{"seq":N,"id":"name","changes":[{"rev":".."}],"deleted":true?}],"last_seq":N}`.
//! Sequence numbers are integers here (a string of digits is accepted too); rows must come after
//! `since`, in increasing order, and `last_seq` may not be behind them. Parsing and checking are
//! pure ([`parse_page`], [`check_page`]); each runtime reads the pages over its own HTTP client.

use serde::Deserialize;
use serde_json::Value;

/// The upstream's largest page.
pub const PAGE_LIMIT: usize = 10_000;

/// One row of the feed: the latest state of `id` as of `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub id: String,
    /// The document's revision after the change (the first of `changes`).
    pub rev: String,
    pub deleted: bool,
}

/// A checked page of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<Change>,
    /// Where the next page starts (`since=last_seq`).
    pub last_seq: u64,
}

#[derive(Debug, Deserialize)]
pub struct RawPage {
    pub results: Vec<RawChange>,
    pub last_seq: Value,
}

#[derive(Debug, Deserialize)]
pub struct RawChange {
    pub seq: Value,
    pub id: String,
    #[serde(default)]
    pub changes: Vec<RawRev>,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Deserialize)]
pub struct RawRev {
    pub rev: String,
}

/// The path and query of one `_changes` request.
pub fn query(since: u64, limit: usize) -> String {
    format!("/_changes?since={since}&limit={limit}")
}

/// A sequence number: a JSON integer, or a string of digits.
pub fn seq_of(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("sequence number {n} is not a non-negative integer")),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map_err(|_| format!("sequence number \"{s}\" is too large"))
        }
        other => Err(format!("sequence number {other} is not an integer")),
    }
}

/// Parses one answer of `_changes?since={since}`.
pub fn parse_page(body: &[u8], since: u64) -> Result<Page, String> {
    let raw: RawPage = serde_json::from_slice(body).map_err(|e| format!("not a _changes answer: {e}"))?;
    check_page(raw, since)
}

/// Checks a decoded page: integer seqs after `since`, increasing, each row with a rev, and a
/// `last_seq` not behind the rows.
pub fn check_page(raw: RawPage, since: u64) -> Result<Page, String> {
    let last_seq = seq_of(&raw.last_seq).map_err(|e| format!("last_seq: {e}"))?;
    let mut rows = Vec::with_capacity(raw.results.len());
    let mut previous = since;
    for (i, r) in raw.results.into_iter().enumerate() {
        let seq = seq_of(&r.seq).map_err(|e| format!("row {}: {e}", i + 1))?;
        if seq <= previous {
            return Err(format!(
                "row {} (`{}`): seq {seq} is not after {previous} (rows must follow `since` in increasing order)",
                i + 1,
                r.id
            ));
        }
        previous = seq;
        if r.id.is_empty() {
            return Err(format!("row {}: empty id", i + 1));
        }
        let Some(rev) = r.changes.into_iter().next().map(|c| c.rev).filter(|r| !r.is_empty()) else {
            return Err(format!("row {} (`{}`): no rev in `changes`", i + 1, r.id));
        };
        rows.push(Change {
            seq,
            id: r.id,
            rev,
            deleted: r.deleted,
        });
    }
    if last_seq < previous {
        return Err(format!("last_seq {last_seq} is behind its rows (seq {previous})"));
    }
    Ok(Page { rows, last_seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_parses_with_deletions_and_string_seqs() {
        let body = br#"{"results":[
            {"seq":11,"id":"a","changes":[{"rev":"2-x"}]},
            {"seq":"13","id":"@s/b","changes":[{"rev":"5-y"}],"deleted":true}
        ],"last_seq":14}"#;
        let page = parse_page(body, 10).unwrap();
        assert_eq!(page.last_seq, 14);
        assert_eq!(
            page.rows,
            vec![
                Change {
                    seq: 11,
                    id: "a".into(),
                    rev: "2-x".into(),
                    deleted: false
                },
                Change {
                    seq: 13,
                    id: "@s/b".into(),
                    rev: "5-y".into(),
                    deleted: true
                },
            ]
        );
        assert_eq!(parse_page(br#"{"results":[],"last_seq":10}"#, 10).unwrap().rows, vec![]);
        assert_eq!(query(5, 10_000), "/_changes?since=5&limit=10000");
    }

    #[test]
    fn bad_pages_are_named_errors() {
        let cases: [(&[u8], &str); 9] = [
            (b"not json", "not a _changes answer"),
            (br#"{"results":[]}"#, "last_seq"),
            (br#"{"results":[],"last_seq":-1}"#, "not a non-negative integer"),
            (br#"{"results":[],"last_seq":"12-g1AAA"}"#, "not an integer"),
            (
                br#"{"results":[{"seq":10,"id":"a","changes":[{"rev":"1-a"}]}],"last_seq":10}"#,
                "not after 10",
            ),
            (
                br#"{"results":[{"seq":12,"id":"a","changes":[{"rev":"1-a"}]},{"seq":11,"id":"b","changes":[{"rev":"1-b"}]}],"last_seq":12}"#,
                "not after 12",
            ),
            (br#"{"results":[{"seq":11,"id":"a","changes":[]}],"last_seq":11}"#, "no rev"),
            (br#"{"results":[{"seq":11,"id":"","changes":[{"rev":"1-a"}]}],"last_seq":11}"#, "empty id"),
            (
                br#"{"results":[{"seq":13,"id":"a","changes":[{"rev":"1-a"}]}],"last_seq":12}"#,
                "behind its rows",
            ),
        ];
        for (body, needle) in cases {
            let err = parse_page(body, 10).unwrap_err();
            assert!(err.contains(needle), "{}: {err}", String::from_utf8_lossy(body));
        }
    }
}
