//! Pub/Sub push requests: from a request body to a [`WorkItem`], or a reason it can never be one.
//!
//! Two formats arrive at the push endpoints:
//!
//! - the wrapped envelope, `{"message":{"data":<base64 WorkItem>,"attributes":{..},
//!   "messageId":"..","publishTime":".."},"subscription":"..","deliveryAttempt":N}` (Pub/Sub also
//!   spells the message fields `message_id` and `publish_time`);
//! - the unwrapped ("no wrapper") format, where the body is the WorkItem itself and the message
//!   id travels in the `x-goog-pubsub-message-id` header.
//!
//! Everything here is a pure function of the bytes and headers: no I/O, so the decisions can be
//! tested directly and compiled anywhere. A [`Rejection`] is final: the same message would be
//! refused on every delivery, so the service answers 4xx and Pub/Sub moves it to the dead-letter
//! topic after its maximum attempts.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::origin::Origin;
use crate::work::{WorkError, WorkItem};

/// What the push request says about the message, for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageInfo {
    pub message_id: Option<String>,
    pub subscription: Option<String>,
    pub publish_time: Option<String>,
    /// Sent by Pub/Sub only on subscriptions with a dead-letter policy (never by the emulator).
    pub delivery_attempt: Option<u32>,
}

/// A decoded push request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub item: WorkItem,
    pub info: MessageInfo,
}

/// Why a push request can never be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the request body is empty")]
    Empty,
    /// Answered 413 (Content Too Large), not 400: HTTP's status for exactly this.
    #[error("the request body is over the 16 MiB limit: {0}")]
    TooLarge(String),
    #[error("the request body is not JSON: {0}")]
    NotJson(String),
    #[error("the push envelope has no `message.data`")]
    NoData,
    #[error("`message.data` is not valid base64: {0}")]
    Base64(String),
    #[error("the work item is invalid: {0}")]
    Item(#[from] WorkError),
    #[error("a `{got}` item was pushed to the `{endpoint}` endpoint")]
    WrongEndpoint { endpoint: &'static str, got: &'static str },
    #[error("the work item is for origin `{origin}`, which is not in this service's allow-list ({allowed})")]
    OriginNotAllowed { origin: String, allowed: String },
}

/// Refuses an item made for another registry: its `origin`, if it names one, must be the
/// configured origin the item's work reads from (`registry` for packuments, `replicate` for the
/// rest). Scheme and host compare without case and with the default port implied; the path
/// compares exactly.
pub fn check_origin(item: &WorkItem, replicate: &Origin, registry: &Origin) -> Result<(), Rejection> {
    let Some(origin) = item.origin.as_deref() else {
        return Ok(());
    };
    let ours = match item.work {
        crate::work::Work::Packument { .. } => registry,
        _ => replicate,
    };
    if Origin::parse(origin).is_ok_and(|o| same_origin(o.base(), ours.base())) {
        return Ok(());
    }
    Err(Rejection::OriginNotAllowed {
        origin: origin.chars().take(200).collect(),
        allowed: ours.base().to_owned(),
    })
}

/// `scheme://host[:port]` lowercased with the scheme's default port dropped, and the path.
fn origin_parts(base: &str) -> (String, &str) {
    let (scheme, rest) = base.split_once("://").unwrap_or(("", base));
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let authority = authority.to_ascii_lowercase();
    let scheme = scheme.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(&authority).to_owned();
    (format!("{scheme}://{authority}"), path)
}

fn same_origin(a: &str, b: &str) -> bool {
    origin_parts(a) == origin_parts(b)
}

// Pub/Sub sends both spellings of the message fields (`messageId` and `message_id`), so each
// is its own field rather than a serde alias, which would refuse the pair as a duplicate.
#[derive(Deserialize)]
struct Envelope {
    message: Option<Message>,
    #[serde(default)]
    subscription: Option<String>,
    #[serde(default, rename = "deliveryAttempt")]
    delivery_attempt: Option<u32>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    data: Option<String>,
    #[serde(default, rename = "messageId")]
    message_id: Option<String>,
    #[serde(default, rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(default, rename = "publishTime")]
    publish_time: Option<String>,
    #[serde(default, rename = "publish_time")]
    publish_time_snake: Option<String>,
}

/// Decodes a push request for the endpoint that serves `endpoint` items (`"partition-set"`,
/// `"partition"`, `"packument"`). `header` looks up a request header by lower-case name.
pub fn decode<'h>(
    endpoint: &'static str,
    body: &[u8],
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<Delivery, Box<(Rejection, MessageInfo)>> {
    let mut info = MessageInfo {
        message_id: header("x-goog-pubsub-message-id").map(str::to_owned),
        subscription: header("x-goog-pubsub-subscription-name").map(str::to_owned),
        publish_time: header("x-goog-pubsub-publish-time").map(str::to_owned),
        delivery_attempt: None,
    };
    match decode_item(body, &mut info) {
        Ok(item) if item.work.kind() != endpoint => Err(Box::new((
            Rejection::WrongEndpoint {
                endpoint,
                got: item.work.kind(),
            },
            info,
        ))),
        Ok(item) => Ok(Delivery { item, info }),
        Err(r) => Err(Box::new((r, info))),
    }
}

fn decode_item(body: &[u8], info: &mut MessageInfo) -> Result<WorkItem, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::Empty);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| Rejection::NotJson(e.to_string()))?;
    // A wrapped envelope has a `message` object; anything else is an unwrapped work item (whose
    // own errors, such as a missing `type`, say what is wrong with it).
    if !value.get("message").is_some_and(Value::is_object) {
        return Ok(WorkItem::from_json(body)?);
    }
    let envelope: Envelope = serde_json::from_value(value).map_err(|e| Rejection::NotJson(e.to_string()))?;
    info.subscription = envelope.subscription.or(info.subscription.take());
    info.delivery_attempt = envelope.delivery_attempt;
    let message = envelope.message.ok_or(Rejection::NoData)?;
    info.message_id = message
        .message_id
        .or(message.message_id_snake)
        .or(info.message_id.take());
    info.publish_time = message
        .publish_time
        .or(message.publish_time_snake)
        .or(info.publish_time.take());
    let data = message.data.filter(|d| !d.is_empty()).ok_or(Rejection::NoData)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data.trim()))
        .map_err(|e| Rejection::Base64(e.to_string()))?;
    Ok(WorkItem::from_json(&bytes)?)
}

/// The wrapped envelope Pub/Sub would push for `data` (for tests and `dev` tooling).
pub fn wrap(data: &[u8], message_id: &str, subscription: &str) -> Vec<u8> {
    let envelope = serde_json::json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": {},
            "messageId": message_id,
            "publishTime": "2026-01-01T00:00:00Z",
        },
        "subscription": subscription,
    });
    envelope.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::Work;

    fn no_headers(_: &str) -> Option<&'static str> {
        None
    }

    const ITEM: &str = r#"{"type":"packument","payload":{"packageName":"@types/node","rev":"3-x"}}"#;

    #[test]
    fn wrapped_envelope() {
        let body = wrap(ITEM.as_bytes(), "m-1", "projects/p/subscriptions/s");
        let d = decode("packument", &body, no_headers).unwrap();
        assert_eq!(
            d.item.work,
            Work::Packument {
                name: "@types/node".into(),
                rev: Some("3-x".into())
            }
        );
        assert_eq!(d.info.message_id.as_deref(), Some("m-1"));
        assert_eq!(d.info.subscription.as_deref(), Some("projects/p/subscriptions/s"));
        assert_eq!(d.info.delivery_attempt, None);
    }

    #[test]
    fn snake_case_fields_and_delivery_attempt() {
        let body = format!(
            r#"{{"message":{{"data":"{}","message_id":"42","publish_time":"t"}},"subscription":"s","deliveryAttempt":7}}"#,
            base64::engine::general_purpose::STANDARD.encode(ITEM)
        );
        let d = decode("packument", body.as_bytes(), no_headers).unwrap();
        assert_eq!(d.info.message_id.as_deref(), Some("42"));
        assert_eq!(d.info.publish_time.as_deref(), Some("t"));
        assert_eq!(d.info.delivery_attempt, Some(7));
    }

    #[test]
    fn both_spellings_at_once_as_pubsub_sends_them() {
        let body = format!(
            r#"{{"message":{{"attributes":{{"type":"packument"}},"data":"{}","messageId":"5","message_id":"5","publishTime":"t","publish_time":"t"}},"subscription":"projects/p/subscriptions/s"}}"#,
            base64::engine::general_purpose::STANDARD.encode(ITEM)
        );
        let d = decode("packument", body.as_bytes(), no_headers).unwrap();
        assert_eq!(d.info.message_id.as_deref(), Some("5"));
        assert_eq!(d.info.publish_time.as_deref(), Some("t"));
    }

    #[test]
    fn unwrapped_item_with_headers() {
        let headers = |name: &str| match name {
            "x-goog-pubsub-message-id" => Some("99"),
            "x-goog-pubsub-subscription-name" => Some("sub"),
            _ => None,
        };
        let d = decode("packument", ITEM.as_bytes(), headers).unwrap();
        assert_eq!(d.item.id, "packument-@types/node");
        assert_eq!(d.info.message_id.as_deref(), Some("99"));
        assert_eq!(d.info.subscription.as_deref(), Some("sub"));
    }

    #[test]
    fn every_bad_input_is_a_rejection_naming_the_problem() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty"),
            (b"  \n".to_vec(), "empty"),
            (b"{not json".to_vec(), "not JSON"),
            (br#"{"message":{"messageId":"1"}}"#.to_vec(), "no `message.data`"),
            (br#"{"message":{"data":""}}"#.to_vec(), "no `message.data`"),
            (br#"{"message":{"data":"%%%not base64"}}"#.to_vec(), "base64"),
            (wrap(b"not json", "1", "s"), "not valid JSON"),
            (wrap(br#"{"type":"frobnicate","payload":{}}"#, "1", "s"), "frobnicate"),
            (
                wrap(
                    br#"{"type":"packument","payload":{"packageName":"../etc/passwd"}}"#,
                    "1",
                    "s",
                ),
                "../etc/passwd",
            ),
            (br#"{"payload":{}}"#.to_vec(), "invalid"),
            (br#"[1,2]"#.to_vec(), "invalid"),
        ];
        for (body, want) in cases {
            let (rejection, _) = *decode("packument", &body, no_headers).unwrap_err();
            let text = rejection.to_string();
            assert!(
                text.contains(want),
                "{:?}: `{text}` should mention `{want}`",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn type_must_match_the_endpoint() {
        let body = wrap(ITEM.as_bytes(), "7", "s");
        let (rejection, info) = *decode("partition", &body, no_headers).unwrap_err();
        assert_eq!(
            rejection,
            Rejection::WrongEndpoint {
                endpoint: "partition",
                got: "packument"
            }
        );
        // The message id is known even for a rejection, so the log can name it.
        assert_eq!(info.message_id.as_deref(), Some("7"));
    }

    #[test]
    fn an_item_for_another_origin_is_refused_and_one_for_ours_accepted() {
        let replicate = Origin::parse("http://127.0.0.1:5984").unwrap();
        let registry = Origin::parse("https://Registry.Example/npm").unwrap();
        let item = |work: Work, origin: Option<&str>| {
            let mut item = WorkItem::new(work);
            item.origin = origin.map(str::to_owned);
            item
        };
        let packument = || Work::Packument {
            name: "lodash".into(),
            rev: None,
        };
        let partition = || Work::Partition { start: None, end: None };
        for (work, fine) in [
            (packument(), None),
            (packument(), Some("https://registry.example/npm")),
            (packument(), Some("https://registry.example:443/npm/")),
            (partition(), Some("http://127.0.0.1:5984/")),
            (partition(), Some("http://127.0.0.1:5984")),
        ] {
            assert_eq!(
                check_origin(&item(work, fine), &replicate, &registry),
                Ok(()),
                "{fine:?}"
            );
        }
        for (work, other) in [
            (packument(), "http://127.0.0.1:5984"),
            (packument(), "https://registry.example/NPM"),
            (packument(), "http://registry.example/npm"),
            (partition(), "https://registry.example/npm"),
            (partition(), "http://127.0.0.1:1"),
            (partition(), "ftp://127.0.0.1:5984"),
            (partition(), ""),
        ] {
            let refused = check_origin(&item(work, Some(other)), &replicate, &registry);
            assert!(
                matches!(&refused, Err(Rejection::OriginNotAllowed { .. })),
                "{other}: {refused:?}"
            );
        }
        // The field survives the wire both ways.
        let json = item(packument(), Some("http://127.0.0.1:5984")).to_json();
        assert!(json.contains(r#""origin":"http://127.0.0.1:5984""#), "{json}");
        assert!(!item(packument(), None).to_json().contains("origin"));
    }
}
