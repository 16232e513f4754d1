//! Upstream origins: validated base URLs and their short ids. No I/O.

use crate::keys;

/// A configured upstream origin: `http(s)://host[:port][/path]`, without credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    base: String,
    id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("origin `{0}` must start with http:// or https://")]
    Scheme(String),
    #[error("origin `{0}` must not carry credentials (user:password@); use a token in your npm config instead")]
    Credentials(String),
    #[error("origin `{0}` has no host")]
    NoHost(String),
    #[error("origin `{0}` must not have a query or fragment")]
    Query(String),
}

impl Origin {
    pub fn parse(url: &str) -> Result<Origin, OriginError> {
        let url = url.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| OriginError::Scheme(url.to_owned()))?;
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((_, host)) = authority.rsplit_once('@') {
            // Never echo the secret: the message shows the origin with its user info hidden.
            let scheme = &url[..url.len() - rest.len()];
            let path = &rest[authority.len()..];
            return Err(OriginError::Credentials(format!("{scheme}***@{host}{path}")));
        }
        if authority.is_empty() || authority.starts_with(':') {
            return Err(OriginError::NoHost(url.to_owned()));
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(OriginError::Query(url.to_owned()));
        }
        let base = url.trim_end_matches('/').to_owned();
        Ok(Origin {
            id: keys::origin_id(&base),
            base,
        })
    }

    /// The same origin under another key id (a simulator on a random port keeps one replica).
    pub fn with_id(mut self, id: &str) -> Origin {
        self.id = keys::origin_id(id);
        self
    }

    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The short id used in cache keys.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `base` + `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// The URL of a package document: `@scope/name` becomes `@scope%2fname`; other bytes
    /// outside `[A-Za-z0-9-._~@]` are percent-encoded.
    pub fn packument_url(&self, name: &str) -> String {
        const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~')
            .remove(b'@');
        let encoded = percent_encoding::utf8_percent_encode(name, KEEP).to_string();
        format!("{}/{}", self.base, encoded.replace("%2F", "%2f"))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let o = Origin::parse("http://127.0.0.1:5984/").unwrap();
        assert_eq!(o.base(), "http://127.0.0.1:5984");
        assert_eq!(o.id(), "127.0.0.1-5984");
        assert!(matches!(Origin::parse("ftp://x"), Err(OriginError::Scheme(_))));
        assert!(matches!(Origin::parse("127.0.0.1:5984"), Err(OriginError::Scheme(_))));
        let secret = Origin::parse("https://user:s3cret@host/npm").unwrap_err();
        assert!(matches!(secret, OriginError::Credentials(_)));
        let shown = secret.to_string();
        assert!(
            shown.contains("https://***@host/npm") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(matches!(Origin::parse("http://"), Err(OriginError::NoHost(_))));
        assert!(matches!(Origin::parse("http://h/?a=1"), Err(OriginError::Query(_))));
    }

    #[test]
    fn packument_urls_encode_scopes_and_unicode() {
        let o = Origin::parse("http://127.0.0.1:1").unwrap();
        assert_eq!(o.packument_url("@types/node"), "http://127.0.0.1:1/@types%2fnode");
        assert_eq!(o.packument_url("café"), "http://127.0.0.1:1/caf%C3%A9");
        assert_eq!(o.packument_url("a b"), "http://127.0.0.1:1/a%20b");
        assert_eq!(o.packument_url("lodash.merge"), "http://127.0.0.1:1/lodash.merge");
    }
}
