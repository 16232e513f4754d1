//! Parsing of `_all_docs` and `_changes` query strings, with the upstream's rules and errors.

/// Upper bound of `limit` on both routes; more is a `400`, as upstream.
pub const MAX_LIMIT: usize = 10_000;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 1_000;

/// A `400 bad_request` with its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllDocsQuery {
    pub start: Option<String>,
    pub end: Option<String>,
    pub inclusive_end: bool,
    pub descending: bool,
    pub limit: usize,
    pub keys: Option<Vec<String>>,
}

pub fn all_docs(query: &str) -> Result<AllDocsQuery, BadRequest> {
    let mut q = AllDocsQuery {
        inclusive_end: true,
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut key = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "startkey" | "start_key" => q.start = json_key(&name, &value)?,
            "endkey" | "end_key" => q.end = json_key(&name, &value)?,
            "key" => key = Some(json_key(&name, &value)?),
            "keys" => {
                let keys: Vec<String> = serde_json::from_str(&value)
                    .map_err(|_| BadRequest(format!("`keys` must be a JSON array of strings, got `{value}`")))?;
                q.keys = Some(keys);
            }
            "inclusive_end" => q.inclusive_end = boolean(&name, &value)?,
            "descending" => q.descending = boolean(&name, &value)?,
            "limit" => q.limit = limit(&value)?,
            "skip" => {
                return Err(BadRequest(
                    "`skip` is not supported; page with `startkey` instead".into(),
                ))
            }
            "include_docs" => {
                return Err(BadRequest(
                    "`include_docs` is not supported; fetch documents by name".into(),
                ))
            }
            _ => {}
        }
    }
    if let Some(k) = key {
        (q.start, q.end, q.inclusive_end) = (k.clone(), k, true);
    }
    if let (Some(s), Some(e)) = (&q.start, &q.end) {
        if (!q.descending && s > e) || (q.descending && s < e) {
            return Err(BadRequest(
                "No rows can match your key range, reverse your start_key and end_key or set descending=true".into(),
            ));
        }
    }
    Ok(q)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangesQuery {
    pub since: u64,
    pub limit: usize,
}

/// `since` may be a number or `now`.
pub fn changes(query: &str, update_seq: u64) -> Result<ChangesQuery, BadRequest> {
    let mut q = ChangesQuery {
        since: 0,
        limit: DEFAULT_LIMIT,
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "since" if value == "now" => q.since = update_seq,
            "since" => {
                q.since = value
                    .trim_matches('"')
                    .parse()
                    .map_err(|_| BadRequest(format!("`since` must be a sequence number or `now`, got `{value}`")))?
            }
            "limit" => q.limit = limit(&value)?,
            "include_docs" => return Err(BadRequest("`include_docs` is not supported".into())),
            "feed" if value != "normal" => return Err(BadRequest(format!("`feed={value}` is not supported; poll"))),
            _ => {}
        }
    }
    Ok(q)
}

/// A JSON-encoded key: a string, or `null` for an open end.
fn json_key(name: &str, value: &str) -> Result<Option<String>, BadRequest> {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::String(s)) => Ok(Some(s)),
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(_) => Err(BadRequest(format!("`{name}` must be a JSON string, got `{value}`"))),
        Err(_) => Err(BadRequest(format!(
            "`{name}` is not valid JSON: `{value}` (quote it: {name}=\"...\")"
        ))),
    }
}

fn boolean(name: &str, value: &str) -> Result<bool, BadRequest> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(BadRequest(format!("`{name}` must be `true` or `false`, got `{value}`"))),
    }
}

fn limit(value: &str) -> Result<usize, BadRequest> {
    let n: usize = value
        .parse()
        .map_err(|_| BadRequest(format!("`limit` must be a whole number, got `{value}`")))?;
    if n > MAX_LIMIT {
        return Err(BadRequest(format!("`limit` may be at most {MAX_LIMIT}, got {n}")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_docs_defaults_and_keys() {
        let q = all_docs("").unwrap();
        assert_eq!((q.limit, q.inclusive_end, q.descending), (1_000, true, false));
        let q = all_docs("startkey=%22%40types%2Fnode%22&endkey=%22b%22&inclusive_end=false&limit=10000").unwrap();
        assert_eq!(q.start.as_deref(), Some("@types/node"));
        assert_eq!(q.end.as_deref(), Some("b"));
        assert!(!q.inclusive_end);
        assert_eq!(all_docs("start_key=null").unwrap().start, None);
        let q = all_docs("key=%22x%22").unwrap();
        assert_eq!((q.start.as_deref(), q.end.as_deref()), (Some("x"), Some("x")));
        assert_eq!(
            all_docs("keys=%5B%22a%22%2C%22b%22%5D").unwrap().keys,
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn all_docs_rejects_like_upstream() {
        for bad in [
            "limit=10001",
            "limit=ten",
            "skip=1",
            "include_docs=true",
            "startkey=a",
            "startkey=1",
            "descending=yes",
            "keys=%5B1%5D",
            "startkey=%22b%22&endkey=%22a%22",
        ] {
            assert!(all_docs(bad).is_err(), "{bad} should be rejected");
        }
        assert!(all_docs("startkey=%22b%22&endkey=%22a%22&descending=true").is_ok());
    }

    #[test]
    fn changes_params() {
        assert_eq!(
            changes("since=5&limit=2", 9).unwrap(),
            ChangesQuery { since: 5, limit: 2 }
        );
        assert_eq!(changes("since=now", 9).unwrap().since, 9);
        assert!(changes("limit=10001", 9).is_err());
        assert!(changes("since=x", 9).is_err());
        assert!(changes("feed=longpoll", 9).is_err());
    }
}
