//! Cache keys and their mapping to file and object paths.
//!
//! A key names one stored entry, the same on every platform:
//!
//! - `v1:packument:{origin}:{hex(name)}`
//! - `v1:partition:{origin}:{hex(startKey)}:{hex(endKey)}` (empty hex for an open end)
//! - `v1:checkpoint:{origin}`: how far the change feed of a replication origin is applied
//!
//! `hex` is lowercase hex of the UTF-8 bytes. Hex keeps any name safe as a file or object name
//! and keeps byte order: for byte strings `a < b` exactly when `hex(a) < hex(b)`, so a prefix
//! listing returns documents sorted like `_all_docs`. `{origin}` is a short identifier of the
//! configured origin ([`origin_id`]), so replicas of two registries can share a store.
//!
//! Object names ([`Key::path`]) put the first three `:` as `/` and join a partition's two ends
//! with `-`: `v1/packument/{origin}/{hex}`, `v1/partition/{origin}/{hex(start)}-{hex(end)}`. A
//! listing of packuments in name order is therefore byte order, and no name is a folder of
//! another (which file-backed stores refuse). No I/O here.

use std::fmt;

/// A parsed cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Packument {
        origin: String,
        name: String,
    },
    Partition {
        origin: String,
        start: Option<String>,
        end: Option<String>,
    },
    /// The change-feed checkpoint of a replication origin (`all-docs follow`).
    Checkpoint {
        origin: String,
    },
}

/// The kinds of entry, as they appear in keys (`v1:{kind}:...`) and paths (`v1/{kind}/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Packument,
    Partition,
    Checkpoint,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Packument => "packument",
            Kind::Partition => "partition",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key `{0}` does not start with `v1:packument:`, `v1:partition:` or `v1:checkpoint:`")]
    Kind(String),
    #[error("key `{0}` has the wrong number of `:`-separated parts")]
    Parts(String),
    #[error("key `{key}`: `{part}` is not lowercase hex of UTF-8 text")]
    Hex { key: String, part: String },
    #[error("key `{0}` has an empty origin or an empty package name")]
    Empty(String),
    #[error("key `{key}`: origin `{origin}` has characters other than `a-z`, `0-9`, `.` and `-`")]
    Origin { key: String, origin: String },
}

impl Key {
    pub fn packument(origin: &str, name: &str) -> Key {
        Key::Packument {
            origin: origin.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn partition(origin: &str, start: Option<&str>, end: Option<&str>) -> Key {
        Key::Partition {
            origin: origin.to_owned(),
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
        }
    }

    pub fn checkpoint(origin: &str) -> Key {
        Key::Checkpoint {
            origin: origin.to_owned(),
        }
    }

    /// The listing prefix of every packument of `origin` (with the trailing `:`).
    pub fn packument_prefix(origin: &str) -> String {
        format!("v1:packument:{origin}:")
    }

    /// The listing prefix of every partition of `origin` (with the trailing `:`).
    pub fn partition_prefix(origin: &str) -> String {
        format!("v1:partition:{origin}:")
    }

    /// The relative path (or object name) of this key (see the module docs).
    pub fn path(&self) -> String {
        path_of_text(&self.to_string())
    }

    /// Parses a path made by [`Key::path`].
    pub fn from_path(path: &str) -> Result<Key, KeyError> {
        text_of_path(path).parse()
    }
}

/// The path of a key's text, or of a prefix of one: the first three `:` become `/`, later ones
/// `-`.
pub fn path_of_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split(':').enumerate() {
        match i {
            0 => {}
            1..=3 => out.push('/'),
            _ => out.push('-'),
        }
        out.push_str(part);
    }
    out
}

/// The key text of a path made by [`path_of_text`] (origins never hold `:`, `/` or, in the last
/// part, anything but hex and the `-` between a partition's ends).
pub fn text_of_path(path: &str) -> String {
    let parts: Vec<&str> = path.splitn(4, '/').collect();
    match parts.as_slice() {
        [a, b, c, rest] => format!("{a}:{b}:{c}:{}", rest.replace('-', ":")),
        _ => path.replace('/', ":"),
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Packument { origin, name } => {
                write!(f, "v1:packument:{origin}:{}", hex(name.as_bytes()))
            }
            Key::Partition { origin, start, end } => write!(
                f,
                "v1:partition:{origin}:{}:{}",
                hex(start.as_deref().unwrap_or("").as_bytes()),
                hex(end.as_deref().unwrap_or("").as_bytes())
            ),
            Key::Checkpoint { origin } => write!(f, "v1:checkpoint:{origin}"),
        }
    }
}

impl std::str::FromStr for Key {
    type Err = KeyError;

    fn from_str(key: &str) -> Result<Key, KeyError> {
        let parts: Vec<&str> = key.split(':').collect();
        let text = |part: &str| {
            unhex(part).ok_or_else(|| KeyError::Hex {
                key: key.to_owned(),
                part: part.to_owned(),
            })
        };
        // An origin is an `origin_id`: anything else could not survive the trip through a path.
        if let ["v1", "packument" | "partition" | "checkpoint", origin, ..] = parts.as_slice() {
            if !is_origin_id(origin) {
                return Err(KeyError::Origin {
                    key: key.to_owned(),
                    origin: (*origin).to_owned(),
                });
            }
        }
        match parts.as_slice() {
            ["v1", "packument", origin, name] => {
                let name = text(name)?;
                if origin.is_empty() || name.is_empty() {
                    return Err(KeyError::Empty(key.to_owned()));
                }
                Ok(Key::Packument {
                    origin: (*origin).to_owned(),
                    name,
                })
            }
            ["v1", "partition", origin, start, end] => {
                if origin.is_empty() {
                    return Err(KeyError::Empty(key.to_owned()));
                }
                let open = |s: String| (!s.is_empty()).then_some(s);
                Ok(Key::Partition {
                    origin: (*origin).to_owned(),
                    start: open(text(start)?),
                    end: open(text(end)?),
                })
            }
            ["v1", "checkpoint", origin] if !origin.is_empty() => Ok(Key::Checkpoint {
                origin: (*origin).to_owned(),
            }),
            ["v1", "checkpoint", _] => Err(KeyError::Empty(key.to_owned())),
            ["v1", "packument" | "partition" | "checkpoint", ..] => Err(KeyError::Parts(key.to_owned())),
            _ => Err(KeyError::Kind(key.to_owned())),
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The UTF-8 text whose lowercase hex is `s`; `None` if `s` is not that.
pub fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes: Option<Vec<u8>> = s
        .as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Whether `s` could be an [`origin_id`] (empty is left to the caller's own error): never a
/// leading `.`, so never a `.` or `..` folder.
fn is_origin_id(s: &str) -> bool {
    !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// A short, stable, key-safe identifier of an origin URL: its host and port, lowercased, with
/// anything but `[a-z0-9.-]` turned into `-` (`http://127.0.0.1:5984/` gives `127.0.0.1-5984`).
/// A path, if any, is kept too, so two registries behind one host stay apart.
pub fn origin_id(origin: &str) -> String {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    let id: String = rest
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // A leading `.` would make `.` or `..` a folder of the file store.
    let id = id.trim_start_matches('.');
    if id.is_empty() {
        "origin".to_owned()
    } else {
        id.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `keys` fuzz target: an origin with `/` parsed, but its path split elsewhere.
    #[test]
    fn an_origin_outside_the_origin_id_alphabet_is_refused() {
        for key in [
            "v1:packument:127.0.0/6-5984:6c6f64617368",
            "v1:checkpoint:A",
            "v1:partition:a_b::",
            "v1:packument:..:61",
            "v1:checkpoint:.",
        ] {
            assert!(
                matches!(key.parse::<Key>(), Err(KeyError::Origin { .. })),
                "{key} should be refused"
            );
        }
        assert_eq!(origin_id("http://../"), "origin");
        assert_eq!(origin_id("http://.x:1"), "x-1");
        let ok: Key = "v1:packument:127.0.0.1-5984:6c6f64617368".parse().unwrap();
        assert_eq!(Key::from_path(&ok.path()), Ok(ok));
    }

    #[test]
    fn keys_match_the_brief() {
        assert_eq!(
            Key::packument("sim", "@types/node").to_string(),
            "v1:packument:sim:4074797065732f6e6f6465"
        );
        assert_eq!(
            Key::partition("sim", Some("a"), Some("n")).to_string(),
            "v1:partition:sim:61:6e"
        );
        assert_eq!(Key::partition("sim", None, None).to_string(), "v1:partition:sim::");
    }

    #[test]
    fn keys_round_trip_through_text_and_paths() {
        for key in [
            Key::packument("o", "café"),
            Key::packument("o", "@scope/name"),
            Key::partition("o", None, Some("m")),
            Key::partition("o", Some("@"), None),
            Key::checkpoint("127.0.0.1-5984"),
        ] {
            assert_eq!(key.to_string().parse::<Key>(), Ok(key.clone()));
            assert_eq!(Key::from_path(&key.path()), Ok(key.clone()));
            assert!(!key.path().contains(':'));
        }
        // Partition ends are joined with `-`, so no object name is a folder of another.
        assert_eq!(
            Key::partition("127.0.0.1-5984", None, Some("a")).path(),
            "v1/partition/127.0.0.1-5984/-61"
        );
        assert_eq!(Key::partition("o", Some("a"), Some("b")).path(), "v1/partition/o/61-62");
        assert_eq!(Key::packument("o", "a").path(), "v1/packument/o/61");
        assert_eq!(path_of_text("v1:partition:o:61"), "v1/partition/o/61");
        assert_eq!(text_of_path("v1/partition/o-x/-61"), "v1:partition:o-x::61");
        assert_eq!(Key::checkpoint("o-x").path(), "v1/checkpoint/o-x");
    }

    #[test]
    fn hex_keeps_byte_order() {
        let mut names = vec![
            "lodash",
            "@types/node",
            "Zebra",
            "-",
            "9x",
            "café",
            "cafe",
            "a",
            "ab",
            "a-b",
        ];
        let mut by_hex = names.clone();
        names.sort();
        by_hex.sort_by_key(|n| hex(n.as_bytes()));
        assert_eq!(names, by_hex);
    }

    #[test]
    fn bad_keys_are_named_errors() {
        assert!(matches!("v2:packument:o:61".parse::<Key>(), Err(KeyError::Kind(_))));
        assert!(matches!("v1:packument:o".parse::<Key>(), Err(KeyError::Parts(_))));
        assert!(matches!("v1:checkpoint:o:x".parse::<Key>(), Err(KeyError::Parts(_))));
        assert!(matches!("v1:checkpoint:".parse::<Key>(), Err(KeyError::Empty(_))));
        assert!(matches!("v1:packument:o:6".parse::<Key>(), Err(KeyError::Hex { .. })));
        assert!(matches!("v1:packument:o:6G".parse::<Key>(), Err(KeyError::Hex { .. })));
        assert!(
            matches!("v1:packument:o:ff".parse::<Key>(), Err(KeyError::Hex { .. })),
            "not UTF-8"
        );
        assert!(matches!("v1:packument:o:".parse::<Key>(), Err(KeyError::Empty(_))));
        assert!(matches!("v1:packument::61".parse::<Key>(), Err(KeyError::Empty(_))));
        assert!(
            matches!("v1:packument:o:4A".parse::<Key>(), Err(KeyError::Hex { .. })),
            "uppercase hex"
        );
    }

    #[test]
    fn origin_ids_are_key_safe() {
        assert_eq!(origin_id("http://127.0.0.1:5984/"), "127.0.0.1-5984");
        assert_eq!(origin_id("https://Registry.Example/npm/"), "registry.example-npm");
        assert!(!origin_id("http://[::1]:80").contains(':'));
    }
}
