//! Counters behind `GET /-/sim/stats`, so benchmarks can compute goodput and politeness.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{json, Map, Value};

use super::faults::KINDS;

/// Which upstream route a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Root,
    AllDocs,
    Changes,
    Packument,
    Other,
}

const ROUTES: [(&str, Route); 5] = [
    ("root", Route::Root),
    ("allDocs", Route::AllDocs),
    ("changes", Route::Changes),
    ("packument", Route::Packument),
    ("other", Route::Other),
];

/// Lock-free counters; `/-/sim/*` requests are not counted.
#[derive(Debug)]
pub struct Stats {
    requests: AtomicU64,
    by_status: [AtomicU64; 600],
    rate_limited: AtomicU64,
    violations: AtomicU64,
    bytes_sent: AtomicU64,
    routes: [AtomicU64; 5],
    faults: [AtomicU64; 6],
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            requests: AtomicU64::new(0),
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
            rate_limited: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            routes: std::array::from_fn(|_| AtomicU64::new(0)),
            faults: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Stats {
    pub fn request(&self, route: Route) {
        self.requests.fetch_add(1, Relaxed);
        let i = ROUTES.iter().position(|(_, r)| *r == route).unwrap_or(4);
        self.routes[i].fetch_add(1, Relaxed);
    }

    pub fn status(&self, status: u16) {
        if let Some(c) = self.by_status.get(usize::from(status)) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn limited(&self, violation: bool) {
        self.rate_limited.fetch_add(1, Relaxed);
        if violation {
            self.violations.fetch_add(1, Relaxed);
        }
    }

    pub fn fault(&self, kind: &str) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            self.faults[i].fetch_add(1, Relaxed);
        }
    }

    pub fn sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    pub fn reset(&self) {
        let all = [&self.requests, &self.rate_limited, &self.violations, &self.bytes_sent];
        for c in all
            .into_iter()
            .chain(&self.by_status)
            .chain(&self.routes)
            .chain(&self.faults)
        {
            c.store(0, Relaxed);
        }
    }

    pub fn to_json(&self) -> Value {
        let by_status: Map<String, Value> = self
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(s, c)| Some((s.to_string(), json!(Some(c.load(Relaxed)).filter(|n| *n > 0)?))))
            .collect();
        let routes: Map<String, Value> = ROUTES
            .iter()
            .zip(&self.routes)
            .map(|((name, _), c)| (name.to_string(), json!(c.load(Relaxed))))
            .collect();
        let faults: Map<String, Value> = KINDS
            .iter()
            .zip(&self.faults)
            .map(|(k, c)| (k.to_string(), json!(c.load(Relaxed))))
            .collect();
        json!({
            "requests": self.requests.load(Relaxed),
            "byStatus": by_status,
            "rateLimited": self.rate_limited.load(Relaxed),
            "violations": self.violations.load(Relaxed),
            "bytesSent": self.bytes_sent.load(Relaxed),
            "routes": routes,
            "faults": faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let s = Stats::default();
        s.request(Route::Packument);
        s.status(200);
        s.status(429);
        s.limited(true);
        s.sent(10);
        s.fault("reset");
        let j = s.to_json();
        assert_eq!(j["requests"], 1);
        assert_eq!(j["byStatus"]["200"], 1);
        assert_eq!(j["byStatus"]["429"], 1);
        assert_eq!(j["violations"], 1);
        assert_eq!(j["routes"]["packument"], 1);
        assert_eq!(j["faults"]["reset"], 1);
        s.reset();
        let j = s.to_json();
        assert_eq!(j["requests"], 0);
        assert!(j["byStatus"].as_object().unwrap().is_empty());
    }
}
