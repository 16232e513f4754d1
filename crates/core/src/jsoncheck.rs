//! A push-based JSON validator for bodies that arrive in chunks.
//!
//! A 100 MB packument must be checked as it streams into the store, never held whole, so this
//! validates JSON syntax (RFC 8259) byte by byte with a small stack, and on the way picks out
//! what the store's metadata needs from the top level: `_rev`, `name`, and whether
//! `time.unpublished` exists (the upstream's stub for an unpublished package). No I/O, no
//! allocation per byte.
//!
//! What "valid" means, where RFC 8259 leaves room (`fuzz/checks.rs` holds the validator to
//! this against serde_json):
//! - The text must be UTF-8 (§8.1): an invalid or overlong sequence, or an encoded surrogate, is
//!   refused, since such a body is corrupt rather than a document the upstream meant.
//! - A `\u` escape of an unpaired UTF-16 surrogate is accepted: §8.2's grammar allows it and
//!   JavaScript's `JSON.parse` reads it, so refusing it would lose a package the upstream
//!   serves. serde_json's `Value` refuses it; the summary reads it as U+FFFD.
//! - Numbers are checked for syntax only; how large they may be is the reader's business (§6).
//! - Nesting deeper than [`MAX_DEPTH`] is refused, to bound the stack.
//! - With duplicate keys, the last occurrence of a top-level `_rev`, `name` or `time` is the one
//!   the summary reports, as serde_json's `Value` and JavaScript's `JSON.parse` keep the last.

/// What the validator learned about a complete document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The top-level `_rev`, if it is a string of at most [`CAPTURE_MAX`] bytes (decoded).
    pub rev: Option<String>,
    /// The top-level `name`, if it is a string of at most [`CAPTURE_MAX`] bytes (decoded).
    pub name: Option<String>,
    /// The top-level `time` is an object with an `unpublished` key.
    pub unpublished: bool,
    /// The top-level value is an object.
    pub is_object: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {msg}")]
pub struct JsonError {
    pub offset: u64,
    pub msg: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a value.
    Value,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closer.
    CommaOrEnd,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    Str {
        key: bool,
        part: StrPart,
    },
    Number(NumState),
    Literal {
        rest: &'static [u8],
    },
    /// The top-level value is complete; only whitespace may follow.
    Done,
}

/// Where inside a string the last byte left us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrPart {
    /// Between characters.
    Plain,
    /// After `\`.
    Escape,
    /// Inside `\uXXXX`, this many hex digits to go.
    Hex(u8),
    /// Inside a multi-byte UTF-8 character: this many continuation bytes to go, the next one
    /// in `lo..=hi`.
    Utf8 { left: u8, lo: u8, hi: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumState {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

/// Bytes of a top-level key or value kept for [`Summary`]; longer ones are not captured.
pub const CAPTURE_MAX: usize = 256;
/// Nesting deeper than this is refused (a stack-exhaustion guard for hostile input).
pub const MAX_DEPTH: usize = 4_096;

#[derive(Debug, Clone)]
pub struct JsonCheck {
    state: State,
    stack: Vec<u8>,
    offset: u64,
    /// The last key seen at depth 1 and, inside top-level `time`, at depth 2.
    key1: Vec<u8>,
    key2: Vec<u8>,
    /// The current string at depth 1 or 2, decoded, unless it outgrew [`CAPTURE_MAX`].
    capture: Vec<u8>,
    capture_overflow: bool,
    /// The `\uXXXX` escape being read, and a high surrogate waiting for its low half.
    unit: u16,
    high: Option<u16>,
    summary: Summary,
    error: Option<JsonError>,
}

impl Default for JsonCheck {
    fn default() -> Self {
        JsonCheck {
            state: State::Value,
            stack: Vec::new(),
            offset: 0,
            key1: Vec::new(),
            key2: Vec::new(),
            capture: Vec::new(),
            capture_overflow: false,
            unit: 0,
            high: None,
            summary: Summary::default(),
            error: None,
        }
    }
}

impl JsonCheck {
    pub fn new() -> JsonCheck {
        JsonCheck::default()
    }

    /// Feeds the next chunk; the first error sticks.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), JsonError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut i = 0;
        while i < chunk.len() {
            // Fast path: plain string content (most of a packument) up to the next byte that
            // matters, captured in bulk when the summary needs it.
            if let State::Str {
                part: StrPart::Plain, ..
            } = self.state
            {
                let run = plain_run(&chunk[i..]);
                if run > 0 {
                    self.end_surrogate();
                    if self.depth() <= 2 && !self.capture_overflow {
                        let room = CAPTURE_MAX.saturating_sub(self.capture.len());
                        if run <= room {
                            self.capture.extend_from_slice(&chunk[i..i + run]);
                        } else {
                            self.capture_overflow = true;
                        }
                    }
                    i += run;
                    self.offset += run as u64;
                    continue;
                }
            }
            if let Err(msg) = self.byte(chunk[i]) {
                let e = JsonError {
                    offset: self.offset,
                    msg,
                };
                self.error = Some(e.clone());
                return Err(e);
            }
            i += 1;
            self.offset += 1;
        }
        Ok(())
    }

    /// Ends the input: the document must be complete.
    pub fn finish(mut self) -> Result<Summary, JsonError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let State::Number(n) = self.state {
            if matches!(n, NumState::Zero | NumState::Int | NumState::Frac | NumState::ExpDigits)
                && self.stack.is_empty()
            {
                self.state = State::Done;
            }
        }
        if self.state == State::Done {
            Ok(self.summary)
        } else {
            Err(JsonError {
                offset: self.offset,
                msg: "unexpected end of input",
            })
        }
    }

    fn depth(&self) -> usize {
        self.stack.len()
    }

    fn push(&mut self, b: u8) -> Result<(), &'static str> {
        if self.stack.len() >= MAX_DEPTH {
            return Err("nested too deeply");
        }
        if self.stack.is_empty() && b == b'{' {
            self.summary.is_object = true;
        }
        self.stack.push(b);
        Ok(())
    }

    /// A value just ended: where next?
    fn after_value(&mut self) {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::CommaOrEnd
        };
    }

    fn start_string(&mut self, key: bool) {
        self.capture.clear();
        self.capture_overflow = false;
        self.state = State::Str {
            key,
            part: StrPart::Plain,
        };
    }

    fn start_value(&mut self, b: u8) -> Result<(), &'static str> {
        match b {
            b'{' => {
                self.push(b'{')?;
                self.state = State::KeyOrEnd;
            }
            b'[' => {
                self.push(b'[')?;
                self.state = State::ValueOrEnd;
            }
            b'"' => self.start_string(false),
            b'-' => self.state = State::Number(NumState::Minus),
            b'0' => self.state = State::Number(NumState::Zero),
            b'1'..=b'9' => self.state = State::Number(NumState::Int),
            b't' => self.state = State::Literal { rest: b"rue" },
            b'f' => self.state = State::Literal { rest: b"alse" },
            b'n' => self.state = State::Literal { rest: b"ull" },
            _ => return Err("expected a value"),
        }
        Ok(())
    }

    fn close(&mut self, b: u8) -> Result<(), &'static str> {
        let want = if b == b'}' { b'{' } else { b'[' };
        if self.stack.pop() != Some(want) {
            return Err("mismatched closing bracket");
        }
        self.after_value();
        Ok(())
    }

    fn end_string(&mut self, key: bool) {
        self.end_surrogate();
        let depth = self.depth();
        let text = if self.capture_overflow {
            None
        } else {
            Some(&self.capture)
        };
        if key {
            let store = if depth == 1 {
                Some(&mut self.key1)
            } else if depth == 2 {
                Some(&mut self.key2)
            } else {
                None
            };
            if let Some(slot) = store {
                slot.clear();
                if let Some(t) = text {
                    slot.extend_from_slice(t);
                }
            }
            if depth == 1 {
                // A repeated key replaces what its earlier occurrence said: the last one counts.
                match self.key1.as_slice() {
                    b"_rev" => self.summary.rev = None,
                    b"name" => self.summary.name = None,
                    b"time" => self.summary.unpublished = false,
                    _ => {}
                }
            }
            if depth == 2 && self.key1 == b"time" && self.key2 == b"unpublished" {
                self.summary.unpublished = true;
            }
            self.state = State::Colon;
            return;
        }
        if depth == 1 {
            if let Some(t) = text {
                // Valid UTF-8 by now: the bytes were checked and escapes decoded.
                let value = String::from_utf8_lossy(t).into_owned();
                match self.key1.as_slice() {
                    b"_rev" => self.summary.rev = Some(value),
                    b"name" => self.summary.name = Some(value),
                    _ => {}
                }
            }
        }
        self.after_value();
    }

    fn byte(&mut self, b: u8) -> Result<(), &'static str> {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::Str { key, part } => self.string_byte(key, part, b)?,
            State::Number(n) => {
                use NumState::*;
                let next = match (n, b) {
                    (Minus, b'0') => Some(Zero),
                    (Minus, b'1'..=b'9') => Some(Int),
                    (Int, b'0'..=b'9') => Some(Int),
                    (Zero | Int, b'.') => Some(Dot),
                    (Dot | Frac, b'0'..=b'9') => Some(Frac),
                    (Zero | Int | Frac, b'e' | b'E') => Some(Exp),
                    (Exp, b'+' | b'-') => Some(ExpSign),
                    (Exp | ExpSign | ExpDigits, b'0'..=b'9') => Some(ExpDigits),
                    _ => None,
                };
                match next {
                    Some(s) => self.state = State::Number(s),
                    None if matches!(n, Zero | Int | Frac | ExpDigits) => {
                        self.after_value();
                        return self.byte(b);
                    }
                    None => return Err("bad number"),
                }
            }
            State::Literal { rest } => {
                if rest.first() != Some(&b) {
                    return Err("bad literal");
                }
                if rest.len() == 1 {
                    self.after_value();
                } else {
                    self.state = State::Literal { rest: &rest[1..] };
                }
            }
            _ if ws => {}
            State::Value => self.start_value(b)?,
            State::ValueOrEnd if b == b']' => self.close(b)?,
            State::ValueOrEnd => self.start_value(b)?,
            State::KeyOrEnd if b == b'}' => self.close(b)?,
            State::KeyOrEnd | State::Key => {
                if b != b'"' {
                    return Err("expected a string key");
                }
                self.start_string(true);
            }
            State::Colon => {
                if b != b':' {
                    return Err("expected `:`");
                }
                self.state = State::Value;
            }
            State::CommaOrEnd => match (b, self.stack.last()) {
                (b',', Some(b'{')) => self.state = State::Key,
                (b',', Some(b'[')) => self.state = State::Value,
                (b'}' | b']', _) => self.close(b)?,
                _ => return Err("expected `,` or a closing bracket"),
            },
            State::Done => return Err("text after the JSON value"),
        }
        Ok(())
    }

    /// One byte inside a string, one at a time: what the fast path in [`JsonCheck::feed`] left,
    /// i.e. quotes, escapes, control characters and UTF-8 split by a chunk's end or invalid.
    fn string_byte(&mut self, key: bool, part: StrPart, b: u8) -> Result<(), &'static str> {
        let mut next = StrPart::Plain;
        match part {
            StrPart::Plain => match b {
                b'"' => {
                    self.end_string(key);
                    return Ok(());
                }
                b'\\' => next = StrPart::Escape,
                0..=0x1f => return Err("control character in string"),
                0x20..=0x7f => {
                    self.end_surrogate();
                    self.capture_byte(b);
                }
                _ => {
                    let Some((left, lo, hi)) = utf8_lead(b) else {
                        return Err("invalid UTF-8");
                    };
                    self.end_surrogate();
                    self.capture_byte(b);
                    next = StrPart::Utf8 { left, lo, hi };
                }
            },
            StrPart::Utf8 { left, lo, hi } => {
                if !(lo..=hi).contains(&b) {
                    return Err("invalid UTF-8");
                }
                self.capture_byte(b);
                if left > 1 {
                    next = StrPart::Utf8 {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xbf,
                    };
                }
            }
            StrPart::Escape => {
                let c = match b {
                    b'u' => {
                        self.unit = 0;
                        next = StrPart::Hex(4);
                        None
                    }
                    b'"' | b'\\' | b'/' => Some(b),
                    b'b' => Some(8),
                    b'f' => Some(12),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    _ => return Err("bad escape"),
                };
                if let Some(c) = c {
                    self.end_surrogate();
                    self.capture_byte(c);
                }
            }
            StrPart::Hex(left) => {
                let Some(digit) = (b as char).to_digit(16) else {
                    return Err("bad \\u escape");
                };
                // Four hex digits: `digit` < 16 and `unit` < 0x1000 before the shift.
                self.unit = (self.unit << 4) | digit as u16;
                if left > 1 {
                    next = StrPart::Hex(left - 1);
                } else {
                    self.unicode_escape(self.unit);
                }
            }
        }
        self.state = State::Str { key, part: next };
        Ok(())
    }

    /// A complete `\uXXXX`: a UTF-16 code unit, paired with the one before or after it when
    /// they are the two halves of a surrogate pair. An unpaired half is U+FFFD in the capture,
    /// as `String::from_utf16_lossy` would have it.
    fn unicode_escape(&mut self, unit: u16) {
        let c = match (self.high.take(), unit) {
            (Some(high), 0xdc00..=0xdfff) => {
                char::from_u32(0x1_0000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(unit) - 0xdc00))
            }
            (high, _) => {
                if high.is_some() {
                    self.capture_char(char::REPLACEMENT_CHARACTER);
                }
                if (0xd800..0xdc00).contains(&unit) {
                    self.high = Some(unit);
                    return;
                }
                char::from_u32(u32::from(unit))
            }
        };
        self.capture_char(c.unwrap_or(char::REPLACEMENT_CHARACTER));
    }

    /// Anything but a `\u` escape follows a high surrogate: it stays unpaired.
    fn end_surrogate(&mut self) {
        if self.high.take().is_some() {
            self.capture_char(char::REPLACEMENT_CHARACTER);
        }
    }

    fn capture_char(&mut self, c: char) {
        for &b in c.encode_utf8(&mut [0; 4]).as_bytes() {
            self.capture_byte(b);
        }
    }

    fn capture_byte(&mut self, b: u8) {
        if self.depth() <= 2 && !self.capture_overflow {
            if self.capture.len() < CAPTURE_MAX {
                self.capture.push(b);
            } else {
                self.capture_overflow = true;
            }
        }
    }
}

/// For a UTF-8 lead byte: how many continuation bytes follow, and the range the first of them
/// must be in (Unicode's table of well-formed sequences, which rules out overlong forms,
/// encoded surrogates and anything past U+10FFFF); `None` for a byte that cannot start one.
fn utf8_lead(b: u8) -> Option<(u8, u8, u8)> {
    Some(match b {
        0xc2..=0xdf => (1, 0x80, 0xbf),
        0xe0 => (2, 0xa0, 0xbf),
        0xe1..=0xec | 0xee..=0xef => (2, 0x80, 0xbf),
        0xed => (2, 0x80, 0x9f),
        0xf0 => (3, 0x90, 0xbf),
        0xf1..=0xf3 => (3, 0x80, 0xbf),
        0xf4 => (3, 0x80, 0x8f),
        _ => return None,
    })
}

/// How many bytes at the start of `bytes` are plain string content: no quote, backslash or
/// control character, and only whole, well-formed UTF-8 characters. Whatever ends the run,
/// including a character cut by the chunk's end, is left to [`JsonCheck::string_byte`].
fn plain_run(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' | b'\\' | 0..=0x1f => break,
            0x20..=0x7f => i += 1,
            _ => {
                let Some((left, lo, hi)) = utf8_lead(b) else { break };
                let Some(tail) = bytes.get(i + 1..i + 1 + usize::from(left)) else {
                    break;
                };
                let first_ok = (lo..=hi).contains(&tail[0]);
                if !first_ok || !tail[1..].iter().all(|&c| (0x80..=0xbf).contains(&c)) {
                    break;
                }
                i += 1 + usize::from(left);
            }
        }
    }
    i
}

/// Checks a document held in memory, fed `chunk` bytes at a time (what a stream of that chunk
/// size would see; the verdict is the same for every chunking).
pub fn check_in_chunks(doc: &[u8], chunk: usize) -> Result<Summary, JsonError> {
    let mut c = JsonCheck::new();
    for part in doc.chunks(chunk.max(1)) {
        c.feed(part)?;
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_serde_json() {
        let cases: &[&str] = &[
            r#"{"_rev":"1-a","name":"x","versions":{"1.0.0":{"a":[1,2.5,-3e10,true,false,null]}}}"#,
            r#"[]"#,
            r#"{}"#,
            r#"0"#,
            r#"-0.5E+3"#,
            r#""str\"ing\u00e9""#,
            r#" { "a" : [ ] , "b" : { } } "#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"[1.]"#,
            r#"[.5]"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"line\nbreak\"}",
            r#"{"a":1}}"#,
            r#"{"a":1} x"#,
            r#"{"a":[1}"#,
            r#"{"#,
            r#""#,
            r#"nul"#,
            r#"[1e]"#,
            r#"[-]"#,
        ];
        for case in cases {
            let ours = check_in_chunks(case.as_bytes(), 1).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(case).is_ok();
            assert_eq!(ours, theirs, "{case:?}");
            assert_eq!(
                check_in_chunks(case.as_bytes(), 7).is_ok(),
                theirs,
                "{case:?} in 7-byte chunks"
            );
        }
    }

    #[test]
    fn picks_out_rev_name_and_unpublished() {
        let doc = br#"{"_id":"x","_rev":"12-abc","name":"@s/x","versions":{"1.0.0":{"_rev":"nope"}},"time":{"created":"t","unpublished":{"time":"t"}}}"#;
        let s = check_in_chunks(doc, 3).unwrap();
        assert_eq!(s.rev.as_deref(), Some("12-abc"));
        assert_eq!(s.name.as_deref(), Some("@s/x"));
        assert!(s.unpublished && s.is_object);
        let s = check_in_chunks(br#"{"time":{"modified":"t"},"unpublished":true}"#, 5).unwrap();
        assert!(!s.unpublished);
    }

    #[test]
    fn invalid_utf8_in_a_string_is_refused() {
        // Found by the json_check fuzz target (fuzz/regressions/json_check/invalid-utf8-in-string):
        // any byte above 0x7f passed inside a string, so a corrupt body could be stored as JSON.
        let found = b"{\"\":\"r\xfe}\"}";
        let refused = JsonError {
            offset: 6,
            msg: "invalid UTF-8",
        };
        assert_eq!(check_in_chunks(found, 1), Err(refused.clone()));
        assert_eq!(check_in_chunks(found, 64), Err(refused));
        let bad: &[&[u8]] = &[
            b"\"\xc3\"",             // cut short
            b"\"\x80\"",             // a continuation byte alone
            b"\"\xc0\xaf\"",         // overlong '/'
            b"\"\xe0\x80\xaf\"",     // overlong '/'
            b"\"\xed\xa0\x80\"",     // an encoded surrogate
            b"\"\xf4\x90\x80\x80\"", // past U+10FFFF
            b"\"\xf8\x88\x80\x80\x80\"",
        ];
        for doc in bad {
            assert!(serde_json::from_slice::<serde_json::Value>(doc).is_err());
            for chunk in [1, 2, 3, 64] {
                assert!(check_in_chunks(doc, chunk).is_err(), "{doc:?} in {chunk}-byte chunks");
            }
        }
        let good = "{\"name\":\"caf\u{e9} \u{65e5}\u{672c} \u{1f600} \u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}\"}";
        for chunk in [1, 2, 3, 5, 64] {
            let s = check_in_chunks(good.as_bytes(), chunk).unwrap();
            assert_eq!(
                s.name.as_deref(),
                Some(&good[9..good.len() - 2]),
                "in {chunk}-byte chunks"
            );
        }
    }

    #[test]
    fn a_repeated_top_level_key_counts_by_its_last_occurrence() {
        // Found by the json_check fuzz target (fuzz/regressions/json_check/repeated-name): a
        // second `name` too long to capture left the first one in the summary, where serde_json
        // (and JSON.parse) read the second.
        let found = format!(r#"{{"name":"nnn","name":"{}"}}"#, "n".repeat(CAPTURE_MAX + 1));
        assert_eq!(check_in_chunks(found.as_bytes(), 7).unwrap().name, None);
        let doc = br#"{"_rev":"1-a","name":"x","_rev":2,"time":{"unpublished":{}},"name":"y","time":{}}"#;
        let s = check_in_chunks(doc, 3).unwrap();
        assert_eq!((s.rev, s.name.as_deref(), s.unpublished), (None, Some("y"), false));
        let s = check_in_chunks(br#"{"time":[],"time":{"unpublished":1,"unpublished":2}}"#, 3).unwrap();
        assert!(s.unpublished);
    }

    #[test]
    fn escaped_characters_are_decoded_in_what_the_summary_reads() {
        // Found by the json_check fuzz target (fuzz/regressions/json_check/escaped-rev): a `\u`
        // escape made a value uncapturable, so `{"_rev":"\uFFFF"}` had no `_rev`, and a key
        // written with one (`"_r\u0065v"`) was not recognised.
        let found = br#"{"_rev":"\uFFFF"}"#;
        assert_eq!(check_in_chunks(found, 1).unwrap().rev.as_deref(), Some("\u{ffff}"));
        let doc = br#"{"_r\u0065v":"1-\u00e9\ud83d\ude00","n\u0061me":"\"\\\/\b\f\n\r\t\u0000","\u0074ime":{"unpublished\u0000":1,"\u0075npublished":2}}"#;
        for chunk in [1, 2, 5, 64] {
            let s = check_in_chunks(doc, chunk).unwrap();
            assert_eq!(s.rev.as_deref(), Some("1-\u{e9}\u{1f600}"));
            assert_eq!(s.name.as_deref(), Some("\"\\/\u{8}\u{c}\n\r\t\0"));
            assert!(s.unpublished);
        }
    }

    #[test]
    fn lone_surrogate_escapes_are_accepted_and_read_as_replacement_characters() {
        // RFC 8259 §8.2 allows them and JSON.parse reads them; serde_json's Value refuses them,
        // a deliberate difference (see the module doc and fuzz/checks.rs).
        let cases = [
            (r#""\ud800""#, "\u{fffd}"),
            (r#""\udc00x""#, "\u{fffd}x"),
            (r#""\ud800\ud800\udc00""#, "\u{fffd}\u{10000}"),
            (r#""\ud800\n""#, "\u{fffd}\n"),
            (r#""\ud800\u0041""#, "\u{fffd}A"),
            (r#""\ud800é""#, "\u{fffd}\u{e9}"),
        ];
        for (text, read) in cases {
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err(), "{text}");
            let doc = format!(r#"{{"name":{text}}}"#);
            for chunk in [1, 3, 64] {
                let s = check_in_chunks(doc.as_bytes(), chunk).unwrap();
                assert_eq!(s.name.as_deref(), Some(read), "{text} in {chunk}-byte chunks");
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let doc = "[".repeat(100_000);
        assert!(check_in_chunks(doc.as_bytes(), 1_000).is_err());
    }
}
