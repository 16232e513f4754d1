//! Synthetic package names with the mix the real upstream has.
//!
//! About 39 % of names are scoped (`@scope/name`, with scopes reused Zipf-like), a little over
//! 1 % start with a digit, some legacy names start with an uppercase letter or `-`, `.` and `_`
//! appear inside names, and a rare few carry non-ASCII letters, so byte-order and encoding bugs
//! in a client show up on a synthetic corpus too. No name starts with `.` or `_`: the package
//! name rules forbid it, and the replicator rejects such names as input.

use super::rng::{hash_parts, Rng};

const WORDS: &[&str] = &[
    "react", "vue", "node", "util", "utils", "core", "cli", "plugin", "loader", "parser", "config", "eslint", "babel",
    "webpack", "types", "lint", "test", "mock", "server", "client", "api", "sdk", "ui", "icons", "theme", "router",
    "store", "data", "json", "http", "fs", "path", "string", "array", "async", "stream", "color", "log", "logger",
    "date", "time", "math", "image", "crypto", "auth", "db", "sql", "cache", "queue", "worker", "task", "build", "dev",
    "tools", "kit", "lib", "helper", "bridge", "adapter", "angular", "svelte", "next", "gatsby", "redux", "graphql",
    "express", "koa", "rollup", "vite", "jest", "mocha", "chai", "lodash", "form", "input", "button", "modal", "table",
    "grid", "chart", "map", "editor",
];

const SYLLABLES: &[&str] = &[
    "ba", "be", "bi", "bo", "bu", "ca", "co", "da", "de", "di", "do", "fa", "fe", "fi", "ga", "go", "ha", "he", "hi",
    "jo", "ka", "ke", "ko", "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo", "mu", "na", "ne", "ni", "no", "pa",
    "pe", "pi", "po", "ra", "re", "ri", "ro", "ru", "sa", "se", "si", "so", "ta", "te", "ti", "to", "tu", "va", "ve",
    "vi", "wa", "xo", "ya", "yo", "za", "zu", "x", "n", "r", "s", "t",
];

const NON_ASCII: &[&str] = &["café", "naïve", "über", "ñandú", "日本", "größe"];

/// How many distinct scopes a corpus of `count` names draws from.
pub fn scope_pool_size(count: usize) -> u64 {
    (count as u64 / 25).max(8)
}

/// Appends one synthetic name to `out`.
pub fn generate(rng: &mut Rng, seed: u64, scopes: u64, out: &mut String) {
    let r = rng.unit();
    if r < 0.39 {
        // Zipf-like reuse: a few scopes hold many packages, most hold a handful.
        let scope = (scopes as f64 * rng.unit().powi(3)) as u64;
        let mut scope_rng = Rng::new(hash_parts(seed, &[b"scope", &scope.to_le_bytes()]));
        out.push('@');
        base(&mut scope_rng, out, 1);
        out.push('/');
        base(rng, out, 3);
    } else if r < 0.3905 {
        out.push('-');
        base(rng, out, 2);
    } else if r < 0.4025 {
        out.push_str(&rng.below(100).to_string());
        if rng.below(2) == 0 {
            out.push('-');
        }
        base(rng, out, 2);
    } else if r < 0.4105 {
        let start = out.len();
        base(rng, out, 2);
        // Legacy names from before lowercase was enforced: "JSONStream", "Base64".
        let upper = if rng.below(3) == 0 { out.len() - start } else { 1 };
        let tail = out.split_off(start);
        for (i, c) in tail.chars().enumerate() {
            out.extend(if i < upper {
                c.to_uppercase().collect::<Vec<_>>()
            } else {
                vec![c]
            });
        }
    } else if r < 0.41105 {
        base(rng, out, 2);
        out.push('-');
        out.push_str(rng.pick(NON_ASCII));
    } else {
        base(rng, out, 3);
    }
}

/// One to `max_parts` words or invented words, joined by `-` (sometimes `.` or `_`),
/// now and then with a version-like digit suffix.
fn base(rng: &mut Rng, out: &mut String, max_parts: u64) {
    let parts = 1 + rng.below(max_parts);
    for i in 0..parts {
        if i > 0 {
            let sep = rng.unit();
            out.push(if sep < 0.9 {
                '-'
            } else if sep < 0.95 {
                '.'
            } else {
                '_'
            });
        }
        // A lone dictionary word would collide too often; single-part names are invented.
        if parts > 1 && rng.below(2) == 0 {
            out.push_str(rng.pick(WORDS));
        } else {
            for _ in 0..2 + rng.below(3) {
                out.push_str(rng.pick(SYLLABLES));
            }
        }
    }
    if rng.below(8) == 0 {
        out.push_str(&(1 + rng.below(20)).to_string());
    }
}

/// A plausible dependency name for a generated version object (ASCII, no quoting needed).
pub fn dependency_name(rng: &mut Rng) -> &'static str {
    rng.pick(WORDS)
}

#[cfg(test)]
mod tests {
    use super::super::corpus::Corpus;

    #[test]
    fn mix_matches_the_upstream() {
        let c = Corpus::synthetic(50_000, 1);
        let n = c.len() as f64;
        let share = |f: &dyn Fn(&str) -> bool| c.iter().filter(|s| f(s)).count() as f64 / n;
        let scoped = share(&|s| s.starts_with('@'));
        assert!((0.37..0.41).contains(&scoped), "scoped share {scoped}");
        assert!(share(&|s| s.as_bytes()[0].is_ascii_digit()) > 0.005);
        assert!(share(&|s| s.as_bytes()[0].is_ascii_uppercase()) > 0.003);
        assert!(share(&|s| s.starts_with('-')) > 0.0);
        assert!(share(&|s| s.contains('_')) > 0.001 && share(&|s| s.contains('.')) > 0.001);
        assert!(share(&|s| !s.is_ascii()) > 0.0);
        assert!(c.iter().all(|s| !s.starts_with('.') && !s.starts_with('_')));
        assert!(c
            .iter()
            .all(|s| !s.is_empty() && s.len() <= 214 && !s.contains(char::is_whitespace)));
        assert!(c
            .iter()
            .filter(|s| s.starts_with('@'))
            .all(|s| s.matches('/').count() == 1));
    }
}
