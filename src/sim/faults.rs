//! Injected faults (`--faults status5xx=0.05,reset=0.02,...`), deterministic in the seed.
//!
//! Each request is identified by a key (route and target) and the number of times that key was
//! requested before; the fault, if any, is a hash of `(seed, key, attempt)`. The same sequence of
//! requests therefore meets the same faults on every run, whatever the timing, and a retry is a
//! fresh draw, so a client that retries eventually gets through.

use std::fmt;
use std::str::FromStr;

use super::rng::hash_parts;

/// The kinds of fault, in the order they are drawn.
pub const KINDS: [&str; 6] = ["status5xx", "reset", "truncate", "stall", "flap404", "badjson"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500, 502 or 503.
    Status(u16),
    /// Close the connection without an answer.
    Reset,
    /// Announce the full length, send part of the body, close.
    Truncate,
    /// Wait `--stall-secs` before answering.
    Stall,
    /// 404 for a package that exists.
    Flap404,
    /// 200 with a body that is not JSON.
    BadJson,
}

impl Fault {
    pub fn kind(self) -> &'static str {
        match self {
            Fault::Status(_) => KINDS[0],
            Fault::Reset => KINDS[1],
            Fault::Truncate => KINDS[2],
            Fault::Stall => KINDS[3],
            Fault::Flap404 => KINDS[4],
            Fault::BadJson => KINDS[5],
        }
    }
}

/// Probabilities per kind, in [`KINDS`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultSpec([f64; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    #[error("fault `{0}` is not `kind=probability` (kinds: {kinds})", kinds = KINDS.join(", "))]
    Syntax(String),
    #[error("unknown fault kind `{0}` (kinds: {kinds})", kinds = KINDS.join(", "))]
    UnknownKind(String),
    #[error("probability of `{0}` must be a number from 0 to 1, got `{1}`")]
    Probability(String, String),
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = FaultSpec::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (kind, p) = item
                .split_once('=')
                .ok_or_else(|| FaultSpecError::Syntax(item.to_owned()))?;
            let (kind, p) = (kind.trim(), p.trim());
            let idx = KINDS
                .iter()
                .position(|k| *k == kind)
                .ok_or_else(|| FaultSpecError::UnknownKind(kind.to_owned()))?;
            let prob: f64 = p
                .parse()
                .ok()
                .filter(|v: &f64| (0.0..=1.0).contains(v))
                .ok_or_else(|| FaultSpecError::Probability(kind.to_owned(), p.to_owned()))?;
            spec.0[idx] = prob;
        }
        Ok(spec)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = KINDS
            .iter()
            .zip(self.0)
            .filter(|(_, p)| *p > 0.0)
            .map(|(k, p)| format!("{k}={p}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl FaultSpec {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|p| *p == 0.0)
    }

    /// The fault for the `attempt`-th request of `key` (0-based), if any. `flap404` applies only
    /// where a 404 means something (`packument`).
    pub fn decide(&self, seed: u64, key: &str, attempt: u64, packument: bool) -> Option<Fault> {
        for (i, &p) in self.0.iter().enumerate() {
            if p == 0.0 || (i == 4 && !packument) {
                continue;
            }
            let h = hash_parts(seed, &[b"fault", &[i as u8], key.as_bytes(), &attempt.to_le_bytes()]);
            if ((h >> 11) as f64 / (1u64 << 53) as f64) < p {
                return Some(match i {
                    0 => Fault::Status([500, 502, 503][(h % 3) as usize]),
                    1 => Fault::Reset,
                    2 => Fault::Truncate,
                    3 => Fault::Stall,
                    4 => Fault::Flap404,
                    _ => Fault::BadJson,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_clearly() {
        let spec: FaultSpec = "status5xx=0.05, reset=0.02,truncate=1".parse().unwrap();
        assert_eq!(spec.to_string(), "status5xx=0.05,reset=0.02,truncate=1");
        assert_eq!(
            "bogus=0.1".parse::<FaultSpec>(),
            Err(FaultSpecError::UnknownKind("bogus".into()))
        );
        assert_eq!(
            "reset=2".parse::<FaultSpec>(),
            Err(FaultSpecError::Probability("reset".into(), "2".into()))
        );
        assert_eq!(
            "reset".parse::<FaultSpec>(),
            Err(FaultSpecError::Syntax("reset".into()))
        );
        assert!("".parse::<FaultSpec>().unwrap().is_empty());
    }

    #[test]
    fn draws_are_deterministic_and_near_the_probability() {
        let spec: FaultSpec = "status5xx=0.3".parse().unwrap();
        let draws: Vec<_> = (0..10_000).map(|a| spec.decide(7, "lodash", a, true)).collect();
        let again: Vec<_> = (0..10_000).map(|a| spec.decide(7, "lodash", a, true)).collect();
        assert_eq!(draws, again);
        let hits = draws.iter().filter(|d| d.is_some()).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
    }

    #[test]
    fn flap404_only_hits_packuments() {
        let spec: FaultSpec = "flap404=1".parse().unwrap();
        assert_eq!(spec.decide(1, "x", 0, true), Some(Fault::Flap404));
        assert_eq!(spec.decide(1, "x", 0, false), None);
    }
}
