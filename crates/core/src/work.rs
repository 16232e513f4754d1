//! Work items and results: the units of work and their wire format.
//!
//! On the wire (Pub/Sub message data, local queue), as the brief fixes it:
//!
//! ```json
//! {"type":"partition-set","id":"ps-1","payload":{"pivots":[null,"0","a","n"]},"priority":0,"attempts":0}
//! {"type":"partition","id":"partition-a-n","payload":{"startKey":"a","endKey":"n"},"priority":0,"attempts":0}
//! {"type":"packument","id":"packument-@types/node","payload":{"packageName":"@types/node","rev":"12-abc"},"priority":0,"attempts":0}
//! ```
//!
//! `id`, `priority`, `attempts` and a packument's `rev` are optional on input; a missing `id` is
//! derived from the type and payload, so the same work always has the same id. Unknown fields
//! are ignored; an unknown `type`, a payload of the wrong shape or an invalid package name is an
//! error that says which. An item may name the registry it was made for (`"origin":"URL"`, left
//! out when absent); a service refuses items for an origin it is not configured with. No I/O
//! here.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::pivots::{self, Pivots};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Fan the pivots out into one `Partition` per consecutive pair.
    PartitionSet { pivots: Pivots },
    /// List `[start, end)` of `_all_docs`, store its rows, fan out changed packuments.
    Partition { start: Option<String>, end: Option<String> },
    /// Fetch one document (conditionally) and store it.
    Packument { name: String, rev: Option<String> },
}

impl Work {
    /// The wire name of the type.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::PartitionSet { .. } => "partition-set",
            Work::Partition { .. } => "partition",
            Work::Packument { .. } => "packument",
        }
    }

    /// The id used when the input has none: stable for the same type and payload.
    pub fn derived_id(&self) -> String {
        match self {
            Work::PartitionSet { pivots } => {
                let text = serde_json::to_string(pivots).unwrap_or_default();
                format!("partition-set-{:016x}", fnv64(text.as_bytes()))
            }
            Work::Partition { start, end } => {
                format!(
                    "partition-{}-{}",
                    start.as_deref().unwrap_or(""),
                    end.as_deref().unwrap_or("")
                )
            }
            Work::Packument { name, .. } => format!("packument-{name}"),
        }
    }

    fn payload(&self) -> Value {
        match self {
            Work::PartitionSet { pivots } => json!({ "pivots": pivots }),
            Work::Partition { start, end } => json!({ "startKey": start, "endKey": end }),
            Work::Packument { name, rev: Some(rev) } => json!({ "packageName": name, "rev": rev }),
            Work::Packument { name, rev: None } => json!({ "packageName": name }),
        }
    }
}

/// One unit of work, as queued and as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: String,
    pub work: Work,
    pub priority: i64,
    pub attempts: u32,
    /// The registry origin the item was made for, if its publisher said (a URL).
    pub origin: Option<String>,
}

impl WorkItem {
    /// A new item with its derived id.
    pub fn new(work: Work) -> WorkItem {
        WorkItem {
            id: work.derived_id(),
            work,
            priority: 0,
            attempts: 0,
            origin: None,
        }
    }

    /// A packument item for `name`, at `rev` when it is for a known revision.
    pub fn packument(name: &str, rev: Option<&str>) -> WorkItem {
        WorkItem::new(Work::Packument {
            name: name.to_owned(),
            rev: rev.map(str::to_owned),
        })
    }

    /// Parses a work item from JSON bytes, with errors that say what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<WorkItem, WorkError> {
        let raw: RawItem = serde_json::from_slice(bytes).map_err(|e| WorkError::Json(e.to_string()))?;
        raw.try_into()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for WorkItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawItem {
            kind: self.work.kind().to_owned(),
            id: Some(self.id.clone()),
            payload: self.work.payload(),
            priority: Some(self.priority),
            attempts: Some(self.attempts),
            origin: self.origin.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for WorkItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawItem::deserialize(d)?.try_into().map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct RawItem {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartitionSetPayload {
    pivots: Pivots,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartitionPayload {
    #[serde(default)]
    start_key: Option<String>,
    #[serde(default)]
    end_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PackumentPayload {
    package_name: String,
    #[serde(default)]
    rev: Option<String>,
}

impl TryFrom<RawItem> for WorkItem {
    type Error = WorkError;

    fn try_from(raw: RawItem) -> Result<WorkItem, WorkError> {
        let payload = |e: serde_json::Error| WorkError::Payload {
            kind: raw.kind.clone(),
            reason: e.to_string(),
        };
        let work = match raw.kind.as_str() {
            "partition-set" => {
                let p: PartitionSetPayload = serde_json::from_value(raw.payload.clone()).map_err(payload)?;
                pivots::check(&p.pivots).map_err(|e| WorkError::Pivots(e.to_string()))?;
                Work::PartitionSet { pivots: p.pivots }
            }
            "partition" => {
                let p: PartitionPayload = serde_json::from_value(raw.payload.clone()).map_err(payload)?;
                if let (Some(s), Some(e)) = (&p.start_key, &p.end_key) {
                    if s >= e {
                        return Err(WorkError::EmptyRange {
                            start: s.clone(),
                            end: e.clone(),
                        });
                    }
                }
                Work::Partition {
                    start: p.start_key,
                    end: p.end_key,
                }
            }
            "packument" => {
                let p: PackumentPayload = serde_json::from_value(raw.payload.clone()).map_err(payload)?;
                validate_name(&p.package_name)?;
                Work::Packument {
                    name: p.package_name,
                    rev: p.rev,
                }
            }
            other => return Err(WorkError::UnknownType(other.to_owned())),
        };
        Ok(WorkItem {
            id: raw.id.filter(|id| !id.is_empty()).unwrap_or_else(|| work.derived_id()),
            work,
            priority: raw.priority.unwrap_or(0),
            attempts: raw.attempts.unwrap_or(0),
            origin: raw.origin,
        })
    }
}

/// Why a work item was refused. Every variant is a message that can never succeed on retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    #[error("work item is not valid JSON: {0}")]
    Json(String),
    #[error("unknown work item type `{0}` (expected partition-set, partition or packument)")]
    UnknownType(String),
    #[error("bad `{kind}` payload: {reason}")]
    Payload { kind: String, reason: String },
    #[error("bad pivots: {0}")]
    Pivots(String),
    #[error("empty partition: startKey {start:?} is not before endKey {end:?}")]
    EmptyRange { start: String, end: String },
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Why a package name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("package name is empty")]
    Empty,
    #[error("package name {name:?} is {len} bytes; at most 214 are allowed")]
    TooLong { name: String, len: usize },
    #[error("package name {0:?} contains a control character or whitespace")]
    Control(String),
    #[error("package name {0:?} starts with `.` or `_`")]
    LeadingDotOrUnderscore(String),
    #[error("package name {0:?} contains a path traversal (a `..` segment or an encoded form)")]
    Traversal(String),
    #[error("package name {0:?} is not `name` or `@scope/name`")]
    Shape(String),
}

/// The longest package name the registry accepts.
pub const MAX_NAME_LEN: usize = 214;

/// Checks a package name before it is used in a URL or a key. Legacy names (uppercase,
/// non-ASCII) are accepted: the upstream still serves them.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.chars().take(40).collect::<String>() + "...",
            len: name.len(),
        });
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(NameError::Control(name.to_owned()));
    }
    // `..` inside a name (`a..b`) is a legal npm name; only a whole `.`/`..` path segment, an
    // encoded dot or slash, or a backslash could walk out of a path.
    let lower = name.to_ascii_lowercase();
    if name.split('/').any(|seg| seg == ".." || seg == ".")
        || lower.contains("%2e")
        || lower.contains("%2f")
        || name.contains('\\')
    {
        return Err(NameError::Traversal(name.to_owned()));
    }
    let unscoped = match name.strip_prefix('@') {
        Some(rest) => match rest.split_once('/') {
            Some((scope, pkg)) if !scope.is_empty() && !pkg.is_empty() && !pkg.contains('/') => {
                if scope.starts_with('.') || scope.starts_with('_') {
                    return Err(NameError::LeadingDotOrUnderscore(name.to_owned()));
                }
                pkg
            }
            _ => return Err(NameError::Shape(name.to_owned())),
        },
        None if name.contains('/') => return Err(NameError::Shape(name.to_owned())),
        None => name,
    };
    if unscoped.starts_with('.') || unscoped.starts_with('_') {
        return Err(NameError::LeadingDotOrUnderscore(name.to_owned()));
    }
    Ok(())
}

/// The partitions a partition-set fans out into.
pub fn fan_out(pivots: &[Option<String>]) -> Vec<WorkItem> {
    pivots::ranges(pivots)
        .into_iter()
        .map(|(start, end)| WorkItem::new(Work::Partition { start, end }))
        .collect()
}

/// What changed in a partition since its rows were last stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowDiff {
    /// `(name, rev)` of names that are new or have a new rev.
    pub changed: Vec<(String, String)>,
    /// Names that were listed before and are gone now (deleted upstream).
    pub removed: Vec<String>,
}

/// Compares a partition's previous rows with a fresh, complete listing (both sorted by name).
pub fn diff_rows<'a>(
    previous: &'a [(String, String)],
    current: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> RowDiff {
    let mut diff = RowDiff::default();
    let mut prev = previous.iter().peekable();
    for (name, rev) in current {
        while let Some((p, _)) = prev.next_if(|(p, _)| p.as_str() < name) {
            diff.removed.push(p.clone());
        }
        match prev.next_if(|(p, _)| p == name) {
            Some((_, old_rev)) if old_rev == rev => {}
            _ => diff.changed.push((name.to_owned(), rev.to_owned())),
        }
    }
    diff.removed.extend(prev.map(|(p, _)| p.clone()));
    diff
}

/// What a packument item needs, given what the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackumentPlan {
    /// The stored document already has the wanted rev: no request at all.
    Skip,
    /// Fetch, conditionally on this ETag if any.
    Fetch { etag: Option<String> },
}

/// Decides a packument item from the stored entry's `(rev, etag, status)`.
pub fn plan_packument(
    stored: Option<(Option<&str>, Option<&str>, crate::status::Status)>,
    wanted_rev: Option<&str>,
) -> PackumentPlan {
    use crate::status::Status;
    match stored {
        Some((rev, _, Status::Ok | Status::Unpublished)) if wanted_rev.is_some() && rev == wanted_rev => {
            PackumentPlan::Skip
        }
        Some((_, etag, Status::Ok | Status::Unpublished)) => PackumentPlan::Fetch {
            etag: etag.map(str::to_owned),
        },
        _ => PackumentPlan::Fetch { etag: None },
    }
}

/// What handling a work item came to, as reported to logs and callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkResult {
    pub work_item_id: String,
    pub success: bool,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub error: Option<ResultError>,
    /// Milliseconds.
    pub duration: u64,
    #[serde(default)]
    pub metrics: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultError {
    pub message: String,
    #[serde(default)]
    pub status_code: Option<u16>,
}

impl fmt::Display for WorkItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.work.kind(), self.id)
    }
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_briefs_examples_round_trip() {
        for line in [
            r#"{"type":"partition-set","id":"ps-1","payload":{"pivots":[null,"0","a","n"]},"priority":0,"attempts":0}"#,
            r#"{"type":"partition","id":"partition-a-n","payload":{"startKey":"a","endKey":"n"},"priority":0,"attempts":0}"#,
            r#"{"type":"packument","id":"packument-@types/node","payload":{"packageName":"@types/node","rev":"12-abc"},"priority":0,"attempts":0}"#,
        ] {
            let item = WorkItem::from_json(line.as_bytes()).unwrap();
            let back: Value = serde_json::from_str(&item.to_json()).unwrap();
            assert_eq!(back, serde_json::from_str::<Value>(line).unwrap());
        }
    }

    #[test]
    fn optional_fields_and_derived_ids() {
        let item =
            WorkItem::from_json(br#"{"type":"packument","payload":{"packageName":"lodash"},"extra":1}"#).unwrap();
        assert_eq!(item.id, "packument-lodash");
        assert_eq!(
            item.work,
            Work::Packument {
                name: "lodash".into(),
                rev: None
            }
        );
        assert_eq!((item.priority, item.attempts), (0, 0));
        let p = WorkItem::from_json(br#"{"type":"partition","payload":{"startKey":null,"endKey":"a"}}"#).unwrap();
        assert_eq!(p.id, "partition--a");
        let a = WorkItem::from_json(br#"{"type":"partition-set","payload":{"pivots":[null,"a"]}}"#).unwrap();
        let b = WorkItem::from_json(br#"{"type":"partition-set","payload":{"pivots":[null,"a"]}}"#).unwrap();
        assert_eq!(a.id, b.id);
        assert!(a.id.starts_with("partition-set-"));
    }

    #[test]
    fn bad_items_say_what_is_wrong() {
        let err = |s: &str| WorkItem::from_json(s.as_bytes()).unwrap_err();
        assert!(matches!(err("{"), WorkError::Json(_)));
        assert!(matches!(err(r#"{"payload":{}}"#), WorkError::Json(_)));
        assert_eq!(
            err(r#"{"type":"tarball","payload":{}}"#),
            WorkError::UnknownType("tarball".into())
        );
        assert!(matches!(
            err(r#"{"type":"packument","payload":{}}"#),
            WorkError::Payload { .. }
        ));
        assert!(matches!(
            err(r#"{"type":"packument","payload":{"packageName":7}}"#),
            WorkError::Payload { .. }
        ));
        assert!(matches!(
            err(r#"{"type":"partition-set","payload":{"pivots":["b","a"]}}"#),
            WorkError::Pivots(_)
        ));
        assert!(matches!(
            err(r#"{"type":"partition","payload":{"startKey":"b","endKey":"a"}}"#),
            WorkError::EmptyRange { .. }
        ));
        assert!(matches!(
            err(r#"{"type":"packument","payload":{"packageName":"../etc"}}"#),
            WorkError::Name(_)
        ));
    }

    #[test]
    fn package_name_rules() {
        for ok in [
            "lodash",
            "@types/node",
            "JSONStream",
            "-",
            "9lives",
            "café",
            "a.b_c-d",
            "a..b",
            "@s/a..b",
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(215);
        for bad in [
            "", &long, "..", "../etc", "a/../b", "@s/..", "%2e%2e", "%2E%2E", "a\nb", "a b", "\u{7f}x", ".hidden",
            "_private", "@s/.x", "@/x", "@s/", "a/b", "@s/a/b", "a\\b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn fan_out_makes_half_open_partitions() {
        let items = fan_out(&[None, Some("a".into()), Some("n".into())]);
        let ranges: Vec<_> = items
            .iter()
            .map(|i| match &i.work {
                Work::Partition { start, end } => (start.clone(), end.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            ranges,
            vec![
                (None, Some("a".into())),
                (Some("a".into()), Some("n".into())),
                (Some("n".into()), None)
            ]
        );
        assert_eq!(items[1].id, "partition-a-n");
    }

    #[test]
    fn diffs_find_new_changed_and_removed_names() {
        let prev: Vec<(String, String)> = [("a", "1"), ("b", "1"), ("c", "1"), ("e", "1")]
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect();
        let cur = [("a", "1"), ("b", "2"), ("d", "1"), ("e", "1"), ("f", "1")];
        let diff = diff_rows(&prev, cur.iter().copied());
        assert_eq!(
            diff.changed,
            vec![
                ("b".into(), "2".into()),
                ("d".into(), "1".into()),
                ("f".into(), "1".into())
            ]
        );
        assert_eq!(diff.removed, vec!["c".to_string()]);
        assert_eq!(diff_rows(&prev, std::iter::empty()).removed.len(), 4);
    }

    #[test]
    fn packument_plans() {
        use crate::status::Status;
        assert_eq!(
            plan_packument(Some((Some("2-a"), Some("e"), Status::Ok)), Some("2-a")),
            PackumentPlan::Skip
        );
        assert_eq!(
            plan_packument(Some((Some("1-a"), Some("e"), Status::Ok)), Some("2-a")),
            PackumentPlan::Fetch { etag: Some("e".into()) }
        );
        assert_eq!(
            plan_packument(Some((Some("2-a"), Some("e"), Status::Ok)), None),
            PackumentPlan::Fetch { etag: Some("e".into()) }
        );
        assert_eq!(
            plan_packument(Some((Some("2-a"), Some("e"), Status::Deleted)), Some("2-a")),
            PackumentPlan::Fetch { etag: None }
        );
        assert_eq!(plan_packument(None, Some("1-a")), PackumentPlan::Fetch { etag: None });
    }

    #[test]
    fn results_use_camel_case() {
        let r = WorkResult {
            work_item_id: "x".into(),
            success: false,
            data: Value::Null,
            error: Some(ResultError {
                message: "boom".into(),
                status_code: Some(503),
            }),
            duration: 12,
            metrics: json!({}),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["workItemId"], "x");
        assert_eq!(v["error"]["statusCode"], 503);
        assert_eq!(v["duration"], 12);
    }
}
