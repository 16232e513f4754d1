//! Pivots: the sorted cut points that split the key space into partitions.
//!
//! A pivots file is a JSON array or the same written as JavaScript (`module.exports = [...]`,
//! `export default [...]`, single quotes, comments, a trailing comma), as the original tool's
//! `pivots.js` was. Only the first pivot may be `null` (an open start). Pivots must be strictly
//! increasing in byte order; anything else is an error naming the file, line and column.
//!
//! [`ranges`] turns pivots into half-open ranges `[p0, p1), [p1, p2), ..., [pn, null)`, and
//! [`plan`] makes equal-count pivots from a sorted name list. No I/O here.

/// A parsed pivot list: `None` only at the front, for an open start. Errors count pivots from 1,
/// as a person reading the file does (the `index` fields count from 0).
pub type Pivots = Vec<Option<String>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PivotsError {
    #[error("{line}:{col}: {msg}")]
    Syntax { line: usize, col: usize, msg: String },
    #[error("the pivot list is empty")]
    Empty,
    #[error("pivot {} is null; only the first pivot may be null (an open start)", index + 1)]
    NullNotFirst { index: usize },
    #[error("pivots are not sorted: {prev:?} (pivot {index}) is not before {next:?} (pivot {}) in byte order", index + 1)]
    Unsorted { index: usize, prev: String, next: String },
    #[error("pivot {} repeats {value:?}", index + 1)]
    Duplicate { index: usize, value: String },
}

/// Parses and checks a pivots file's text.
pub fn parse(text: &str) -> Result<Pivots, PivotsError> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    p.skip();
    for prefix in ["module.exports", "exports.default", "export default"] {
        if p.rest().starts_with(prefix.as_bytes()) {
            p.at += prefix.len();
            p.skip();
            if prefix != "export default" {
                p.expect(b'=')?;
            }
            break;
        }
    }
    p.expect(b'[')?;
    let mut pivots = Vec::new();
    loop {
        p.skip();
        match p.peek() {
            Some(b']') => {
                p.at += 1;
                break;
            }
            Some(b'"' | b'\'') => pivots.push(Some(p.string()?)),
            Some(b'n') if p.rest().starts_with(b"null") => {
                p.at += 4;
                pivots.push(None);
            }
            Some(_) => return Err(p.error("expected a string, `null` or `]`")),
            None => return Err(p.error("unexpected end of file inside the array")),
        }
        p.skip();
        match p.peek() {
            Some(b',') => p.at += 1,
            Some(b']') => {}
            _ => return Err(p.error("expected `,` or `]` after a pivot")),
        }
    }
    p.skip();
    if p.peek() == Some(b';') {
        p.at += 1;
        p.skip();
    }
    if p.peek().is_some() {
        return Err(p.error("unexpected text after the array"));
    }
    check(&pivots)?;
    Ok(pivots)
}

/// Checks the rules: non-empty, `null` only first, strictly increasing.
pub fn check(pivots: &[Option<String>]) -> Result<(), PivotsError> {
    if pivots.is_empty() {
        return Err(PivotsError::Empty);
    }
    let mut prev: Option<&str> = None;
    for (index, pivot) in pivots.iter().enumerate() {
        let Some(value) = pivot.as_deref() else {
            if index > 0 {
                return Err(PivotsError::NullNotFirst { index });
            }
            continue;
        };
        if let Some(prev) = prev {
            if value == prev {
                return Err(PivotsError::Duplicate {
                    index,
                    value: value.to_owned(),
                });
            }
            if value < prev {
                return Err(PivotsError::Unsorted {
                    index,
                    prev: prev.to_owned(),
                    next: value.to_owned(),
                });
            }
        }
        prev = Some(value);
    }
    Ok(())
}

/// The half-open ranges between consecutive pivots; the last one is open-ended.
pub fn ranges(pivots: &[Option<String>]) -> Vec<(Option<String>, Option<String>)> {
    let mut out: Vec<_> = pivots.windows(2).map(|w| (w[0].clone(), w[1].clone())).collect();
    if let Some(last) = pivots.last() {
        out.push((last.clone(), None));
    }
    out
}

/// Equal-count pivots for `count` partitions over `names` (sorted, distinct): `null` first,
/// then every `len / count`-th name. Fewer names than partitions give one partition per name.
pub fn plan(names: &[&str], count: usize) -> Pivots {
    let count = count.max(1);
    let mut pivots = vec![None];
    if names.is_empty() {
        return pivots;
    }
    let step = names.len() as f64 / count as f64;
    for i in 1..count {
        let idx = (i as f64 * step).round() as usize;
        if let Some(name) = names.get(idx) {
            if pivots.last().and_then(|p| p.as_deref()) != Some(*name) {
                pivots.push(Some((*name).to_owned()));
            }
        }
    }
    pivots
}

/// Pivots for `count` partitions without looking at any names: cut points chosen evenly among
/// two-character prefixes of the name space (`0`..`9`, scoped `@a`..`@z`, `a`..`z`). Partitions
/// are of uneven size; for equal-count ones, use [`plan`] over a real index.
pub fn even(count: usize) -> Pivots {
    let first: Vec<char> = ('0'..='9').chain(std::iter::once('@')).chain('a'..='z').collect();
    let mut candidates: Vec<String> = Vec::new();
    for f in &first {
        let seconds: Vec<char> = if *f == '@' || f.is_ascii_alphabetic() {
            ('a'..='z').collect()
        } else {
            vec!['0']
        };
        for s in seconds {
            candidates.push(if s == 'a' || !f.is_ascii_alphabetic() && *f != '@' {
                f.to_string()
            } else {
                format!("{f}{s}")
            });
        }
    }
    candidates.sort();
    candidates.dedup();
    let count = count.clamp(1, candidates.len() + 1);
    let mut pivots = vec![None];
    let step = candidates.len() as f64 / count as f64;
    for i in 1..count {
        let idx = ((i as f64 * step).round() as usize).min(candidates.len() - 1);
        let c = &candidates[idx];
        if pivots.last().and_then(|p| p.as_deref()) != Some(c.as_str()) {
            pivots.push(Some(c.clone()));
        }
    }
    pivots
}

/// Renders pivots as a JSON array, one per line, the format `partition plan` writes.
pub fn to_json(pivots: &[Option<String>]) -> String {
    let items: Vec<String> = pivots
        .iter()
        .map(|p| serde_json::to_string(p).unwrap_or_else(|_| "null".into()))
        .collect();
    format!("[\n  {}\n]\n", items.join(",\n  "))
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &[u8] {
        &self.s[self.at..]
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn error(&self, msg: &str) -> PivotsError {
        let before = &self.s[..self.at.min(self.s.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        PivotsError::Syntax {
            line,
            col,
            msg: msg.to_owned(),
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), PivotsError> {
        self.skip();
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", b as char)))
        }
    }

    /// Skips whitespace and `//` and `/* */` comments.
    fn skip(&mut self) {
        loop {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.at += 1;
            }
            if self.rest().starts_with(b"//") {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.at += 1;
                }
            } else if self.rest().starts_with(b"/*") {
                match self.rest()[2..].windows(2).position(|w| w == b"*/") {
                    Some(end) => self.at += end + 4,
                    None => self.at = self.s.len(),
                }
            } else {
                return;
            }
        }
    }

    /// A JSON or JavaScript string literal in `"` or `'`.
    fn string(&mut self) -> Result<String, PivotsError> {
        let quote = self.s[self.at];
        let start = self.at;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                self.at = start;
                return Err(self.error("unterminated string"));
            };
            self.at += 1;
            match b {
                b if b == quote => break,
                b'\n' => return Err(self.error("line break inside a string")),
                b'\\' => {
                    let Some(e) = self.peek() else { continue };
                    self.at += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'0' => out.push(0),
                        b'u' => {
                            let c = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("string is not valid UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, PivotsError> {
        let digits = self
            .s
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let v = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(v)
    }

    /// `\uXXXX`, with surrogate pairs.
    fn unicode_escape(&mut self) -> Result<char, PivotsError> {
        let hi = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&hi) {
            if !self.rest().starts_with(b"\\u") {
                return Err(self.error("lone surrogate in \\u escape"));
            }
            self.at += 2;
            let lo = self.hex4()?;
            if !(0xdc00..0xe000).contains(&lo) {
                return Err(self.error("bad surrogate pair in \\u escape"));
            }
            0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.error("\\u escape is not a character"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_pivots_are_valid_and_have_the_asked_count() {
        for n in [1, 2, 7, 20, 100, 500] {
            let p = even(n);
            assert_eq!(p.len(), n, "count {n}: {p:?}");
            check(&p).unwrap();
            assert_eq!(ranges(&p).len(), n);
        }
        // More partitions than cut points: as many as there are.
        assert!(even(100_000).len() < 1000);
        check(&even(100_000)).unwrap();
    }

    fn some(v: &[&str]) -> Pivots {
        v.iter().map(|s| Some((*s).to_owned())).collect()
    }

    #[test]
    fn reads_json_and_javascript_forms() {
        let want: Pivots = [None].into_iter().chain(some(&["0", "@", "a", "n"])).collect();
        assert_eq!(parse(r#"[null, "0", "@", "a", "n"]"#), Ok(want.clone()));
        assert_eq!(
            parse("module.exports = [null, '0', '@', 'a', 'n',];\n"),
            Ok(want.clone())
        );
        assert_eq!(
            parse("// pivots\nexport default [\n  null, /* open */ \"0\", '@', 'a', 'n'\n]"),
            Ok(want)
        );
        assert_eq!(parse(r#"["caf\u00e9", "\ud83d\ude00"]"#), Ok(some(&["café", "😀"])));
    }

    #[test]
    fn rejects_bad_pivots_clearly() {
        assert_eq!(parse("[]"), Err(PivotsError::Empty));
        assert_eq!(
            parse(r#"["b", "a"]"#),
            Err(PivotsError::Unsorted {
                index: 1,
                prev: "b".into(),
                next: "a".into()
            })
        );
        assert_eq!(
            parse(r#"["a", "a"]"#),
            Err(PivotsError::Duplicate {
                index: 1,
                value: "a".into()
            })
        );
        assert_eq!(parse(r#"["a", null]"#), Err(PivotsError::NullNotFirst { index: 1 }));
        // Byte order, not locale order: uppercase sorts before lowercase.
        assert!(parse(r#"["a", "B"]"#).is_err());
        assert!(parse(r#"["B", "a"]"#).is_ok());
        for bad in [
            "",
            "[",
            "[1]",
            "[\"a\" \"b\"]",
            "module.exports [\"a\"]",
            "[\"a\"] x",
            "['a]",
            "{\"a\":1}",
        ] {
            assert!(matches!(parse(bad), Err(PivotsError::Syntax { .. })), "{bad:?}");
        }
        assert_eq!(
            parse("[\n  \"a\",\n  x]").unwrap_err().to_string(),
            "3:3: expected a string, `null` or `]`"
        );
    }

    #[test]
    fn ranges_are_half_open_and_cover_the_end() {
        let p: Pivots = [None].into_iter().chain(some(&["a", "n"])).collect();
        assert_eq!(
            ranges(&p),
            vec![
                (None, Some("a".into())),
                (Some("a".into()), Some("n".into())),
                (Some("n".into()), None)
            ]
        );
    }

    #[test]
    fn plan_makes_equal_count_cuts() {
        let names: Vec<String> = (0..1000).map(|i| format!("n{i:04}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let p = plan(&refs, 4);
        assert_eq!(
            p,
            vec![None, Some("n0250".into()), Some("n0500".into()), Some("n0750".into())]
        );
        check(&p).unwrap();
        assert_eq!(plan(&refs[..2], 10).len(), 3);
        assert_eq!(plan(&[], 10), vec![None]);
        assert_eq!(parse(&to_json(&p)), Ok(p));
    }
}
