//! The per-origin rate governor: when the next request may start, and how to react to answers.
//!
//! Pure decision logic: the caller passes the time (any monotonic clock as a `Duration` since
//! some start), so tests drive it without sleeping. The I/O side (`registry::client`) asks
//! [`Governor::acquire`] before every request and reports every answer back.
//!
//! - **Pacing.** A token bucket at the current rate with a small burst, so requests go out
//!   evenly instead of in bursts the upstream would punish.
//! - **Retry-After is global.** One `429` pauses every request to the origin until its
//!   `Retry-After` has passed: requests in flight and queued alike.
//! - **AIMD, remembering the ceiling.** With no `--max-rps`, the rate doubles every second
//!   (slow start) until the first `429`. A `429` sets the ceiling estimate to the rate actually
//!   achieved when it happened and drops the rate to [`BACKOFF_FACTOR`] of it; from there the
//!   rate climbs additively by [`PROBE_STEP`] of the ceiling per second. Once a second `429`
//!   comes at about the same rate, the ceiling is taken as confirmed and probing slows to one
//!   step every [`CONFIRMED_PROBE_EVERY`]: each `429` costs a whole `Retry-After` pause, so
//!   hugging a known ceiling beats rediscovering it. The 429s that answer requests already in
//!   flight count as one event, not many.
//! - With `--max-rps`, the rate never exceeds it; a 429 still pauses and backs off.
//! - **Retries.** Transient failures (5xx, resets, truncated bodies) are retried with
//!   exponential backoff and full jitter, up to `max_attempts`.

use std::time::Duration;

/// After a `429` at a confirmed ceiling, the rate drops to this share of it.
pub const BACKOFF_FACTOR: f64 = 0.95;
/// After a `429` while the ceiling is still being searched for, a deeper cut: the upstream's
/// burst allowance hides how far over the limit the rate was.
pub const SEARCH_BACKOFF_FACTOR: f64 = 0.75;
/// Additive increase per second, as a share of the ceiling estimate.
pub const PROBE_STEP: f64 = 0.005;
/// ...but at least this many requests per second per step. The estimate is the rate achieved
/// when a `429` came; when that came from a burst in a quiet moment (a push service whose
/// requests arrive unevenly, say 2 a second against a limit of 100), a step proportional to it
/// would take hours to climb back (0.01 request per second per second): this one takes a
/// minute or two.
pub const MIN_PROBE_STEP: f64 = 1.0;
/// Probing interval once the ceiling is confirmed.
pub const CONFIRMED_PROBE_EVERY: Duration = Duration::from_secs(30);
/// The rate never falls below this (requests per second).
pub const MIN_RPS: f64 = 0.5;

#[derive(Debug, Clone, PartialEq)]
pub struct GovernorConfig {
    /// A hard cap (requests per second), if the upstream's limit is known.
    pub max_rps: Option<f64>,
    /// Where the rate starts when no cap is given.
    pub start_rps: f64,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Pause used when a `429` carries no usable `Retry-After`.
    pub default_retry_after: Duration,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        GovernorConfig {
            max_rps: None,
            start_rps: 50.0,
            max_attempts: 8,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            default_retry_after: Duration::from_secs(30),
        }
    }
}

/// How a request ended, as far as the governor cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any answer that is not a rate limit or a transient failure (200, 304, 404, ...).
    Done,
    /// `429` (or `503` with `Retry-After`).
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, connection reset, timeout, truncated body.
    Transient,
}

/// What to do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again no earlier than this long from now (the global pause applies on top).
    After(Duration),
    /// Out of attempts.
    GiveUp,
}

#[derive(Debug, Clone)]
pub struct Governor {
    cfg: GovernorConfig,
    rate: f64,
    ceiling: Option<f64>,
    confirmed: bool,
    tokens: f64,
    last_refill: Duration,
    paused_until: Duration,
    /// No rate decrease before this time (one decrease per 429 episode).
    hold_until: Duration,
    /// Admissions in the current and the previous one-second window.
    window_start: Duration,
    window_count: u32,
    last_window_rate: f64,
    last_growth: Duration,
    rate_limited: u64,
}

impl Governor {
    pub fn new(cfg: GovernorConfig) -> Governor {
        let rate = cfg.max_rps.unwrap_or(cfg.start_rps).max(MIN_RPS);
        Governor {
            rate,
            ceiling: cfg.max_rps,
            confirmed: cfg.max_rps.is_some(),
            tokens: 1.0,
            last_refill: Duration::ZERO,
            paused_until: Duration::ZERO,
            hold_until: Duration::ZERO,
            window_start: Duration::ZERO,
            window_count: 0,
            last_window_rate: 0.0,
            last_growth: Duration::ZERO,
            rate_limited: 0,
            cfg,
        }
    }

    /// The current target rate (requests per second).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Until when every request waits because of a `Retry-After` (may be in the past).
    pub fn paused_until(&self) -> Duration {
        self.paused_until
    }

    pub fn rate_limited_count(&self) -> u64 {
        self.rate_limited
    }

    fn burst(&self) -> f64 {
        (self.rate / 10.0).clamp(1.0, 20.0)
    }

    /// Asks to start a request at `now`: `Ok` (a token is taken) or `Err(wait)` to ask again
    /// after `wait`.
    pub fn acquire(&mut self, now: Duration) -> Result<(), Duration> {
        if now < self.paused_until {
            return Err(self.paused_until - now);
        }
        self.grow(now);
        let elapsed = now.saturating_sub(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst());
        self.last_refill = self.last_refill.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.count_admission(now);
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    fn count_admission(&mut self, now: Duration) {
        let since = now.saturating_sub(self.window_start);
        if since >= Duration::from_secs(1) {
            self.last_window_rate = f64::from(self.window_count) / since.as_secs_f64();
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count += 1;
    }

    /// The rate actually achieved recently (admissions per second).
    fn achieved(&self, now: Duration) -> f64 {
        let since = now.saturating_sub(self.window_start).as_secs_f64();
        let current = if since >= 0.25 {
            f64::from(self.window_count) / since
        } else {
            0.0
        };
        current.max(self.last_window_rate)
    }

    /// Slow start before the first 429, additive probing after; capped by `max_rps`.
    fn grow(&mut self, now: Duration) {
        let step = if self.confirmed {
            CONFIRMED_PROBE_EVERY
        } else {
            Duration::from_secs(1)
        };
        while now >= self.last_growth + step {
            self.last_growth += step;
            if self.last_growth < self.hold_until {
                continue;
            }
            self.rate = match self.ceiling {
                None => self.rate * 2.0,
                Some(c) => self.rate + (PROBE_STEP * c).max(MIN_PROBE_STEP),
            };
            if let Some(cap) = self.cfg.max_rps {
                self.rate = self.rate.min(cap);
            }
        }
    }

    /// Reports how a request ended at `now`.
    pub fn report(&mut self, now: Duration, outcome: Outcome) {
        let Outcome::RateLimited { retry_after } = outcome else {
            return;
        };
        self.rate_limited += 1;
        let pause = retry_after.unwrap_or(self.cfg.default_retry_after);
        self.paused_until = self.paused_until.max(now + pause);
        // One request may go as soon as the pause ends; the rest are paced.
        self.tokens = 1.0;
        if now < self.hold_until {
            return; // Another answer from the same episode: already handled.
        }
        let achieved = self.achieved(now).min(self.rate);
        let basis = if achieved > 0.0 { achieved } else { self.rate };
        self.confirmed = self.cfg.max_rps.is_some() || self.ceiling.is_some_and(|c| basis >= 0.9 * c);
        self.ceiling = Some(basis);
        let factor = if self.confirmed {
            BACKOFF_FACTOR
        } else {
            SEARCH_BACKOFF_FACTOR
        };
        self.rate = (basis * factor).max(MIN_RPS);
        // Hold the new rate through the pause and one more second before probing again.
        self.hold_until = self.paused_until + Duration::from_secs(1);
        self.last_growth = self.hold_until;
        self.last_refill = self.paused_until;
    }

    /// Whether and when to retry after `attempt` (1-based) failed with `outcome`; `jitter` is
    /// a uniform draw from `[0, 1)`.
    pub fn retry(&self, attempt: u32, outcome: Outcome, jitter: f64) -> Retry {
        if attempt >= self.cfg.max_attempts {
            return Retry::GiveUp;
        }
        match outcome {
            // The pause is global already; add a little jitter so the queue does not stampede.
            Outcome::RateLimited { .. } => Retry::After(Duration::from_secs_f64(jitter * 0.2)),
            _ => {
                let exp = self.cfg.backoff_base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
                let cap = exp.min(self.cfg.backoff_max.as_secs_f64());
                Retry::After(Duration::from_secs_f64(cap * jitter))
            }
        }
    }
}

/// Parses `Retry-After`: delta seconds, or an HTTP date relative to `now_unix`.
pub fn parse_retry_after(value: &str, now_unix: u64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3_600)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now_unix).min(3_600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs a saturating client for `secs` against a perfect token-bucket upstream of `limit`
    /// requests per second; returns (successes, 429s).
    fn simulate(g: &mut Governor, limit: f64, secs: u64) -> (u64, u64) {
        let (mut ok, mut limited) = (0, 0);
        let mut upstream_tokens = limit;
        let mut upstream_last = Duration::ZERO;
        let mut penalty_until = Duration::ZERO;
        let mut now = Duration::ZERO;
        while now < Duration::from_secs(secs) {
            match g.acquire(now) {
                Err(wait) => now += wait.max(ms(1)),
                Ok(()) => {
                    let dt = (now - upstream_last).as_secs_f64();
                    upstream_tokens = (upstream_tokens + dt * limit).min(limit / 4.0);
                    upstream_last = now;
                    if now >= penalty_until && upstream_tokens >= 1.0 {
                        upstream_tokens -= 1.0;
                        ok += 1;
                        g.report(now, Outcome::Done);
                    } else {
                        if now >= penalty_until {
                            penalty_until = now + Duration::from_secs(2);
                        }
                        limited += 1;
                        g.report(
                            now,
                            Outcome::RateLimited {
                                retry_after: Some(Duration::from_secs(2)),
                            },
                        );
                    }
                }
            }
        }
        (ok, limited)
    }

    #[test]
    fn a_known_limit_is_never_exceeded() {
        let mut g = Governor::new(GovernorConfig {
            max_rps: Some(100.0),
            ..Default::default()
        });
        let (ok, limited) = simulate(&mut g, 200.0, 60);
        assert_eq!(limited, 0);
        assert!((5_900..=6_100).contains(&ok), "{ok}");
    }

    #[test]
    fn an_unknown_limit_is_found_and_hugged() {
        let mut g = Governor::new(GovernorConfig::default());
        let (ok, limited) = simulate(&mut g, 200.0, 300);
        let goodput = ok as f64 / 300.0 / 200.0;
        // Five minutes, discovery included (0.93 when written); the steady state is higher.
        assert!(goodput > 0.9, "goodput {goodput}");
        assert!(
            (limited as f64) < 0.01 * (ok + limited) as f64,
            "{limited} 429s of {}",
            ok + limited
        );
    }

    #[test]
    fn a_ceiling_estimated_in_a_quiet_moment_is_outgrown_within_a_minute() {
        let mut g = Governor::new(GovernorConfig::default());
        // Two requests a second for ten seconds, then a 429 (the upstream's burst allowance
        // was hit): the estimate is about 2 requests per second, far below the real limit.
        for i in 0..20 {
            assert!(g.acquire(ms(i * 500)).is_ok());
        }
        g.report(
            ms(10_000),
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
            },
        );
        assert!(g.rate() < 2.5, "{}", g.rate());
        // No more 429s: a minute after the hold, the rate has climbed far above the estimate
        // (at 0.5 % of it per second, it would still be under 3).
        for t in (13_000..=73_000).step_by(100) {
            let _ = g.acquire(ms(t));
        }
        assert!(g.rate() > 50.0, "{}", g.rate());
    }

    #[test]
    fn one_429_pauses_everything_for_retry_after() {
        let mut g = Governor::new(GovernorConfig {
            max_rps: Some(1_000.0),
            ..Default::default()
        });
        assert!(g.acquire(ms(0)).is_ok());
        g.report(
            ms(10),
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            },
        );
        assert_eq!(g.acquire(ms(20)), Err(Duration::from_secs(30) - ms(10)));
        assert!(g.acquire(ms(29_000)).is_err());
        assert!(g.acquire(ms(30_011)).is_ok());
        assert!(g.rate() < 1_000.0);
    }

    #[test]
    fn many_429s_of_one_episode_back_off_once() {
        let mut g = Governor::new(GovernorConfig {
            max_rps: Some(100.0),
            ..Default::default()
        });
        for i in 0..100 {
            let _ = g.acquire(ms(i * 10));
        }
        g.report(
            ms(1_000),
            Outcome::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
            },
        );
        let after_first = g.rate();
        for i in 0..50 {
            g.report(
                ms(1_001 + i),
                Outcome::RateLimited {
                    retry_after: Some(Duration::from_secs(2)),
                },
            );
        }
        assert_eq!(g.rate(), after_first);
        assert_eq!(g.rate_limited_count(), 51);
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_stop() {
        let g = Governor::new(GovernorConfig {
            max_attempts: 4,
            ..Default::default()
        });
        assert_eq!(g.retry(1, Outcome::Transient, 1.0), Retry::After(ms(250)));
        assert_eq!(g.retry(3, Outcome::Transient, 1.0), Retry::After(ms(1_000)));
        assert_eq!(g.retry(3, Outcome::Transient, 0.5), Retry::After(ms(500)));
        assert_eq!(g.retry(4, Outcome::Transient, 0.5), Retry::GiveUp);
    }

    #[test]
    fn retry_after_formats() {
        assert_eq!(parse_retry_after("30", 0), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
