//! Push authentication: verifying the Google-signed OIDC token of every push request.
//!
//! Pub/Sub push sends `Authorization: Bearer <JWT>` with each request. [`PushAuth::verify`]
//! accepts the request only if the token
//!
//! - is signed with RS256 (never `none` or an HMAC algorithm) by a key from the configured JWKS
//!   (Google's `https://www.googleapis.com/oauth2/v3/certs`), looked up by the header's `kid`;
//! - has not expired and was not issued in the future, both within [`CLOCK_LEEWAY`];
//! - was issued by one of the configured issuers, for exactly the configured audience;
//! - when a service account is configured, names it as a verified `email`.
//!
//! The keys are cached in memory for as long as the JWKS response's `Cache-Control: max-age` says
//! (an hour without one). A token whose `kid` is not in the cache causes one refetch, because
//! Google rotates its keys; refetches are at most one per [`MIN_REFETCH_INTERVAL`], so a flood of
//! made-up `kid`s cannot turn the service into a load generator for Google's endpoint, and
//! concurrent misses share one request.
//!
//! Status codes ([`AuthError::status`]): a token that is absent, malformed or wrong is 401; a
//! genuine token from the wrong service account is 403; keys that cannot be fetched are 503, so
//! Pub/Sub retries the message instead of dead-lettering it.
//!
//! The only I/O here is the JWKS fetch. Errors name what is wrong but never carry the token, and
//! the strings they quote from it are clipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header::{AGE, AUTHORIZATION, CACHE_CONTROL};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;

use crate::registry::client::error_chain;

/// Clock skew tolerated between Google and this instance, for `exp`, `iat` and `nbf`.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(60);
/// A token's unknown `kid` refetches the keys at most this often (and the cache is never kept
/// for less, whatever the JWKS response says).
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long keys are kept when the JWKS response has no `Cache-Control: max-age`.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// Keys are refetched at least this often, whatever the JWKS response says.
const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// After a failed fetch, requests answer 503 for this long before the next attempt, so an outage
/// of the JWKS endpoint costs it one request per interval rather than one per push.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Google's tokens are about 1 KB; anything much larger is not one, and is refused unparsed.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest string quoted from a token in an error message.
const MAX_QUOTED: usize = 80;

/// Where the keys come from and what a token must say.
#[derive(Debug, Clone)]
pub struct PushAuthConfig {
    /// The token's `aud` must be exactly this (the push subscription's audience).
    pub audience: String,
    /// When set, the token's `email` must be this, and verified (the push subscription's service
    /// account). When `None`, any Google-signed token for the audience is accepted.
    pub service_account: Option<String>,
    /// The JWKS endpoint.
    pub jwks_url: String,
    /// The token's `iss` must be one of these.
    pub issuers: Vec<String>,
}

/// What a verified token says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushClaims {
    /// The service account the token was issued to.
    pub email: Option<String>,
    pub email_verified: bool,
    /// The `sub` claim: the service account's unique id.
    pub subject: Option<String>,
    pub issuer: String,
    /// `iat` and `exp`, in seconds since the Unix epoch.
    pub issued_at: u64,
    pub expires_at: u64,
}

/// Why a push request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request has no `Authorization: Bearer` push token")]
    MissingToken,
    #[error("the push token is malformed: {0}")]
    Malformed(String),
    #[error("the push token is signed with `{0}`; only RS256 is accepted")]
    UnsupportedAlgorithm(String),
    #[error("the push token's key `{kid}` is not among the keys published at {jwks_url}")]
    UnknownKey { kid: String, jwks_url: String },
    #[error("the push token's signature does not verify with key `{kid}`")]
    BadSignature { kid: String },
    #[error("the push token expired at {exp} (Unix seconds); it is now {now}")]
    Expired { exp: u64, now: u64 },
    #[error("the push token's `{claim}` is {at} (Unix seconds), in the future; it is now {now}")]
    NotYetValid { claim: &'static str, at: u64, now: u64 },
    #[error("push token issuer `{got}` is not one of the configured issuers ({})", .expected.join(", "))]
    WrongIssuer { got: String, expected: Vec<String> },
    #[error("push token audience `{got}` is not the configured `{expected}`")]
    WrongAudience { got: String, expected: String },
    #[error("push token email {} is not the configured service account `{expected}`",
        .got.as_deref().map_or("(none)".to_owned(), |g| format!("`{g}`")))]
    WrongServiceAccount { got: Option<String>, expected: String },
    #[error("push token email `{email}` is not verified")]
    EmailNotVerified { email: String },
    #[error("cannot fetch the push token keys from {url}: {reason}")]
    JwksUnavailable { url: String, reason: String },
}

impl AuthError {
    /// The status code Pub/Sub sees.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::WrongServiceAccount { .. } | AuthError::EmailNotVerified { .. } => StatusCode::FORBIDDEN,
            AuthError::JwksUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::MissingToken
            | AuthError::Malformed(_)
            | AuthError::UnsupportedAlgorithm(_)
            | AuthError::UnknownKey { .. }
            | AuthError::BadSignature { .. }
            | AuthError::Expired { .. }
            | AuthError::NotYetValid { .. }
            | AuthError::WrongIssuer { .. }
            | AuthError::WrongAudience { .. } => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The verifier. Cheap to clone: clones share the key cache.
#[derive(Clone)]
pub struct PushAuth {
    inner: Arc<Inner>,
}

struct Inner {
    config: PushAuthConfig,
    http: reqwest::Client,
    validation: Validation,
    keys: RwLock<KeyCache>,
    /// Held while fetching, so that concurrent misses wait for one request instead of each
    /// sending their own.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// `None` until the first successful fetch.
    fresh_until: Option<Instant>,
    last_attempt: Option<Attempt>,
    /// Fetch attempts so far: a waiter that sees it change knows someone fetched for it.
    attempts: u64,
}

struct Attempt {
    at: Instant,
    /// Why it failed; `None` if it succeeded.
    error: Option<String>,
}

impl KeyCache {
    fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_until.is_some_and(|until| now < until)
    }

    fn attempted_within(&self, now: Instant, window: Duration) -> bool {
        self.last_attempt
            .as_ref()
            .is_some_and(|a| now.saturating_duration_since(a.at) < window)
    }

    fn last_failure(&self) -> Option<&str> {
        self.last_attempt.as_ref().and_then(|a| a.error.as_deref())
    }
}

impl PushAuth {
    pub fn new(config: PushAuthConfig, http: reqwest::Client) -> PushAuth {
        // jsonwebtoken checks the algorithm and the signature; every claim is checked in
        // `check_claims` instead, so that each refusal can name the values involved.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        PushAuth {
            inner: Arc::new(Inner {
                config,
                http,
                validation,
                keys: RwLock::new(KeyCache::default()),
                fetching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Verifies the push token of a request, fetching the signing keys if needed.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<PushClaims, AuthError> {
        self.verify_at(headers, Instant::now()).await
    }

    /// [`PushAuth::verify`] with the cache's notion of now passed in, so tests can let time pass.
    async fn verify_at(&self, headers: &HeaderMap, now: Instant) -> Result<PushClaims, AuthError> {
        let token = bearer_token(headers)?;
        let kid = signing_kid(token)?;
        let key = self.key_for(&kid, now).await?;
        let data =
            jsonwebtoken::decode::<RawClaims>(token, &key, &self.inner.validation).map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature { kid: clip(&kid) },
                ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                    AuthError::UnsupportedAlgorithm("an algorithm other than RS256".to_owned())
                }
                _ => AuthError::Malformed(format!("{e}")),
            })?;
        self.check_claims(data.claims, crate::clock::now_secs())
    }

    fn check_claims(&self, claims: RawClaims, now: u64) -> Result<PushClaims, AuthError> {
        let config = &self.inner.config;
        let leeway = CLOCK_LEEWAY.as_secs();
        if claims.exp.saturating_add(leeway) < now {
            return Err(AuthError::Expired { exp: claims.exp, now });
        }
        for (claim, at) in [("iat", Some(claims.iat)), ("nbf", claims.nbf)] {
            if let Some(at) = at.filter(|at| *at > now.saturating_add(leeway)) {
                return Err(AuthError::NotYetValid { claim, at, now });
            }
        }
        if !config.issuers.contains(&claims.iss) {
            return Err(AuthError::WrongIssuer {
                got: clip(&claims.iss),
                expected: config.issuers.clone(),
            });
        }
        // An empty configured audience would match a token with `"aud": ""`: it matches nothing.
        if config.audience.is_empty() || !claims.aud.contains(&config.audience) {
            return Err(AuthError::WrongAudience {
                got: clip(&claims.aud.to_string()),
                expected: config.audience.clone(),
            });
        }
        let email_verified = claims.email_verified.is_some_and(|v| v.is_true());
        if let Some(expected) = &config.service_account {
            match &claims.email {
                Some(email) if email == expected => {
                    if !email_verified {
                        return Err(AuthError::EmailNotVerified { email: clip(email) });
                    }
                }
                other => {
                    return Err(AuthError::WrongServiceAccount {
                        got: other.as_deref().map(clip),
                        expected: expected.clone(),
                    })
                }
            }
        }
        Ok(PushClaims {
            email: claims.email,
            email_verified,
            subject: claims.sub,
            issuer: claims.iss,
            issued_at: claims.iat,
            expires_at: claims.exp,
        })
    }

    /// The key `kid` names: from the cache, or after (at most) one fetch.
    async fn key_for(&self, kid: &str, now: Instant) -> Result<Arc<DecodingKey>, AuthError> {
        let seen = {
            let cache = self.inner.keys.read();
            if cache.is_fresh(now) {
                if let Some(key) = cache.keys.get(kid) {
                    return Ok(key.clone());
                }
            }
            cache.attempts
        };
        let _fetching = self.inner.fetching.lock().await;
        let cached = self.answer_from_cache(&self.inner.keys.read(), kid, seen, now);
        if let Some(answer) = cached {
            return answer;
        }
        let fetched = self.fetch().await;
        let mut cache = self.inner.keys.write();
        cache.attempts += 1;
        let error = match fetched {
            Ok((keys, max_age)) => {
                tracing::info!(url = %self.inner.config.jwks_url, keys = keys.len(), ?max_age, "fetched the push token keys");
                cache.keys = keys;
                cache.fresh_until = Some(now + max_age);
                None
            }
            Err(reason) => {
                tracing::warn!(url = %self.inner.config.jwks_url, %reason, "cannot fetch the push token keys");
                Some(reason)
            }
        };
        cache.last_attempt = Some(Attempt { at: now, error });
        self.answer_from_cache(&cache, kid, seen, now)
            .unwrap_or_else(|| Err(self.miss(&cache, kid)))
    }

    /// What the cache can say about `kid` without a new fetch; `None` when a fetch is due.
    fn answer_from_cache(
        &self,
        cache: &KeyCache,
        kid: &str,
        seen: u64,
        now: Instant,
    ) -> Option<Result<Arc<DecodingKey>, AuthError>> {
        let fresh = cache.is_fresh(now);
        if fresh {
            if let Some(key) = cache.keys.get(kid) {
                return Some(Ok(key.clone()));
            }
        }
        // Another request fetched while this one waited: its answer holds for this one too.
        let just_fetched = cache.attempts != seen;
        // The keys are fresh but lack `kid`: a rotation is possible, a flood of made-up kids too.
        let rate_limited = fresh && cache.attempted_within(now, MIN_REFETCH_INTERVAL);
        let backing_off = cache.last_failure().is_some() && cache.attempted_within(now, FAILED_FETCH_BACKOFF);
        (just_fetched || rate_limited || backing_off).then(|| Err(self.miss(cache, kid)))
    }

    fn miss(&self, cache: &KeyCache, kid: &str) -> AuthError {
        let url = self.inner.config.jwks_url.clone();
        match cache.last_failure() {
            // Without the current keys, an unknown kid may well be a new key: worth a retry.
            Some(reason) => AuthError::JwksUnavailable {
                url,
                reason: reason.to_owned(),
            },
            None => AuthError::UnknownKey {
                kid: clip(kid),
                jwks_url: url,
            },
        }
    }

    /// One GET of the JWKS endpoint: its usable keys and how long to keep them.
    async fn fetch(&self) -> Result<(HashMap<String, Arc<DecodingKey>>, Duration), String> {
        let response = self
            .inner
            .http
            .get(&self.inner.config.jwks_url)
            .timeout(JWKS_FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let max_age = freshness(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the body: {}", error_chain(&e)))?;
        let keys = parse_jwks(&body)?;
        if keys.is_empty() {
            return Err("the key set has no RS256 signing key".to_owned());
        }
        Ok((keys, max_age))
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "the request has more than one Authorization header".to_owned(),
        ));
    }
    let not_bearer = || AuthError::Malformed("the Authorization header is not `Bearer <token>`".to_owned());
    let value = value.to_str().map_err(|_| not_bearer())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(not_bearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(not_bearer());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed(format!(
            "it is {} bytes long, more than a push token's {MAX_TOKEN_LEN}",
            token.len()
        )));
    }
    Ok(token)
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

/// The `kid` of an RS256 token, read before any key is looked up. jsonwebtoken parses the header
/// again when it verifies the signature; reading it here too lets `alg: none` be named as such.
fn signing_kid(token: &str) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("it is not three dot-separated parts".to_owned()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| AuthError::Malformed(format!("its header is not base64url: {e}")))?;
    let header: RawHeader = serde_json::from_slice(&bytes)
        .map_err(|e| AuthError::Malformed(format!("its header is not a JWT header: {e}")))?;
    if header.alg != "RS256" {
        return Err(AuthError::UnsupportedAlgorithm(clip(&header.alg)));
    }
    header
        .kid
        .ok_or_else(|| AuthError::Malformed("its header has no `kid`".to_owned()))
}

/// The claims as Google writes them.
#[derive(Deserialize)]
struct RawClaims {
    iss: String,
    aud: Audience,
    exp: u64,
    iat: u64,
    nbf: Option<u64>,
    sub: Option<String>,
    email: Option<String>,
    email_verified: Option<Flag>,
}

/// `aud` may be one string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audience::One(a) => f.write_str(a),
            Audience::Many(all) => f.write_str(&all.join(", ")),
        }
    }
}

/// Some Google tokens spell `email_verified` as the string `"true"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_true(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(s) => s == "true",
        }
    }
}

/// A JWKS document, each entry read on its own: with `JwkSet`, one entry that is not a JWK would
/// discard every key.
#[derive(Deserialize)]
struct JwkSetBody {
    keys: Vec<serde_json::Value>,
}

/// The RS256 signing keys of a JWKS document, by `kid`. Other keys (other types, encryption keys,
/// keys without a `kid`, unreadable entries) are skipped: they cannot verify a push token.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    let set: JwkSetBody = serde_json::from_slice(body).map_err(|e| format!("the body is not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for entry in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry) else {
            tracing::debug!("skipping an unreadable JWKS entry");
            continue;
        };
        let common = &jwk.common;
        let usable = matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
            && common.key_algorithm.is_none_or(|a| a == KeyAlgorithm::RS256)
            && common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature);
        let (true, Some(kid)) = (usable, &common.key_id) else {
            tracing::debug!(kid = ?common.key_id, "skipping a JWKS key that cannot verify RS256");
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), Arc::new(key));
            }
            Err(err) => tracing::warn!(%kid, error = %err, "skipping an unreadable JWKS key"),
        }
    }
    Ok(keys)
}

/// How long a JWKS response may be kept: `max-age` less `Age`, within
/// [`MIN_REFETCH_INTERVAL`]..=[`MAX_JWKS_MAX_AGE`]; [`DEFAULT_JWKS_MAX_AGE`] without `max-age`.
fn freshness(headers: &HeaderMap) -> Duration {
    let max_age = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.split_once('=')?;
            name.trim().eq_ignore_ascii_case("max-age").then_some(())?;
            value.trim().trim_matches('"').parse::<u64>().ok()
        });
    let Some(max_age) = max_age else {
        return DEFAULT_JWKS_MAX_AGE;
    };
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age)).clamp(MIN_REFETCH_INTERVAL, MAX_JWKS_MAX_AGE)
}

/// `s`, cut to [`MAX_QUOTED`] characters: strings from a token are quoted, never in full.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::HeaderValue;
    use axum::response::{IntoResponse, Response};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};

    const KEY1: &str = include_str!("../../tests/fixtures/jwt/key1.pem");
    const KEY2: &str = include_str!("../../tests/fixtures/jwt/key2.pem");
    const JWKS: &str = include_str!("../../tests/fixtures/jwt/jwks.json");
    const JWKS_ROTATED: &str = include_str!("../../tests/fixtures/jwt/jwks-rotated.json");
    const KID1: &str = "test-key-1";
    const KID2: &str = "test-key-2";
    const AUDIENCE: &str = "https://all-docs.example.run.app/work";
    const SERVICE_ACCOUNT: &str = "push@all-docs-test.iam.gserviceaccount.com";

    /// A local JWKS endpoint that counts its requests.
    struct JwksServer {
        url: String,
        body: parking_lot::Mutex<String>,
        status: parking_lot::Mutex<StatusCode>,
        cache_control: Option<&'static str>,
        delay: Duration,
        hits: AtomicUsize,
    }

    impl JwksServer {
        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    async fn spawn_jwks(cache_control: Option<&'static str>, delay: Duration) -> Arc<JwksServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = Arc::new(JwksServer {
            url: format!("http://{addr}/oauth2/v3/certs"),
            body: parking_lot::Mutex::new(JWKS.to_owned()),
            status: parking_lot::Mutex::new(StatusCode::OK),
            cache_control,
            delay,
            hits: AtomicUsize::new(0),
        });
        async fn certs(State(s): State<Arc<JwksServer>>) -> Response {
            s.hits.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(s.delay).await;
            let mut response = (*s.status.lock(), s.body.lock().clone()).into_response();
            if let Some(cc) = s.cache_control {
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static(cc));
            }
            response
        }
        let app = axum::Router::new()
            .route("/oauth2/v3/certs", axum::routing::get(certs))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    fn config_for(jwks_url: &str) -> PushAuthConfig {
        PushAuthConfig {
            audience: AUDIENCE.to_owned(),
            service_account: Some(SERVICE_ACCOUNT.to_owned()),
            jwks_url: jwks_url.to_owned(),
            issuers: vec![
                "https://accounts.google.com".to_owned(),
                "accounts.google.com".to_owned(),
            ],
        }
    }

    fn auth_with(config: PushAuthConfig) -> PushAuth {
        let http = reqwest::Client::builder().no_proxy().build().expect("http client");
        PushAuth::new(config, http)
    }

    fn auth_for(jwks_url: &str) -> PushAuth {
        auth_with(config_for(jwks_url))
    }

    /// Claims like Google's for a push subscription, with `changes` applied (`null` removes).
    fn claims(changes: Value) -> Value {
        let now = crate::clock::now_secs();
        let mut claims = json!({
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "azp": "112233445566778899",
            "sub": "112233445566778899",
            "email": SERVICE_ACCOUNT,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        });
        if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
            for (name, value) in changes {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    fn sign(pem: &str, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("fixture key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers
    }

    fn valid_request() -> HeaderMap {
        bearer(&sign(KEY1, KID1, &claims(json!({}))))
    }

    /// A token with any header and no signature.
    fn unsigned(header: Value, claims: &Value) -> String {
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", b64(&header), b64(claims))
    }

    /// Verifies, asserting the refusal's status, and returns the error.
    async fn refused(auth: &PushAuth, headers: &HeaderMap, status: StatusCode) -> AuthError {
        let e = auth.verify(headers).await.expect_err("must be refused");
        assert_eq!(e.status(), status, "{e}");
        e
    }

    #[tokio::test]
    async fn a_valid_token_is_accepted_with_its_email() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let claims = auth.verify(&valid_request()).await.expect("valid token");
        assert_eq!(claims.email.as_deref(), Some(SERVICE_ACCOUNT));
        assert!(claims.email_verified);
        assert_eq!(claims.issuer, "https://accounts.google.com");
        assert_eq!(jwks.hits(), 1);
    }

    #[tokio::test]
    async fn the_short_issuer_spelling_and_a_string_email_verified_are_accepted() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let token = sign(
            KEY1,
            KID1,
            &claims(json!({"iss": "accounts.google.com", "email_verified": "true"})),
        );
        let claims = auth.verify(&bearer(&token)).await.expect("valid token");
        assert_eq!(claims.issuer, "accounts.google.com");
    }

    #[tokio::test]
    async fn keys_are_cached_between_verifications() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        auth.verify(&valid_request()).await.expect("first");
        auth.clone()
            .verify(&valid_request())
            .await
            .expect("second, through a clone");
        assert_eq!(jwks.hits(), 1);
    }

    #[tokio::test]
    async fn keys_are_refetched_when_their_max_age_has_passed() {
        let jwks = spawn_jwks(Some("public, max-age=600, must-revalidate"), Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let start = Instant::now();
        auth.verify_at(&valid_request(), start).await.expect("first");
        auth.verify_at(&valid_request(), start + Duration::from_secs(590))
            .await
            .expect("cached");
        assert_eq!(jwks.hits(), 1);
        auth.verify_at(&valid_request(), start + Duration::from_secs(610))
            .await
            .expect("refetched");
        assert_eq!(jwks.hits(), 2);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let jwks = spawn_jwks(None, Duration::from_millis(200)).await;
        let auth = auth_for(&jwks.url);
        let requests: Vec<HeaderMap> = (0..8).map(|_| valid_request()).collect();
        let results = futures_util::future::join_all(requests.iter().map(|h| auth.verify(h))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(jwks.hits(), 1);
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_beyond_the_leeway() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let now = crate::clock::now_secs();
        let late = sign(KEY1, KID1, &claims(json!({"iat": now - 3700, "exp": now - 30})));
        auth.verify(&bearer(&late)).await.expect("within the leeway");
        let expired = sign(KEY1, KID1, &claims(json!({"iat": now - 3800, "exp": now - 200})));
        let e = refused(&auth, &bearer(&expired), StatusCode::UNAUTHORIZED).await;
        assert!(matches!(e, AuthError::Expired { exp, .. } if exp == now - 200), "{e:?}");
    }

    #[tokio::test]
    async fn a_token_from_the_future_is_refused() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let now = crate::clock::now_secs();
        let token = sign(KEY1, KID1, &claims(json!({"iat": now + 600, "exp": now + 4200})));
        let e = refused(&auth, &bearer(&token), StatusCode::UNAUTHORIZED).await;
        assert!(matches!(e, AuthError::NotYetValid { claim: "iat", .. }), "{e:?}");
        let token = sign(KEY1, KID1, &claims(json!({"nbf": now + 600})));
        let e = refused(&auth, &bearer(&token), StatusCode::UNAUTHORIZED).await;
        assert!(matches!(e, AuthError::NotYetValid { claim: "nbf", .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_refused() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let token = sign(KEY1, KID1, &claims(json!({"aud": "https://elsewhere.example"})));
        let e = refused(&auth, &bearer(&token), StatusCode::UNAUTHORIZED).await;
        assert!(matches!(e, AuthError::WrongAudience { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("push token audience `https://elsewhere.example` is not the configured `{AUDIENCE}`")
        );
        let token = sign(KEY1, KID1, &claims(json!({"aud": null})));
        let e = refused(&auth, &bearer(&token), StatusCode::UNAUTHORIZED).await;
        assert!(matches!(e, AuthError::Malformed(_)), "no aud: {e:?}");
    }

    #[tokio::test]
    async fn a_token_from_another_issuer_is_refused() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let token = sign(KEY1, KID1, &claims(json!({"iss": "https://evil.example"})));
        let e = refused(&auth, &bearer(&token), StatusCode::UNAUTHORIZED).await;
        assert!(
            matches!(&e, AuthError::WrongIssuer { got, .. } if got == "https://evil.example"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_token_signed_with_another_key_is_refused() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let forged = sign(KEY2, KID1, &claims(json!({})));
        let e = refused(&auth, &bearer(&forged), StatusCode::UNAUTHORIZED).await;
        assert_eq!(e, AuthError::BadSignature { kid: KID1.to_owned() });
    }

    #[tokio::test]
    async fn unsigned_and_hmac_tokens_are_refused_without_a_fetch() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let none = unsigned(json!({"alg": "none", "typ": "JWT", "kid": KID1}), &claims(json!({})));
        let e = refused(&auth, &bearer(&none), StatusCode::UNAUTHORIZED).await;
        assert_eq!(e, AuthError::UnsupportedAlgorithm("none".to_owned()));
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID1.to_owned());
        let hmac = jsonwebtoken::encode(&header, &claims(json!({})), &EncodingKey::from_secret(JWKS.as_bytes()))
            .expect("sign");
        let e = refused(&auth, &bearer(&hmac), StatusCode::UNAUTHORIZED).await;
        assert_eq!(e, AuthError::UnsupportedAlgorithm("HS256".to_owned()));
        assert_eq!(jwks.hits(), 0);
    }

    #[tokio::test]
    async fn a_request_without_a_token_is_refused() {
        let auth = auth_for("http://127.0.0.1:9/unused");
        let e = refused(&auth, &HeaderMap::new(), StatusCode::UNAUTHORIZED).await;
        assert_eq!(e, AuthError::MissingToken);
    }

    #[tokio::test]
    async fn malformed_authorization_headers_are_refused_without_echoing_them() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let secret = "s3cr3tS3cr3t";
        let no_kid = unsigned(json!({"alg": "RS256"}), &claims(json!({})));
        let valid = sign(KEY1, KID1, &claims(json!({})));
        let values = [
            format!("Basic {valid}"),
            format!("Token {valid}"),
            format!("Basic {secret}"),
            "Bearer".to_owned(),
            "Bearer    ".to_owned(),
            format!("Bearer {secret}"),
            format!("Bearer {secret}.{secret}.{secret}"),
            format!("Bearer {secret}.{secret}.{secret}.{secret}"),
            format!("Bearer {}.{secret}.{secret}", "e30"), // `{}`: no alg
            format!("Bearer {no_kid}"),
            format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1)),
        ];
        for value in values {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).expect("header"));
            let e = refused(&auth, &headers, StatusCode::UNAUTHORIZED).await;
            assert!(matches!(e, AuthError::Malformed(_)), "{value}: {e:?}");
            assert!(!e.to_string().contains(secret), "{value}: {e}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("header"),
        );
        let e = refused(&auth, &headers, StatusCode::UNAUTHORIZED).await;
        assert!(matches!(e, AuthError::Malformed(_)), "{e:?}");
        let mut headers = valid_request();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer x.y.z"));
        let e = refused(&auth, &headers, StatusCode::UNAUTHORIZED).await;
        assert!(matches!(e, AuthError::Malformed(_)), "two headers: {e:?}");
        assert_eq!(jwks.hits(), 0);
    }

    #[tokio::test]
    async fn a_token_of_another_service_account_is_forbidden() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let other = "intruder@other-project.iam.gserviceaccount.com";
        let token = sign(KEY1, KID1, &claims(json!({"email": other})));
        let e = refused(&auth, &bearer(&token), StatusCode::FORBIDDEN).await;
        assert_eq!(
            e,
            AuthError::WrongServiceAccount {
                got: Some(other.to_owned()),
                expected: SERVICE_ACCOUNT.to_owned()
            }
        );
        let token = sign(KEY1, KID1, &claims(json!({"email": null})));
        let e = refused(&auth, &bearer(&token), StatusCode::FORBIDDEN).await;
        assert!(matches!(e, AuthError::WrongServiceAccount { got: None, .. }), "{e:?}");
        let token = sign(KEY1, KID1, &claims(json!({"email_verified": false})));
        let e = refused(&auth, &bearer(&token), StatusCode::FORBIDDEN).await;
        assert!(matches!(e, AuthError::EmailNotVerified { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn without_a_configured_service_account_any_sender_is_accepted() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_with(PushAuthConfig {
            service_account: None,
            ..config_for(&jwks.url)
        });
        let token = sign(
            KEY1,
            KID1,
            &claims(json!({"email": "anyone@example.com", "email_verified": false})),
        );
        let claims = auth.verify(&bearer(&token)).await.expect("accepted");
        assert_eq!(claims.email.as_deref(), Some("anyone@example.com"));
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_once_then_is_rate_limited() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let start = Instant::now();
        auth.verify_at(&valid_request(), start).await.expect("loads the keys");
        assert_eq!(jwks.hits(), 1);

        // Right after a fetch, a made-up kid is refused without asking again.
        let bogus = bearer(&sign(KEY1, "bogus-0", &claims(json!({}))));
        let e = auth
            .verify_at(&bogus, start + Duration::from_secs(1))
            .await
            .expect_err("unknown");
        assert!(matches!(e, AuthError::UnknownKey { .. }), "{e:?}");
        assert_eq!(jwks.hits(), 1);

        let later = start + MIN_REFETCH_INTERVAL + Duration::from_secs(1);
        let bogus = bearer(&sign(KEY1, "bogus-1", &claims(json!({}))));
        let e = auth.verify_at(&bogus, later).await.expect_err("unknown");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            e,
            AuthError::UnknownKey {
                kid: "bogus-1".to_owned(),
                jwks_url: jwks.url.clone()
            }
        );
        assert_eq!(jwks.hits(), 2, "an unknown kid refetches");
        let bogus = bearer(&sign(KEY1, "bogus-2", &claims(json!({}))));
        let e = auth
            .verify_at(&bogus, later + Duration::from_secs(1))
            .await
            .expect_err("unknown");
        assert!(matches!(e, AuthError::UnknownKey { .. }), "{e:?}");
        assert_eq!(jwks.hits(), 2, "a second unknown kid right after does not");
        auth.verify_at(&valid_request(), later)
            .await
            .expect("known keys still work");
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_by_refetching() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        let auth = auth_for(&jwks.url);
        let start = Instant::now();
        auth.verify_at(&valid_request(), start).await.expect("loads the keys");
        *jwks.body.lock() = JWKS_ROTATED.to_owned();
        let rotated = bearer(&sign(KEY2, KID2, &claims(json!({}))));
        let claims = auth
            .verify_at(&rotated, start + MIN_REFETCH_INTERVAL + Duration::from_secs(1))
            .await
            .expect("the new key is fetched");
        assert_eq!(claims.email.as_deref(), Some(SERVICE_ACCOUNT));
        assert_eq!(jwks.hits(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_jwks_endpoint_is_a_503() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/certs", closed.local_addr().expect("addr"));
        drop(closed);
        let auth = auth_for(&url);
        let e = refused(&auth, &valid_request(), StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(
            matches!(&e, AuthError::JwksUnavailable { url: u, .. } if *u == url),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_jwks_endpoint_is_a_503_and_is_not_hammered() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        *jwks.status.lock() = StatusCode::INTERNAL_SERVER_ERROR;
        let auth = auth_for(&jwks.url);
        let start = Instant::now();
        let e = auth.verify_at(&valid_request(), start).await.expect_err("down");
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.to_string().contains("HTTP 500"), "{e}");
        let e = auth
            .verify_at(&valid_request(), start + Duration::from_secs(1))
            .await
            .expect_err("down");
        assert!(matches!(e, AuthError::JwksUnavailable { .. }), "{e:?}");
        assert_eq!(jwks.hits(), 1, "backing off");

        *jwks.status.lock() = StatusCode::OK;
        let later = start + FAILED_FETCH_BACKOFF + Duration::from_secs(1);
        auth.verify_at(&valid_request(), later).await.expect("back up");
        assert_eq!(jwks.hits(), 2);
    }

    #[tokio::test]
    async fn a_jwks_without_usable_keys_is_a_503() {
        let jwks = spawn_jwks(None, Duration::ZERO).await;
        *jwks.body.lock() = "<html>not a key set</html>".to_owned();
        let auth = auth_for(&jwks.url);
        let e = refused(&auth, &valid_request(), StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(e.to_string().contains("not a JWKS"), "{e}");
    }

    #[test]
    fn only_rs256_signing_keys_are_taken_from_a_jwks() {
        let set: Value = serde_json::from_str(JWKS).expect("fixture");
        let rsa = &set["keys"][0];
        let with = |changes: Value| {
            let mut key = rsa.clone();
            if let (Some(key), Some(changes)) = (key.as_object_mut(), changes.as_object()) {
                for (name, value) in changes {
                    if value.is_null() {
                        key.remove(name);
                    } else {
                        key.insert(name.clone(), value.clone());
                    }
                }
            }
            key
        };
        let body = json!({"keys": [
            rsa,
            with(json!({"kid": "no-alg", "alg": null, "use": null})),
            with(json!({"kid": "rs512", "alg": "RS512"})),
            with(json!({"kid": "enc", "use": "enc"})),
            with(json!({"kid": null})),
            with(json!({"kid": "bad-n", "n": "!!!"})),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": 5},
            "junk",
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).expect("parses");
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["no-alg", KID1]);
        assert!(parse_jwks(b"{}").is_err());
    }

    #[test]
    fn the_cache_lifetime_follows_cache_control() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, HeaderValue::from_static(value));
            }
            h
        };
        let secs = Duration::from_secs;
        let google = headers(&[("cache-control", "public, max-age=19193, must-revalidate, no-transform")]);
        assert_eq!(freshness(&google), secs(19193));
        assert_eq!(
            freshness(&headers(&[("cache-control", "max-age=600"), ("age", "100")])),
            secs(500)
        );
        assert_eq!(freshness(&headers(&[])), DEFAULT_JWKS_MAX_AGE);
        assert_eq!(
            freshness(&headers(&[("cache-control", "no-cache")])),
            DEFAULT_JWKS_MAX_AGE
        );
        assert_eq!(
            freshness(&headers(&[("cache-control", "max-age=abc")])),
            DEFAULT_JWKS_MAX_AGE
        );
        assert_eq!(
            freshness(&headers(&[("cache-control", "max-age=0")])),
            MIN_REFETCH_INTERVAL
        );
        assert_eq!(
            freshness(&headers(&[("cache-control", "max-age=99999999")])),
            MAX_JWKS_MAX_AGE
        );
    }

    #[test]
    fn statuses_tell_pubsub_what_to_do() {
        let unauthorized = [
            AuthError::MissingToken,
            AuthError::Malformed("x".into()),
            AuthError::UnsupportedAlgorithm("none".into()),
            AuthError::UnknownKey {
                kid: "k".into(),
                jwks_url: "u".into(),
            },
            AuthError::BadSignature { kid: "k".into() },
            AuthError::Expired { exp: 1, now: 2 },
            AuthError::NotYetValid {
                claim: "iat",
                at: 2,
                now: 1,
            },
            AuthError::WrongIssuer {
                got: "i".into(),
                expected: vec![],
            },
            AuthError::WrongAudience {
                got: "a".into(),
                expected: "b".into(),
            },
        ];
        for e in unauthorized {
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{e}");
        }
        let forbidden = AuthError::EmailNotVerified { email: "e".into() };
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        let down = AuthError::JwksUnavailable {
            url: "u".into(),
            reason: "r".into(),
        };
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn quoted_strings_are_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_QUOTED * 3);
        assert_eq!(clip(&long).chars().count(), MAX_QUOTED + 1);
    }
}
