//! `show NAME[@VERSION|@TAG] [--select JQ] [--format json|ndjson|lines]`: one stored document,
//! one version of it, or a jq selection of either (the filter runs in `crate::select`).

use std::io::Write as _;

use futures_util::StreamExt as _;

use super::cache::cache_origin;
use super::open_store;
use crate::config::Replica;
use crate::error::Error;
use crate::keys::Key;
use crate::select::{self, Format, SelectError, Selection};
use crate::store::{Access, Entry};
use crate::work;

/// The flags of `show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Package name, e.g. `@types/node`, optionally with `@VERSION` or `@TAG` (a dist-tag such
    /// as `latest`) for that version's object.
    #[arg(value_name = "NAME[@VERSION|@TAG]")]
    pub spec: String,
    /// A jq filter to run on the document (or the version); its results are printed instead.
    #[arg(long, value_name = "JQ")]
    pub select: Option<String>,
    /// json: the document as stored, or each result as compact JSON on a line of its own;
    /// ndjson: always one compact JSON value per line; lines: strings raw, like `jq -r`.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// `show`: see the module doc. The whole document, unselected, is streamed as stored with its
/// metadata on stderr; anything else reads it whole.
pub async fn show(g: &Replica, args: &ShowArgs) -> Result<(), Error> {
    let (name, version) = split_spec(&args.spec)?;
    work::validate_name(name).map_err(|e| Error::usage(e.to_string()))?;
    // Compiled first: a filter that cannot work is refused before the replica is read.
    let selection = match &args.select {
        Some(expr) => Some(Selection::compile(expr).map_err(select_error)?),
        None => None,
    };
    let store = open_store(g, Access::Read).await?;
    let key = Key::packument(&cache_origin(g, &*store).await?, name);
    let Some(entry) = store.get(&key).await? else {
        return Err(Error::NotFound(format!(
            "`{name}` is not in the replica at `{}`",
            g.store
        )));
    };
    if version.is_none() && selection.is_none() && args.format == Format::Json {
        return stream_as_stored(entry).await;
    }
    if version.is_none() && selection.is_none() {
        eprintln!("{}", serde_json::to_string(&entry.meta).unwrap_or_default());
    }

    // A selection or a version needs the document parsed, so it is read whole: up to the
    // upstream's 100 MB cap, plus jaq's values of it. That is acceptable for one document at a
    // time; the streamed path above stays for `show NAME` of any size.
    let bytes = entry
        .bytes()
        .await
        .map_err(|e| Error::Incomplete(format!("reading `{name}` from the replica: {e}")))?;
    let doc = select::parse_json(&bytes).map_err(|e| Error::Incomplete(format!("`{name}`: {e}")))?;
    drop(bytes);
    let value = match version {
        None => doc,
        Some(wanted) => version_of(&doc, name, wanted, &g.store)?.clone(),
    };

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match &selection {
        None => select::write_value(&mut out, args.format, &value).map_err(SelectError::Write),
        Some(sel) => sel.run(value, |v| select::write_value(&mut out, args.format, v)),
    };
    let flushed = written.and_then(|()| out.flush().map_err(SelectError::Write));
    match flushed {
        // A reader that stopped early (`| head`) is not an error.
        Err(SelectError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(select_error),
    }
}

/// Today's `show NAME`: metadata on stderr, the stored bytes on stdout, chunk by chunk.
async fn stream_as_stored(entry: Entry) -> Result<(), Error> {
    eprintln!("{}", serde_json::to_string(&entry.meta).unwrap_or_default());
    let mut body = entry.body;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::Internal(e.to_string()))?;
        if out.write_all(&chunk).is_err() {
            return Ok(());
        }
    }
    let _ = writeln!(out);
    Ok(())
}

/// `NAME[@VERSION]`: the version starts after the last `@` that is not the first character
/// (a scoped name starts with one: `@types/node@1.2.3`).
fn split_spec(spec: &str) -> Result<(&str, Option<&str>), Error> {
    let first = spec.chars().next().map_or(0, char::len_utf8);
    let Some(at) = spec[first..].rfind('@').map(|i| i + first) else {
        return Ok((spec, None));
    };
    let (name, version) = (&spec[..at], &spec[at + 1..]);
    if version.is_empty() {
        return Err(Error::usage(format!(
            "`{spec}` has nothing after `@`: give a version or a dist-tag (`{name}@latest`), or leave out the `@`"
        )));
    }
    Ok((name, Some(version)))
}

/// `versions[wanted]`, or the version the dist-tag `wanted` points to.
fn version_of<'d>(doc: &'d select::Val, name: &str, wanted: &str, store: &str) -> Result<&'d select::Val, Error> {
    let versions = select::field(doc, "versions");
    if let Some(v) = versions.and_then(|vs| select::field(vs, wanted)) {
        return Ok(v);
    }
    let tagged = select::field(doc, "dist-tags")
        .and_then(|tags| select::field(tags, wanted))
        .and_then(select::as_str);
    match tagged {
        Some(target) => versions.and_then(|vs| select::field(vs, &target)).ok_or_else(|| {
            Error::NotFound(format!(
                "`{name}@{wanted}`: the dist-tag points to version `{target}`, which the stored document does not have"
            ))
        }),
        None => Err(Error::NotFound(format!(
            "`{name}` has no version or dist-tag `{wanted}` in the replica at `{store}`"
        ))),
    }
}

/// A filter that cannot compile is bad input (exit 2); one that fails on the document, or a
/// document that is not JSON, fails the command (exit 1).
fn select_error(e: SelectError) -> Error {
    match e {
        SelectError::Compile { .. } => Error::usage(e.to_string()),
        SelectError::Write(source) => Error::Io {
            what: "writing the selection".into(),
            source,
        },
        SelectError::Run { .. } | SelectError::Halt { .. } | SelectError::NotJson(_) => {
            Error::Incomplete(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_splits_at_the_last_at_after_the_first_character() {
        fn ok(s: &str) -> (&str, Option<&str>) {
            split_spec(s).unwrap()
        }
        assert_eq!(ok("lodash"), ("lodash", None));
        assert_eq!(ok("lodash@4.17.21"), ("lodash", Some("4.17.21")));
        assert_eq!(ok("lodash@latest"), ("lodash", Some("latest")));
        assert_eq!(ok("@types/node"), ("@types/node", None));
        assert_eq!(ok("@types/node@1.2.3"), ("@types/node", Some("1.2.3")));
        assert_eq!(ok("@"), ("@", None));
        assert_eq!(ok("ü@1"), ("ü", Some("1")));
        assert_eq!(ok(""), ("", None));
        for bad in ["lodash@", "@types/node@"] {
            let e = split_spec(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(&format!("`{bad}` has nothing after `@`")), "{e}");
        }
    }

    #[test]
    fn a_version_or_a_dist_tag() {
        let doc = select::parse_json(
            br#"{"dist-tags":{"latest":"1.0.0","next":"2.0.0"},"versions":{"1.0.0":{"v":1},"latest":{"v":"odd"}}}"#,
        )
        .unwrap();
        let v = |w: &str| version_of(&doc, "p", w, "s").map(|v| v.to_string());
        assert_eq!(v("1.0.0").unwrap(), r#"{"v":1}"#);
        // A version key wins over a dist-tag of the same name.
        assert_eq!(v("latest").unwrap(), r#"{"v":"odd"}"#);
        let e = v("next").unwrap_err();
        assert!(
            e.to_string().contains("`p@next`") && e.to_string().contains("`2.0.0`"),
            "{e}"
        );
        let e = v("9.9.9").unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("no version or dist-tag `9.9.9`"), "{e}");
        let stub = select::parse_json(br#"{"name":"p","time":{"unpublished":{}}}"#).unwrap();
        assert!(version_of(&stub, "p", "1.0.0", "s").is_err());
    }
}
