//! What a benchmark run reports: each scenario's [`Outcome`], the summary table printed to
//! stdout, and `BENCHMARKS.md` with the machine and commit it ran on.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::BenchArgs;
use crate::error::Error;

/// One scenario's outcome.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub(super) id: u32,
    pub(super) title: &'static str,
    pub(super) figures: Vec<String>,
    pub(super) target: String,
    pub(super) met: Option<bool>,
    pub(super) notes: Vec<String>,
}

impl Outcome {
    pub(super) fn new(id: u32, title: &'static str, target: impl Into<String>) -> Outcome {
        Outcome {
            id,
            title,
            figures: Vec::new(),
            target: target.into(),
            met: None,
            notes: Vec::new(),
        }
    }

    pub(super) fn fig(&mut self, s: impl Into<String>) {
        self.figures.push(s.into());
    }
}

/// The summary: one row per scenario, whether its target was met.
pub(super) fn table(out: &[Outcome]) -> String {
    let mut t = String::from("| # | scenario | target | met |\n| --- | --- | --- | --- |\n");
    for o in out {
        let met = match o.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "n/a",
        };
        let _ = writeln!(t, "| {} | {} | {} | {met} |", o.id, o.title, o.target);
    }
    t
}

/// `BENCHMARKS.md`: the machine and commit, the table, then each scenario's figures.
pub(super) fn render(out: &[Outcome], args: &BenchArgs, took: Duration) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mode = if args.quick {
        "quick (smoke sizes; not figures to publish)"
    } else {
        "full"
    };
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Every figure below comes from one run of `all-docs bench{}` against `all-docs sim` on 127.0.0.1.\n",
        if args.quick { " --quick" } else { "" }
    );
    let _ = writeln!(s, "- commit: `{commit}`");
    let _ = writeln!(s, "- machine: {cores} cores ({cpu}), {mem} memory");
    let _ = writeln!(s, "- mode: {mode}; the run took {:.0} s", took.as_secs_f64());
    let _ = writeln!(
        s,
        "- command: `cargo run --release -- bench{}`\n",
        if args.quick { " --quick" } else { "" }
    );
    s.push_str(&table(out));
    for o in out {
        let _ = writeln!(s, "\n## {}. {}\n\nTarget: {}\n", o.id, o.title, o.target);
        for f in &o.figures {
            let _ = writeln!(s, "- {f}");
        }
        for n in &o.notes {
            let _ = writeln!(s, "\nNote: {n}");
        }
    }
    s
}

/// Writes the report through a temporary file, so an interrupted run leaves the old one.
pub(super) fn write_report(path: &Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("md.tmp");
    let io = |e| Error::Io {
        what: format!("writing `{}`", path.display()),
        source: e,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
