//! What each fuzz target asserts, shared by the libFuzzer targets (`fuzz_targets/*.rs`) and by
//! `tests/fuzz_corpus.rs`, which runs the committed corpus through the same functions on stable.
//!
//! Every function takes arbitrary bytes and must never panic except through an assertion here:
//! a parser either refuses its input with an error or returns a value that keeps the parser's
//! promises (sorted pivots, round-tripping items and keys, rows inside the range, increasing
//! sequence numbers, the same verdict as serde_json on a JSON text).
#![allow(dead_code)]

use all_docs::keys::{self, Key};
use all_docs::pivots;
use all_docs::registry::jsoncheck::{self, JsonCheck, JsonError, Summary};
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

/// The streaming JSON validator against serde_json: fed whole, byte by byte, or in chunks whose
/// sizes come from the input (empty ones too), it gives one answer; it accepts exactly the JSON
/// texts of RFC 8259; and what it picks out of an accepted top level is what serde_json reads.
///
/// The oracle for "is this JSON" is serde_json's syntax-only path (`IgnoredAny`, which keeps no
/// stack, so has no recursion limit, and reads numbers without converting them) plus UTF-8
/// (RFC 8259 §8.1). A `Value` refuses more, and each extra refusal is a deliberate difference
/// the validator keeps, asserted here to be one of:
/// - nesting deeper than 128 (serde_json's recursion limit; ours is `MAX_DEPTH`, which refuses
///   only from `MAX_DEPTH + 1` open brackets, more than the 4 KiB the fuzzer is run with);
/// - a number beyond f64 (`1e400`): RFC 8259 §6 leaves range to the reader, and the validator
///   checks syntax only;
/// - a lone UTF-16 surrogate escape (`"\ud800"`): RFC 8259 §8.2 allows it in the grammar, and a
///   replicator should copy such a document (JavaScript's `JSON.parse` reads it) rather than
///   refuse the package forever. The summary reads it as U+FFFD, so serde_json is given the
///   text with those escapes rewritten to `\ufffd` for the comparison.
///
/// Duplicate keys: the last occurrence of a top-level `_rev`, `name` or `time` decides, as in
/// serde_json's `Value` (and `JSON.parse`).
pub fn json_check(data: &[u8]) {
    let whole = check_json(&[data]);
    let bytewise: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(check_json(&bytewise), whole, "byte by byte");
    assert_eq!(check_json(&json_chunks(data)), whole, "in chunks");

    let syntax = std::str::from_utf8(data).is_ok() && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok();
    let rewritten = without_lone_surrogates(data);
    let value = serde_json::from_slice::<serde_json::Value>(&rewritten);
    if syntax {
        let original = serde_json::from_slice::<serde_json::Value>(data).err();
        for (e, lone_surrogate) in [(original.as_ref(), true), (value.as_ref().err(), false)] {
            let Some(e) = e.map(ToString::to_string) else { continue };
            let deliberate = e.starts_with("recursion limit exceeded")
                || e.starts_with("number out of range")
                || lone_surrogate
                    && (e.starts_with("lone leading surrogate") || e.starts_with("unexpected end of hex escape"));
            assert!(deliberate, "serde_json refuses valid syntax for an unknown reason: {e}");
        }
    } else {
        assert!(value.is_err(), "a Value parses, so its syntax does");
    }

    match &whole {
        Err(JsonError {
            msg: "nested too deeply",
            ..
        }) => {
            let opened = data.iter().filter(|&&b| b == b'[' || b == b'{').count();
            assert!(
                opened > jsoncheck::MAX_DEPTH,
                "refused as too deep with {opened} brackets"
            );
        }
        Ok(_) => assert!(syntax, "accepted what is not JSON: {whole:?}"),
        Err(e) => assert!(!syntax, "refused JSON: {e}"),
    }

    let (Ok(summary), Ok(value)) = (&whole, &value) else {
        return;
    };
    let top_string = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|s| s.len() <= jsoncheck::CAPTURE_MAX)
            .map(str::to_owned)
    };
    let expected = Summary {
        rev: top_string("_rev"),
        name: top_string("name"),
        unpublished: value
            .get("time")
            .and_then(serde_json::Value::as_object)
            .is_some_and(|time| time.contains_key("unpublished")),
        is_object: value.is_object(),
    };
    assert_eq!(summary, &expected, "summary of {value}");
}

/// Feeds `chunks` to one validator and finishes it; an error, once seen, must stick.
fn check_json(chunks: &[&[u8]]) -> Result<Summary, JsonError> {
    let mut check = JsonCheck::new();
    let mut first_error = None;
    for chunk in chunks {
        if let Err(e) = check.feed(chunk) {
            first_error.get_or_insert(e);
        }
    }
    let result = check.finish();
    if let Some(e) = first_error {
        assert_eq!(result.as_ref(), Err(&e), "the first error sticks");
    }
    result
}

/// `data` cut where its own bytes say: each chunk is `data[k] % 23` bytes long, `k` moving along
/// the input, so boundaries land everywhere as it mutates. A size of 0 feeds an empty chunk and
/// then one byte, so the cutting always ends.
fn json_chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let (mut at, mut k) = (0, 0);
    while at < data.len() {
        let mut size = usize::from(data[k % data.len()] % 23);
        if size == 0 {
            chunks.push(&data[at..at]);
            size = 1;
        }
        let end = (at + size).min(data.len());
        chunks.push(&data[at..end]);
        at = end;
        k += 1;
    }
    chunks
}

/// `data` with every `\uXXXX` escape of an unpaired surrogate replaced by `\ufffd`, the same
/// length. Escapes are read in pairs from the left (`\\u` is not one); a backslash outside a
/// string makes the text invalid for both parsers, so where it puts the pairing out of step
/// does not matter.
fn without_lone_surrogates(data: &[u8]) -> Vec<u8> {
    fn unit(at: &[u8]) -> Option<u16> {
        let hex = at.strip_prefix(b"\\u")?.get(..4)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    }
    let mut out = data.to_vec();
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(u) = unit(&data[i..]) else {
            i += 2;
            continue;
        };
        if (0xD800..0xDC00).contains(&u) && unit(&data[i + 6..]).is_some_and(|l| (0xDC00..0xE000).contains(&l)) {
            i += 12;
            continue;
        }
        if (0xD800..0xE000).contains(&u) {
            out[i + 2..i + 6].copy_from_slice(b"fffd");
        }
        i += 6;
    }
    out
}
