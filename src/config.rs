//! Typed configuration shared by the commands: origins, store, client limits.
//!
//! Built from clap (every flag also has an `ALL_DOCS_*` variable). The registry origin falls
//! back to the `registry` setting of the user's npm config (`npm_config_registry`, then
//! `./.npmrc`, then `~/.npmrc`); nothing else is built in, and a missing origin is an error that
//! says how to set it.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::registry::client::ClientConfig;
use crate::registry::governor::GovernorConfig;
use crate::registry::origin::Origin;

/// The replica and the registries it holds: the flags of every command that reads or writes
/// the replica.
#[derive(Debug, Clone, clap::Args)]
pub struct Replica {
    /// The replica: a folder, or a bucket as gs://BUCKET[/PREFIX] (STORAGE_EMULATOR_HOST points
    /// it at an emulator).
    #[arg(
        long,
        env = "ALL_DOCS_STORE",
        default_value = "./replica",
        value_name = "DIR|gs://BUCKET[/PREFIX]"
    )]
    pub store: String,
    /// Replication origin (serves `/`, `_all_docs`, `_changes`).
    #[arg(long, env = "ALL_DOCS_REPLICATE_ORIGIN", value_name = "URL")]
    pub replicate_origin: Option<String>,
    /// Registry origin (serves package documents) [default: `registry` of your npm config].
    #[arg(long, env = "ALL_DOCS_REGISTRY_ORIGIN", value_name = "URL")]
    pub registry_origin: Option<String>,
}

/// The flags of every command that talks to the upstream: the replica's, and the client's.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    #[command(flatten)]
    pub replica: Replica,
    /// Requests in flight at most.
    #[arg(long, env = "ALL_DOCS_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Upper bound on requests per second to each origin [default: found by probing].
    #[arg(long, env = "ALL_DOCS_MAX_RPS", value_name = "RPS")]
    pub max_rps: Option<f64>,
    /// Seconds an answer may go silent before the request is abandoned and tried again.
    #[arg(long, env = "ALL_DOCS_READ_TIMEOUT", default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_timeout: u64,
}

/// A command that talks to the upstream reads and writes the replica too.
impl std::ops::Deref for Global {
    type Target = Replica;
    fn deref(&self) -> &Replica {
        &self.replica
    }
}

impl Replica {
    pub fn registry(&self) -> Result<Origin, Error> {
        let (url, from) = match &self.registry_origin {
            Some(u) => (u.clone(), "--registry-origin"),
            None => match npm_registry() {
                Some((u, from)) => (u, from),
                None => {
                    return Err(Error::usage(
                        "no registry origin: pass --registry-origin URL, set ALL_DOCS_REGISTRY_ORIGIN, or set `registry` in your npm config",
                    ))
                }
            },
        };
        Origin::parse(&url).map_err(|e| Error::usage(format!("{from}: {e}")))
    }

    pub fn replicate(&self) -> Result<Origin, Error> {
        let url = self.replicate_origin.as_deref().ok_or_else(|| {
            Error::usage("no replication origin: pass --replicate-origin URL or set ALL_DOCS_REPLICATE_ORIGIN")
        })?;
        Origin::parse(url).map_err(|e| Error::usage(format!("--replicate-origin: {e}")))
    }
}

impl Global {
    /// The upstream client's settings from these flags.
    pub fn client_config(&self) -> Result<ClientConfig, Error> {
        Ok(ClientConfig {
            concurrency: self.concurrency as usize,
            read_timeout: std::time::Duration::from_secs(self.read_timeout),
            governor: GovernorConfig {
                max_rps: self.max_rps()?,
                ..GovernorConfig::default()
            },
            ..ClientConfig::default()
        })
    }

    pub fn max_rps(&self) -> Result<Option<f64>, Error> {
        match self.max_rps {
            Some(r) if !(r > 0.0 && r.is_finite()) => {
                Err(Error::usage(format!("--max-rps must be a positive number, got {r}")))
            }
            other => Ok(other),
        }
    }
}

/// The `registry` of the user's npm config, and where it came from.
fn npm_registry() -> Option<(String, &'static str)> {
    for var in ["npm_config_registry", "NPM_CONFIG_REGISTRY"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return Some((v.trim().to_owned(), "npm_config_registry"));
            }
        }
    }
    if let Some(v) = registry_in(Path::new(".npmrc")) {
        return Some((v, "./.npmrc"));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    registry_in(&home.join(".npmrc")).map(|v| (v, "~/.npmrc"))
}

/// `registry=URL` in an npmrc file (ini: `key = value`, `;` and `#` comments).
pub fn registry_in(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_npmrc_registry(&text)
}

pub fn parse_npmrc_registry(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with(';') && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "registry")
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_registry_from_npmrc_text() {
        assert_eq!(
            parse_npmrc_registry("; c\nregistry = http://127.0.0.1:9/\n"),
            Some("http://127.0.0.1:9/".into())
        );
        assert_eq!(parse_npmrc_registry("@s:registry=http://x/\n"), None);
        assert_eq!(parse_npmrc_registry("# registry=http://x/"), None);
    }
}
