//! What each fuzz target asserts, shared by the libFuzzer targets (`fuzz_targets/*.rs`) and by
//! `tests/fuzz_corpus.rs`, which runs the committed corpus through the same functions on stable.
//!
//! Every function takes arbitrary bytes and must never panic except through an assertion here:
//! a parser either refuses its input with an error or returns a value that keeps the parser's
//! promises (sorted pivots, round-tripping items and keys, rows inside the range, increasing
//! sequence numbers).
#![allow(dead_code)]

use all_docs::keys::{self, Key};
use all_docs::pivots;
use all_docs::registry::origin::Origin;
use all_docs::registry::{alldocs, changes};
use all_docs::service::envelope;
use all_docs::work::{Work, WorkItem};

/// A pivots file: what parses is checked, sorted, and survives a JSON round trip.
pub fn pivots(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = pivots::parse(text) else { return };
    pivots::check(&parsed).expect("parse only returns checked pivots");
    let ranges = pivots::ranges(&parsed);
    assert_eq!(ranges.len(), parsed.len(), "one range per pivot");
    for (start, end) in &ranges {
        if let (Some(s), Some(e)) = (start, end) {
            assert!(s < e, "range [{s:?}, {e:?}) is empty");
        }
    }
    let again = pivots::parse(&pivots::to_json(&parsed)).expect("its own JSON parses");
    assert_eq!(again, parsed, "JSON round trip");
}

/// A work item: what decodes re-encodes to the same item, and keeps its rules.
pub fn work_item(data: &[u8]) {
    let Ok(item) = WorkItem::from_json(data) else { return };
    check_item(&item);
}

fn check_item(item: &WorkItem) {
    let json = item.to_json();
    let again = WorkItem::from_json(json.as_bytes()).expect("an item's own JSON decodes");
    assert_eq!(&again, item, "round trip of {json}");
    assert!(!item.id.is_empty(), "every item has an id");
    match &item.work {
        Work::Packument { name, .. } => all_docs::work::validate_name(name).expect("decoded names are valid"),
        Work::Partition {
            start: Some(s),
            end: Some(e),
        } => assert!(s < e, "decoded ranges are not empty"),
        Work::PartitionSet { pivots } => pivots::check(pivots).expect("decoded pivots are checked"),
        _ => {}
    }
}

/// A push request body for each endpoint: a delivery is always for that endpoint, and the
/// origin check accepts only an item that names no origin or a configured one.
pub fn envelope(data: &[u8]) {
    let replicate = Origin::parse("http://127.0.0.1:5984").expect("origin");
    let registry = Origin::parse("https://registry.example/npm").expect("origin");
    for endpoint in ["partition-set", "partition", "packument"] {
        if let Ok(delivery) = envelope::decode(endpoint, data, |_| None) {
            assert_eq!(delivery.item.work.kind(), endpoint);
            check_item(&delivery.item);
            if envelope::check_origin(&delivery.item, &replicate, &registry).is_ok() {
                if let Some(origin) = &delivery.item.origin {
                    assert!(Origin::parse(origin).is_ok(), "accepted origin {origin:?}");
                }
            }
        }
    }
}

/// A key's text or path: what parses prints back as the same text and survives its path.
pub fn keys(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = text.parse::<Key>() {
        assert_eq!(key.to_string(), text, "key text round trip");
        assert_eq!(
            Key::from_path(&key.path()).as_ref(),
            Ok(&key),
            "path round trip of {text}"
        );
    }
    if let Ok(key) = Key::from_path(text) {
        assert_eq!(
            Key::from_path(&key.path()).as_ref(),
            Ok(&key),
            "path round trip of {text}"
        );
    }
    if let Some(decoded) = keys::unhex(text) {
        assert_eq!(keys::hex(decoded.as_bytes()), text, "hex round trip");
    }
}

/// Two `_all_docs` pages of one range (the first byte picks the range, the rest is split at the
/// first newline): accepted rows are in the range, strictly increasing across both pages.
pub fn all_docs_page(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (start, end) = match pick % 4 {
        0 => (None, None),
        1 => (Some("b"), Some("m")),
        2 => (Some("m"), None),
        _ => (None, Some("b")),
    };
    let (first, second) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let mut pager = alldocs::Pager::new(start, end, 3);
    let mut seen: Vec<String> = Vec::new();
    for body in [first, second] {
        if pager.next_query().is_none() {
            break;
        }
        let Ok(page) = serde_json::from_slice::<alldocs::Page>(body) else {
            return;
        };
        let Ok(rows) = pager.accept(page) else { return };
        for row in rows {
            assert!(
                start.is_none_or(|s| row.id.as_str() >= s),
                "{:?} before the range",
                row.id
            );
            assert!(end.is_none_or(|e| row.id.as_str() < e), "{:?} after the range", row.id);
            if let Some(prev) = seen.last() {
                assert!(prev < &row.id, "{:?} after {prev:?}", row.id);
            }
            seen.push(row.id);
        }
    }
}

/// A `_changes` page after the `since` in the first byte: rows follow `since` in increasing
/// order, each with an id and a rev, and `last_seq` is not behind them.
pub fn changes_page(data: &[u8]) {
    let Some((&since, body)) = data.split_first() else {
        return;
    };
    let since = u64::from(since);
    let Ok(page) = changes::parse_page(body, since) else {
        return;
    };
    let mut previous = since;
    for row in &page.rows {
        assert!(row.seq > previous, "seq {} after {previous}", row.seq);
        assert!(!row.id.is_empty() && !row.rev.is_empty());
        previous = row.seq;
    }
    assert!(page.last_seq >= previous, "last_seq behind the rows");
}
