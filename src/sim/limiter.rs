//! The upstream's rate limit: a token bucket, a penalty window after a `429`, and violations.
//!
//! Pure decision logic: the caller passes the current time, so tests drive it with a fake clock.
//!
//! Over the limit, a request gets `429` with `Retry-After` and a penalty window of that length
//! opens. A request inside the window is refused too and counts as a **violation** (the client
//! ignored `Retry-After`); with `extends` each violation restarts the window, as the real upstream
//! does. Requests already in flight when the first `429` went out cannot have seen it, so those
//! arriving within `grace` of it are refused but not counted.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    /// Sustained requests per second.
    pub rate: f64,
    /// Bucket size: how many requests may arrive at once after a quiet spell.
    pub burst: f64,
    pub retry_after: Duration,
    pub extends: bool,
    pub grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Answer `429`; `violation` when the client should have known better.
    Limit {
        violation: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Limiter {
    cfg: LimitConfig,
    tokens: f64,
    last: Duration,
    penalty_until: Option<Duration>,
    opened_at: Duration,
}

impl Limiter {
    pub fn new(cfg: LimitConfig) -> Limiter {
        Limiter {
            tokens: cfg.burst,
            cfg,
            last: Duration::ZERO,
            penalty_until: None,
            opened_at: Duration::ZERO,
        }
    }

    pub fn retry_after(&self) -> Duration {
        self.cfg.retry_after
    }

    /// Decides one request arriving at `now` (time since an arbitrary start, non-decreasing).
    pub fn check(&mut self, now: Duration) -> Decision {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.cfg.rate).min(self.cfg.burst);
        self.last = self.last.max(now);
        if let Some(until) = self.penalty_until {
            if now < until {
                let violation = now >= self.opened_at + self.cfg.grace;
                if violation && self.cfg.extends {
                    self.penalty_until = Some(now + self.cfg.retry_after);
                }
                return Decision::Limit { violation };
            }
            self.penalty_until = None;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Decision::Allow
        } else {
            self.penalty_until = Some(now + self.cfg.retry_after);
            self.opened_at = now;
            Decision::Limit { violation: false }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(extends: bool, grace_ms: u64) -> Limiter {
        Limiter::new(LimitConfig {
            rate: 10.0,
            burst: 5.0,
            retry_after: Duration::from_secs(2),
            extends,
            grace: Duration::from_millis(grace_ms),
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_limit_then_recover_after_the_window() {
        let mut l = limiter(false, 0);
        for _ in 0..5 {
            assert_eq!(l.check(ms(0)), Decision::Allow);
        }
        assert_eq!(l.check(ms(0)), Decision::Limit { violation: false });
        assert_eq!(l.check(ms(1_000)), Decision::Limit { violation: true });
        // Window is not extended: at 2 s it is over and the bucket has refilled.
        assert_eq!(l.check(ms(2_000)), Decision::Allow);
    }

    #[test]
    fn violations_extend_the_window_when_asked() {
        let mut l = limiter(true, 0);
        for _ in 0..6 {
            l.check(ms(0));
        }
        assert_eq!(l.check(ms(1_500)), Decision::Limit { violation: true });
        assert_eq!(
            l.check(ms(3_000)),
            Decision::Limit { violation: true },
            "extended to 3.5 s"
        );
        assert_eq!(l.check(ms(5_100)), Decision::Allow);
    }

    #[test]
    fn in_flight_requests_within_grace_are_not_violations() {
        let mut l = limiter(true, 500);
        for _ in 0..6 {
            l.check(ms(0));
        }
        assert_eq!(l.check(ms(100)), Decision::Limit { violation: false });
        assert_eq!(l.check(ms(600)), Decision::Limit { violation: true });
    }

    #[test]
    fn steady_rate_under_the_limit_is_never_refused() {
        let mut l = limiter(true, 0);
        for i in 0..1_000 {
            assert_eq!(l.check(ms(i * 101)), Decision::Allow, "request {i}");
        }
    }
}
