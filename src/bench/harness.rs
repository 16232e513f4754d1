//! The context a scenario runs in, and the `all-docs` commands it runs against a simulator.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::measure::{run_measured, Run};
use super::scenarios::Sizes;
use super::sim_process::SimProc;
use crate::error::Error;

/// What every scenario needs: the `all-docs` binary to run, the scratch folder for its
/// replicas, and the sizes of this run.
pub(super) struct Bench {
    pub(super) exe: PathBuf,
    pub(super) workdir: PathBuf,
    pub(super) sizes: &'static Sizes,
}

impl Bench {
    /// A fresh (removed) replica folder for `tag`.
    pub(super) fn store(&self, tag: &str) -> PathBuf {
        let dir = self.workdir.join(tag);
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// `all-docs replicate EXTRA` on `store` against `sim`.
    pub(super) fn replicate_cmd(&self, store: &Path, sim: &SimProc, extra: &[&str]) -> Command {
        self.command(store, sim, &[&["replicate"], extra].concat())
    }

    /// Runs `all-docs replicate` to the end, measured.
    pub(super) async fn replicate(
        &self,
        store: &Path,
        sim: &SimProc,
        extra: &[&str],
        more: &[&str],
    ) -> Result<Run, Error> {
        let mut cmd = self.replicate_cmd(store, sim, extra);
        cmd.args(more);
        run_measured(cmd, "replicate").await
    }

    pub(super) fn sim(&self, args: &[String]) -> Result<SimProc, Error> {
        SimProc::start(&self.exe, args)
    }

    /// `all-docs ARGS` on `store` against `sim`, quiet, its output discarded.
    pub(super) fn command(&self, store: &Path, sim: &SimProc, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .arg("--store")
            .arg(store)
            .args(["--replicate-origin", &sim.url, "--registry-origin", &sim.url, "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// What `all-docs cache stats` reports (JSON).
    pub(super) fn cache_stats(&self, store: &Path, sim: &SimProc) -> Result<Value, Error> {
        let out = self
            .command(store, sim, &["cache", "stats"])
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| Error::Io {
                what: "running all-docs cache stats".into(),
                source: e,
            })?;
        serde_json::from_slice(&out.stdout).map_err(|e| Error::Internal(format!("cache stats: {e}")))
    }
}
