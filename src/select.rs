//! jq filters over one JSON value (`show --select`), and the formats results are printed in.
//!
//! Users know jq, so the expression language is jq's, through jaq (`jaq-core` parses and
//! runs it, `jaq-std` and `jaq-json` bring jq's standard filters and JSON values); nothing here
//! interprets an expression itself. A filter is compiled before any data is read, so a filter
//! that does not parse is refused before the replica is opened.
//!
//! It reads no file, store or network: the caller reads the document and hands over the writer.

use std::io::{self, Write};

use jaq_core::data::JustLut;
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::Num;
pub use jaq_json::Val;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The value as JSON: the stored bytes unchanged for a whole document, else one compact
    /// JSON value per line (one line for one result).
    #[default]
    Json,
    /// One compact JSON value per line, always (a whole document too).
    Ndjson,
    /// Like `jq -r`: strings raw (no quotes, no escapes), other values as compact JSON, one
    /// per line.
    Lines,
}

/// What went wrong with a selection.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The filter does not parse or names a filter that does not exist: bad input.
    #[error("--select `{expr}`: {reason}")]
    Compile { expr: String, reason: String },
    /// The filter failed on this document (`.a.b` on a number, `error("x")`).
    #[error("--select `{expr}` failed: {reason}")]
    Run { expr: String, reason: String },
    /// The filter called `halt` or `halt_error` with a non-zero exit code.
    #[error("--select `{expr}` halted with exit code {code}")]
    Halt { expr: String, code: i32 },
    /// The stored bytes are not JSON (the store verified their hash, so this is upstream's).
    #[error("the stored document is not valid JSON: {0}")]
    NotJson(String),
    /// Writing a result failed.
    #[error("writing the selection: {0}")]
    Write(#[source] io::Error),
}

/// A compiled jq filter.
pub struct Selection {
    expr: String,
    filter: jaq_core::Filter<JustLut<Val>>,
}

/// Brackets a filter may nest.
const MAX_FILTER_DEPTH: usize = 256;

impl Selection {
    /// Parses and compiles `expr` with jq's standard library.
    pub fn compile(expr: &str) -> Result<Selection, SelectError> {
        let fail = |reason: String| SelectError::Compile {
            expr: expr.to_owned(),
            reason,
        };
        // jaq's parser recurses once per nesting level: a filter nested absurdly deep is refused
        // here rather than left to overflow the stack (brackets inside strings count too,
        // which only matters for filters no one writes).
        let mut depth = 0usize;
        for b in expr.bytes() {
            match b {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_FILTER_DEPTH {
                return Err(fail(format!("nested more than {MAX_FILTER_DEPTH} deep")));
            }
        }
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code: expr, path: () })
            .map_err(|errs| fail(load_errors(expr, errs)))?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
            let undefined: Vec<String> = errs
                .into_iter()
                .flat_map(|(_, es)| es)
                .map(|(name, what)| format!("{} `{name}` is not defined", what.as_str()))
                .collect();
            fail(undefined.join("; "))
        })?;
        Ok(Selection {
            expr: expr.to_owned(),
            filter,
        })
    }

    /// Runs the filter on `input` and hands each result to `emit`, as it comes. Stops at the
    /// first error (results before it have been emitted, as jq does).
    pub fn run(&self, input: Val, mut emit: impl FnMut(&Val) -> io::Result<()>) -> Result<(), SelectError> {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        for result in self.filter.id.run((ctx, input)) {
            match result {
                Ok(v) => emit(&v).map_err(SelectError::Write)?,
                Err(exn) => {
                    return match exn.get_err() {
                        Ok(e) => Err(SelectError::Run {
                            expr: self.expr.clone(),
                            reason: e.to_string(),
                        }),
                        // `halt` and `halt_error` end the output; only a non-zero code fails.
                        Err(exn) => match exn.get_halt() {
                            Ok(0) => Ok(()),
                            Ok(code) => Err(SelectError::Halt {
                                expr: self.expr.clone(),
                                code,
                            }),
                            Err(_) => Err(SelectError::Run {
                                expr: self.expr.clone(),
                                reason: "the filter ended in an internal state of jaq".into(),
                            }),
                        },
                    };
                }
            }
        }
        Ok(())
    }
}

/// Parse and lex errors as `column N: expected X (found Y)`, columns counted in characters
/// from 1.
fn load_errors(code: &str, errs: load::Errors<&str, ()>) -> String {
    let column = |at: &str| code[..load::span(code, at).start].chars().count() + 1;
    let found = |at: &str| {
        if at.is_empty() {
            "the end of the filter".to_owned()
        } else {
            format!("`{}`", at.chars().take(20).collect::<String>())
        }
    };
    let mut out = Vec::new();
    for (_, e) in errs {
        match e {
            load::Error::Io(es) => out.extend(es.into_iter().map(|(path, why)| format!("`{path}`: {why}"))),
            load::Error::Lex(es) => out.extend(es.into_iter().map(|(expect, at)| {
                let what = match expect {
                    load::lex::Expect::Delim(open) => format!("a match for `{open}`"),
                    other => other.as_str().to_owned(),
                };
                format!("column {}: expected {what}", column(at))
            })),
            load::Error::Parse(es) => out.extend(es.into_iter().map(|(expect, at)| {
                format!(
                    "column {}: expected {} (found {})",
                    column(at),
                    expect.as_str(),
                    found(at)
                )
            })),
        }
    }
    if out.is_empty() {
        "does not parse".into()
    } else {
        out.join("; ")
    }
}

/// Parses a whole JSON document into jaq's values (object keys keep their order, numbers their
/// digits). jaq's reader recurses once per nesting level; the store holds no document nested
/// deeper than the JSON check allows (`jsoncheck::MAX_DEPTH`), which it reads within a test
/// thread's stack.
pub fn parse_json(bytes: &[u8]) -> Result<Val, SelectError> {
    jaq_json::read::parse_single(bytes).map_err(|e| SelectError::NotJson(e.to_string()))
}

/// The value of `key` in `v`, if `v` is an object that has it.
pub fn field<'v>(v: &'v Val, key: &str) -> Option<&'v Val> {
    match v {
        Val::Obj(map) => map.get(&Val::from(key.to_owned())),
        _ => None,
    }
}

/// `v` as a string, if it is one.
pub fn as_str(v: &Val) -> Option<String> {
    match v {
        Val::TStr(s) => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    }
}

/// Writes one result and its newline: compact JSON, or for [`Format::Lines`] a string's
/// bytes as they are.
pub fn write_value(out: &mut dyn Write, format: Format, v: &Val) -> io::Result<()> {
    match (format, v) {
        (Format::Lines, Val::TStr(s) | Val::BStr(s)) => out.write_all(s)?,
        _ => write_json(out, v)?,
    }
    out.write_all(b"\n")
}

/// The largest finite double, which jq prints for an infinity.
const MAX_DOUBLE: &str = "1.7976931348623157e+308";

/// Writes `v` as compact JSON that every JSON reader accepts. jaq can hold values JSON cannot
/// (NaN and the infinities, byte strings, non-string keys) and its own writer prints them as
/// they are; here they become what jq prints (`null`, the largest double) or strings. Numbers
/// read from the document keep their digits (`1.50` stays `1.50`).
fn write_json(out: &mut dyn Write, v: &Val) -> io::Result<()> {
    match v {
        Val::Null => out.write_all(b"null"),
        Val::Bool(b) => write!(out, "{b}"),
        Val::Num(Num::Float(f)) if f.is_nan() => out.write_all(b"null"),
        Val::Num(Num::Float(f)) if f.is_infinite() => {
            let sign = if *f < 0.0 { "-" } else { "" };
            write!(out, "{sign}{MAX_DOUBLE}")
        }
        Val::Num(n) => write!(out, "{n}"),
        Val::TStr(s) | Val::BStr(s) => write_str(out, s),
        Val::Arr(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json(out, item)?;
            }
            out.write_all(b"]")
        }
        Val::Obj(map) => {
            out.write_all(b"{")?;
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                match k {
                    Val::TStr(s) | Val::BStr(s) => write_str(out, s)?,
                    other => {
                        let mut text = Vec::new();
                        write_json(&mut text, other)?;
                        write_str(out, &text)?;
                    }
                }
                out.write_all(b":")?;
                write_json(out, item)?;
            }
            out.write_all(b"}")
        }
    }
}

/// A JSON string, escaped; bytes that are not UTF-8 become U+FFFD.
fn write_str(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    serde_json::to_writer(out, &*String::from_utf8_lossy(bytes)).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"name":"@s/p","dist-tags":{"latest":"1.0.0"},"versions":{"0.9.0":{"version":"0.9.0"},"1.0.0":{"version":"1.0.0","big":12345678901234567890123,"f":1.50}}}"#;

    fn select(expr: &str, format: Format) -> Result<String, SelectError> {
        let sel = Selection::compile(expr)?;
        let mut out = Vec::new();
        sel.run(parse_json(DOC.as_bytes())?, |v| write_value(&mut out, format, v))?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// Each filter, output format and the exact output jq gives.
    #[test]
    fn selects_and_prints_like_jq() {
        let cases: &[(&str, Format, &str)] = &[
            (".name", Format::Json, "\"@s/p\"\n"),
            (".name", Format::Lines, "@s/p\n"),
            (".versions | keys[]", Format::Lines, "0.9.0\n1.0.0\n"),
            (
                ".versions[.\"dist-tags\".latest] | {version}",
                Format::Ndjson,
                "{\"version\":\"1.0.0\"}\n",
            ),
            ("[.versions[] | .version] | length", Format::Lines, "2\n"),
            (".nothing", Format::Json, "null\n"),
            ("empty", Format::Json, ""),
            // What JSON cannot hold is printed as jq does.
            (
                "nan, infinite, -infinite, 0.5 + 1",
                Format::Json,
                "null\n1.7976931348623157e+308\n-1.7976931348623157e+308\n1.5\n",
            ),
            (
                "{a: [nan]}, (\"x\\n\\\"\" | tobytes)",
                Format::Json,
                "{\"a\":[null]}\n\"x\\n\\\"\"\n",
            ),
            ("\"x\\ty\"", Format::Lines, "x\ty\n"),
            // Numbers keep their digits, objects their key order.
            (
                ".versions[\"1.0.0\"]",
                Format::Json,
                "{\"version\":\"1.0.0\",\"big\":12345678901234567890123,\"f\":1.50}\n",
            ),
            (". | keys_unsorted[0]", Format::Lines, "name\n"),
        ];
        for (expr, format, want) in cases {
            assert_eq!(select(expr, *format).unwrap(), *want, "{expr} as {format:?}");
        }
    }

    #[test]
    fn a_filter_that_does_not_parse_names_the_expression_and_where() {
        for (expr, needle) in [
            (".name |", "column 8: expected term (found the end of the filter)"),
            (".[", "expected a match for `[`"),
            ("nosuch", "filter `nosuch` is not defined"),
            ("\"abc", "expected a match for `\"`"),
            ("", "expected term"),
        ] {
            let Err(e @ SelectError::Compile { .. }) = Selection::compile(expr) else {
                panic!("{expr:?} compiled");
            };
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{expr}`")), "{msg}");
            assert!(msg.contains(needle), "{expr:?}: {msg}");
        }
    }

    #[test]
    fn a_failing_filter_is_a_run_error_after_the_results_before_it() {
        let e = select(".name.first", Format::Json).unwrap_err();
        assert!(matches!(e, SelectError::Run { .. }), "{e}");
        assert!(e.to_string().contains("cannot index"), "{e}");
        let sel = Selection::compile("1, error(\"stop\"), 2").unwrap();
        let mut seen = Vec::new();
        let e = sel
            .run(Val::Null, |v| {
                seen.push(v.to_string());
                Ok(())
            })
            .unwrap_err();
        assert_eq!(seen, ["1"]);
        assert!(e.to_string().contains("stop"), "{e}");
    }

    #[test]
    fn halt_ends_the_output() {
        assert_eq!(select("1, halt, 2", Format::Json).unwrap(), "1\n");
        let e = select("\"bye\" | halt_error(3)", Format::Json).unwrap_err();
        assert!(matches!(e, SelectError::Halt { code: 3, .. }), "{e}");
    }

    #[test]
    fn a_filter_nested_too_deep_is_refused_not_a_crash() {
        let deep = format!("{}.{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(Selection::compile(&deep), Err(SelectError::Compile { .. })));
        assert!(Selection::compile("[(.a | [.b])]").is_ok());
    }

    #[test]
    fn the_deepest_document_the_store_accepts_is_read() {
        let depth = crate::registry::jsoncheck::MAX_DEPTH;
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(crate::registry::jsoncheck::check_in_chunks(deep.as_bytes(), 4_096).is_ok());
        // On a test thread's 2 MiB stack, as on a tokio worker's.
        assert!(parse_json(deep.as_bytes()).is_ok());
    }

    #[test]
    fn fields_of_a_document() {
        let doc = parse_json(DOC.as_bytes()).unwrap();
        let tags = field(&doc, "dist-tags").unwrap();
        assert_eq!(as_str(field(tags, "latest").unwrap()).as_deref(), Some("1.0.0"));
        assert!(field(&doc, "nope").is_none());
        assert!(parse_json(b"{\"a\":").is_err());
    }
}
