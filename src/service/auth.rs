//! Push authentication: verifying the Google-signed OIDC token of every push request.
//!
//! PLACEHOLDER written by the lead so the crate compiles while the real verifier is built: it
//! refuses every request. Replace the whole file (keep the public names).

use axum::http::{HeaderMap, StatusCode};

#[derive(Debug, Clone)]
pub struct PushAuthConfig {
    pub audience: String,
    pub service_account: Option<String>,
    pub jwks_url: String,
    pub issuers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PushClaims {
    pub email: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("push authentication is not implemented yet")]
    Unimplemented,
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
}

#[derive(Clone)]
pub struct PushAuth {
    _config: PushAuthConfig,
}

impl PushAuth {
    pub fn new(config: PushAuthConfig, _http: reqwest::Client) -> PushAuth {
        PushAuth { _config: config }
    }

    pub async fn verify(&self, _headers: &HeaderMap) -> Result<PushClaims, AuthError> {
        Err(AuthError::Unimplemented)
    }
}
