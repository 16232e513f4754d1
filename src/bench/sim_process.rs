//! A simulator (`all-docs sim`) as a child process, one per scenario, so that its CPU never
//! counts as the replicator's.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::error::Error;

/// A simulator child process, killed on drop.
pub(super) struct SimProc {
    pub(super) url: String,
    child: Child,
    pub(super) http: reqwest::Client,
}

impl SimProc {
    pub(super) fn start(exe: &Path, args: &[String]) -> Result<SimProc, Error> {
        let mut child = Command::new(exe)
            .args(["sim", "--port", "0", "-q"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Io {
                what: "starting the simulator".into(),
                source: e,
            })?;
        let mut line = String::new();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Internal("simulator without stdout".into()))?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| Error::Io {
            what: "reading the simulator's first line".into(),
            source: e,
        })?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| Error::Internal(format!("simulator said {line:?}")))?
            .to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(SimProc { url, child, http })
    }

    /// `/-/sim/stats`: the simulator's counters.
    pub(super) async fn stats(&self) -> Result<Value, Error> {
        let r = self.http.get(format!("{}/-/sim/stats", self.url)).send().await;
        let r = r.map_err(|e| Error::Internal(format!("simulator stats: {e}")))?;
        r.json()
            .await
            .map_err(|e| Error::Internal(format!("simulator stats: {e}")))
    }

    /// `POST /-/sim/{what}`: `pause-changes`, `resume-changes`, `reset-stats`.
    pub(super) async fn post(&self, what: &str) -> Result<(), Error> {
        self.http
            .post(format!("{}/-/sim/{what}", self.url))
            .send()
            .await
            .map_err(|e| Error::Internal(format!("simulator {what}: {e}")))?;
        Ok(())
    }

    /// `GET /`: the database info, with `update_seq`.
    pub(super) async fn root(&self) -> Result<Value, Error> {
        let r = self
            .http
            .get(format!("{}/", self.url))
            .send()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        r.json().await.map_err(|e| Error::Internal(e.to_string()))
    }
}

impl Drop for SimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
