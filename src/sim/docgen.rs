//! Deterministic packuments, generated in chunks so a 100 MB document never sits in memory.
//!
//! A document is a pure function of `(seed, name, generation)`: its [`Profile`] (how many
//! versions, how big each is, how long the readme) comes from a hash of the name, so nothing per
//! name is stored. Sizes follow the upstream's published figures: versions per package are
//! log-normal with median 3 and mean about 10; bytes per version are log-normal too, which puts
//! the median full document near 9 KB and the 99th percentile near 650 KB (see the test below).
//!
//! [`DocStream`] yields the JSON text in chunks of about [`CHUNK`] bytes; the server sends each as
//! soon as it is made, so memory stays flat whatever the document's size.

use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;

use super::rng::{hash_parts, Rng};

/// Target size of one generated chunk.
pub const CHUNK: usize = 64 * 1024;

/// The largest document `--huge` may ask for.
pub const MAX_DOC_BYTES: u64 = 128 * 1024 * 1024;

/// 2026-01-01T00:00:00Z: base documents were last modified before it, edits come after.
const EPOCH_2026: i64 = 1_767_225_600;
/// 2010-01-01T00:00:00Z: the earliest creation time.
const EPOCH_2010: i64 = 1_262_304_000;

/// Which representation the client asked for (see the `Accept` rules in the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `Accept: application/json`: everything, with `_rev` and `time`.
    Full,
    /// Any other `Accept`: the install-time "corgi" form, without `_rev` and `time`.
    Abbreviated,
}

/// The shape of one package's document, derived from its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Versions at generation 0 (edits each publish one more).
    pub versions: u32,
    /// Median bytes per version object.
    pub version_bytes: u32,
    pub readme_len: u64,
    pub unpublished: bool,
    pub created: i64,
    /// The revision number at generation 0.
    pub base_gen: u32,
}

impl Profile {
    pub fn of(seed: u64, name: &str) -> Profile {
        let mut rng = Rng::new(hash_parts(seed, &[b"profile", name.as_bytes()]));
        let versions = rng.lognormal(3.0, 1.55).round().clamp(1.0, 20_000.0) as u32;
        let mut version_bytes = rng.lognormal(1_900.0, 1.0).clamp(650.0, 60_000.0) as u32;
        // Keep the generated corpus under the upstream's 100 MB cap.
        version_bytes = version_bytes.min((90_000_000 / u64::from(versions)) as u32).max(650);
        let readme_len = rng.lognormal(1_500.0, 1.2).clamp(0.0, 400_000.0) as u64;
        let unpublished = rng.unit() < 0.005;
        let created = EPOCH_2010 + rng.below((EPOCH_2026 - EPOCH_2010 - 86_400) as u64) as i64;
        let base_gen = versions + rng.below(4) as u32;
        Profile {
            versions,
            version_bytes,
            readme_len,
            unpublished,
            created,
            base_gen,
        }
    }

    /// A `--huge` document of about `bytes`: many versions, and a readme that makes up the rest
    /// (its exact length is set by [`fit_huge`] once the versions are measured).
    pub fn huge(seed: u64, name: &str, bytes: u64) -> Profile {
        let mut p = Profile::of(seed, name);
        p.versions = (bytes / 5_000).clamp(1, 40_000) as u32;
        p.version_bytes = 3_000;
        p.readme_len = 0;
        p.unpublished = false;
        p.base_gen = p.versions + 1;
        p
    }
}

/// Sets `profile.readme_len` so that the full document at generation 0 is `bytes` long (or as
/// close as the versions allow). Generates the document once, discarding it.
pub fn fit_huge(seed: u64, name: &str, profile: &mut Profile, bytes: u64, base_url: &str) {
    profile.readme_len = 0;
    let plan = DocPlan::new(seed, name, profile.clone(), 0, Form::Full, base_url);
    let without_readme: u64 = DocStream::new(plan).map(|c| c.len() as u64).sum();
    profile.readme_len = bytes.saturating_sub(without_readme);
}

/// `"{gen}-{32 hex}"`, the revision of `name` at revision number `gen`.
pub fn rev(seed: u64, name: &str, gen: u32) -> String {
    let a = hash_parts(seed, &[b"rev-a", name.as_bytes(), &gen.to_le_bytes()]);
    let b = hash_parts(seed, &[b"rev-b", name.as_bytes(), &gen.to_le_bytes()]);
    format!("{gen}-{a:016x}{b:016x}")
}

/// The strong validator of one representation of one revision.
pub fn etag(seed: u64, name: &str, gen: u32, form: Form) -> String {
    let h = hash_parts(seed, &[b"etag", name.as_bytes(), &gen.to_le_bytes(), &[form as u8]]);
    match form {
        Form::Full => format!("\"{h:016x}\""),
        Form::Abbreviated => format!("W/\"{h:016x}\""),
    }
}

/// Everything needed to generate one document.
#[derive(Debug, Clone)]
pub struct DocPlan {
    seed: u64,
    name: String,
    profile: Profile,
    edits: u32,
    form: Form,
    base_url: String,
    versions: Vec<String>,
}

impl DocPlan {
    pub fn new(seed: u64, name: &str, profile: Profile, edits: u32, form: Form, base_url: &str) -> DocPlan {
        let count = if profile.unpublished && edits == 0 {
            profile.versions
        } else {
            profile.versions + edits
        };
        DocPlan {
            seed,
            name: name.to_owned(),
            versions: version_strings(seed, name, count),
            profile,
            edits,
            form,
            base_url: base_url.to_owned(),
        }
    }

    pub fn gen(&self) -> u32 {
        self.profile.base_gen + self.edits
    }

    fn unpublished(&self) -> bool {
        self.profile.unpublished && self.edits == 0
    }

    /// Publication time of version `i`.
    fn version_time(&self, i: usize) -> i64 {
        let base = self.profile.versions as usize;
        if i < base {
            let step = (EPOCH_2026 - self.profile.created) / (base as i64 + 1);
            self.profile.created + step * i as i64
        } else {
            EPOCH_2026 + 3_600 * (i - base + 1) as i64
        }
    }

    pub fn modified(&self) -> i64 {
        self.version_time(self.versions.len().saturating_sub(1)) + 60
    }
}

fn version_strings(seed: u64, name: &str, count: u32) -> Vec<String> {
    let mut rng = Rng::new(hash_parts(seed, &[b"versions", name.as_bytes()]));
    let (mut major, mut minor, mut patch) = if rng.below(3) == 0 { (0, 1, 0) } else { (1, 0, 0) };
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        out.push(format!("{major}.{minor}.{patch}"));
        let r = rng.unit();
        if r < 0.70 {
            patch += 1;
        } else if r < 0.95 {
            (minor, patch) = (minor + 1, 0);
        } else {
            (major, minor, patch) = (major + 1, 0, 0);
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum State {
    Head,
    Versions(usize),
    Time(usize),
    Tail,
    Readme(u64),
    Done,
}

/// The JSON text of a [`DocPlan`], in chunks of about [`CHUNK`] bytes.
#[derive(Debug)]
pub struct DocStream {
    plan: DocPlan,
    state: State,
    buf: Vec<u8>,
}

impl DocStream {
    pub fn new(plan: DocPlan) -> DocStream {
        DocStream {
            plan,
            state: State::Head,
            buf: Vec::with_capacity(CHUNK + 8_192),
        }
    }

    /// Writes the next piece into `buf` and advances the state.
    fn step(&mut self) {
        let p = &self.plan;
        let out = &mut self.buf;
        let full = p.form == Form::Full;
        self.state = match self.state {
            State::Head if p.unpublished() => {
                if full {
                    id_rev_name(out, p);
                    let _ = write!(
                        Raw(out),
                        ",\"time\":{{\"created\":\"{}\",\"modified\":\"{}\",\"unpublished\":{{\"time\":\"{}\",\"versions\":[",
                        iso(p.profile.created),
                        iso(p.modified()),
                        iso(p.modified())
                    );
                    for (i, v) in p.versions.iter().enumerate() {
                        let _ = write!(Raw(out), "{}\"{v}\"", if i > 0 { "," } else { "" });
                    }
                    out.extend_from_slice(b"]}}}");
                } else {
                    out.extend_from_slice(b"{\"name\":");
                    json_str(out, &p.name);
                    let _ = write!(
                        Raw(out),
                        ",\"modified\":\"{}\",\"dist-tags\":{{}},\"versions\":{{}}}}",
                        iso(p.modified())
                    );
                }
                State::Done
            }
            State::Head => {
                let latest = p.versions.last().map(String::as_str).unwrap_or("0.0.0");
                if full {
                    id_rev_name(out, p);
                    out.extend_from_slice(b",\"description\":");
                    json_str(out, &lorem(hash_parts(p.seed, &[b"desc", p.name.as_bytes()]), 60));
                } else {
                    out.extend_from_slice(b"{\"name\":");
                    json_str(out, &p.name);
                    let _ = write!(Raw(out), ",\"modified\":\"{}\"", iso(p.modified()));
                }
                let _ = write!(Raw(out), ",\"dist-tags\":{{\"latest\":\"{latest}\"}},\"versions\":{{");
                State::Versions(0)
            }
            State::Versions(i) if i < p.versions.len() => {
                if i > 0 {
                    out.push(b',');
                }
                version_object(out, p, i);
                State::Versions(i + 1)
            }
            State::Versions(_) if !full => {
                out.extend_from_slice(b"}}");
                State::Done
            }
            State::Versions(_) => {
                let _ = write!(
                    Raw(out),
                    "}},\"time\":{{\"created\":\"{}\",\"modified\":\"{}\"",
                    iso(p.profile.created),
                    iso(p.modified())
                );
                State::Time(0)
            }
            State::Time(i) if i < p.versions.len() => {
                let _ = write!(Raw(out), ",\"{}\":\"{}\"", p.versions[i], iso(p.version_time(i)));
                State::Time(i + 1)
            }
            State::Time(_) => {
                let user = maintainer(p.seed, &p.name);
                let _ = write!(
                    Raw(out),
                    "}},\"maintainers\":[{{\"name\":\"{user}\",\"email\":\"{user}@example.com\"}}],\"license\":\"MIT\",\
                     \"keywords\":[\"sim\",\"{user}\"],\"repository\":{{\"type\":\"git\",\"url\":\"git+https://git.example/{user}/repo.git\"}},\
                     \"readmeFilename\":\"README.md\",\"readme\":\"# "
                );
                json_str_inner(out, &p.name);
                out.extend_from_slice(b"\\n\\n");
                State::Readme(0)
            }
            State::Readme(done) if done < p.profile.readme_len => {
                let take = (p.profile.readme_len - done).min(CHUNK as u64);
                push_lorem(
                    out,
                    hash_parts(p.seed, &[b"readme", p.name.as_bytes()]).wrapping_add(done),
                    take as usize,
                );
                State::Readme(done + take)
            }
            State::Readme(_) => State::Tail,
            State::Tail => {
                out.extend_from_slice(b"\"}");
                State::Done
            }
            State::Done => State::Done,
        };
    }
}

impl Iterator for DocStream {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        while self.buf.len() < CHUNK && !matches!(self.state, State::Done) {
            self.step();
        }
        if self.buf.is_empty() {
            return None;
        }
        let chunk = Bytes::copy_from_slice(&self.buf);
        self.buf.clear();
        Some(chunk)
    }
}

/// `{"_id":NAME,"_rev":REV,"name":NAME`: how every full document starts.
fn id_rev_name(out: &mut Vec<u8>, p: &DocPlan) {
    out.extend_from_slice(b"{\"_id\":");
    json_str(out, &p.name);
    out.extend_from_slice(b",\"_rev\":");
    json_str(out, &rev(p.seed, &p.name, p.gen()));
    out.extend_from_slice(b",\"name\":");
    json_str(out, &p.name);
}

fn maintainer(seed: u64, name: &str) -> String {
    format!("user{}", hash_parts(seed, &[b"maint", name.as_bytes()]) % 100_000)
}

fn version_object(out: &mut Vec<u8>, p: &DocPlan, i: usize) {
    let v = &p.versions[i];
    let h = hash_parts(p.seed, &[b"ver", p.name.as_bytes(), &(i as u64).to_le_bytes()]);
    let mut rng = Rng::new(h);
    let size = rng.lognormal(f64::from(p.profile.version_bytes), 0.3).max(650.0) as usize;
    let start = out.len();
    out.push(b'"');
    out.extend_from_slice(v.as_bytes());
    out.extend_from_slice(b"\":{\"name\":");
    json_str(out, &p.name);
    let _ = write!(Raw(out), ",\"version\":\"{v}\",\"dependencies\":{{");
    for d in 0..rng.below(6) {
        let dep = super::names::dependency_name(&mut rng);
        let _ = write!(
            Raw(out),
            "{}\"{dep}\":\"^{}.{}.0\"",
            if d > 0 { "," } else { "" },
            rng.below(10),
            rng.below(20)
        );
    }
    let mut sha1 = [0u8; 20];
    let mut sha512 = [0u8; 64];
    for (j, b) in sha1.iter_mut().chain(sha512.iter_mut()).enumerate() {
        if j % 8 == 0 {
            rng = Rng::new(rng.next_u64());
        }
        *b = rng.next_u64() as u8;
    }
    let _ = write!(
        Raw(out),
        "}},\"dist\":{{\"shasum\":\"{}\",\"tarball\":\"",
        crate::keys::hex(&sha1)
    );
    json_str_inner(out, &p.base_url);
    out.push(b'/');
    json_str_inner(out, &p.name);
    out.extend_from_slice(b"/-/");
    json_str_inner(out, p.name.rsplit('/').next().unwrap_or(&p.name));
    let _ = write!(
        Raw(out),
        "-{v}.tgz\",\"integrity\":\"sha512-{}\"",
        base64::engine::general_purpose::STANDARD.encode(sha512)
    );
    if p.form == Form::Abbreviated {
        out.extend_from_slice(b"}}");
        return;
    }
    let user = maintainer(p.seed, &p.name);
    let _ = write!(
        Raw(out),
        ",\"fileCount\":{},\"unpackedSize\":{}}},\"main\":\"index.js\",\"scripts\":{{\"test\":\"node test.js\"}},\
         \"license\":\"MIT\",\"_id\":\"",
        1 + rng.below(200),
        1_000 + rng.below(5_000_000)
    );
    json_str_inner(out, &p.name);
    let _ = write!(
        Raw(out),
        "@{v}\",\"_npmUser\":{{\"name\":\"{user}\",\"email\":\"{user}@example.com\"}},\"maintainers\":[{{\"name\":\"{user}\",\
         \"email\":\"{user}@example.com\"}}],\"_hasShrinkwrap\":false,\"description\":\""
    );
    let used = out.len() - start + 3;
    push_lorem(out, h, size.saturating_sub(used).max(10));
    out.extend_from_slice(b"\"}");
}

const LOREM: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut \
labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip \
ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat \
nulla pariatur excepteur sint occaecat cupidatat non proident sunt in culpa qui officia deserunt mollit anim id \
est laborum ";

/// Appends `len` bytes of ASCII filler text starting at a position chosen by `h`.
fn push_lorem(out: &mut Vec<u8>, h: u64, mut len: usize) {
    let text = LOREM.as_bytes();
    let mut at = (h % text.len() as u64) as usize;
    while len > 0 {
        let take = len.min(text.len() - at);
        out.extend_from_slice(&text[at..at + take]);
        len -= take;
        at = 0;
    }
}

fn lorem(h: u64, len: usize) -> String {
    let mut v = Vec::with_capacity(len);
    push_lorem(&mut v, h, len);
    String::from_utf8(v).unwrap_or_default()
}

/// `fmt::Write` over a byte buffer, so `write!` can append formatted ASCII.
struct Raw<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Raw<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `s` as a JSON string literal.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    json_str_inner(out, s);
    out.push(b'"');
}

/// Appends the escaped contents of `s`, without quotes.
pub fn json_str_inner(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(Raw(out), "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
}

/// `2015-03-02T12:34:56.000Z` for a Unix time in seconds.
pub fn iso(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(name: &str, edits: u32) -> Vec<u8> {
        let plan = DocPlan::new(1, name, Profile::of(1, name), edits, Form::Full, "http://127.0.0.1:1");
        DocStream::new(plan).flat_map(|c| c.to_vec()).collect()
    }

    #[test]
    fn documents_are_valid_json_with_matching_rev() {
        for name in ["lodash", "@types/node", "we\"ird\\na\u{1}me", "café"] {
            let doc: serde_json::Value = serde_json::from_slice(&full(name, 0)).expect("valid JSON");
            assert_eq!(doc["name"], name);
            let p = Profile::of(1, name);
            assert_eq!(doc["_rev"], rev(1, name, p.base_gen));
            if p.unpublished {
                assert!(doc["time"]["unpublished"].is_object());
            } else {
                assert_eq!(doc["versions"].as_object().map(|v| v.len()), Some(p.versions as usize));
            }
        }
    }

    #[test]
    fn abbreviated_form_has_no_rev_or_time() {
        let plan = DocPlan::new(1, "react", Profile::of(1, "react"), 2, Form::Abbreviated, "http://x");
        let body: Vec<u8> = DocStream::new(plan).flat_map(|c| c.to_vec()).collect();
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert!(doc.get("_rev").is_none() && doc.get("time").is_none());
        assert!(doc["versions"].as_object().is_some_and(|v| !v.is_empty()));
    }

    #[test]
    fn an_edit_publishes_a_version_and_bumps_the_rev() {
        let a: serde_json::Value = serde_json::from_slice(&full("express", 0)).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&full("express", 1)).unwrap();
        assert_ne!(a["_rev"], b["_rev"]);
        let n = |d: &serde_json::Value| d["versions"].as_object().map(|v| v.len()).unwrap_or(0);
        assert_eq!(n(&b), n(&a) + 1);
    }

    #[test]
    fn sizes_follow_the_upstream_distribution() {
        let corpus = super::super::corpus::Corpus::synthetic(20_000, 1);
        let mut sizes: Vec<u64> = corpus
            .iter()
            .filter(|n| !Profile::of(1, n).unpublished)
            .map(|n| {
                let plan = DocPlan::new(1, n, Profile::of(1, n), 0, Form::Full, "http://127.0.0.1:5984");
                DocStream::new(plan).map(|c| c.len() as u64).sum()
            })
            .collect();
        sizes.sort_unstable();
        let at = |q: f64| sizes[((sizes.len() - 1) as f64 * q) as usize];
        let mean = sizes.iter().sum::<u64>() / sizes.len() as u64;
        // Upstream: median ~9 KB, mean ~50 KB, p99 ~650 KB.
        assert!((6_000..13_000).contains(&at(0.5)), "median {}", at(0.5));
        assert!((400_000..1_000_000).contains(&at(0.99)), "p99 {}", at(0.99));
        assert!((25_000..90_000).contains(&mean), "mean {mean}");
        let mut versions: Vec<u32> = corpus.iter().map(|n| Profile::of(1, n).versions).collect();
        versions.sort_unstable();
        assert_eq!(versions[versions.len() / 2], 3);
    }

    #[test]
    fn huge_documents_hit_their_size_in_small_chunks() {
        let mut p = Profile::huge(1, "big", 5_000_000);
        fit_huge(1, "big", &mut p, 5_000_000, "http://127.0.0.1:1");
        let plan = DocPlan::new(1, "big", p, 0, Form::Full, "http://127.0.0.1:1");
        let mut total = 0;
        let mut body = Vec::new();
        for chunk in DocStream::new(plan) {
            assert!(chunk.len() < CHUNK + 70_000, "chunk of {} bytes", chunk.len());
            total += chunk.len();
            body.extend_from_slice(&chunk);
        }
        assert_eq!(total, 5_000_000);
        serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(EPOCH_2026), "2026-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400), "2000-02-29T00:00:00.000Z");
    }
}
