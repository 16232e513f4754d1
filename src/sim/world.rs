//! The simulated database: the base corpus plus everything that changed since start-up.
//!
//! The base corpus is immutable and costs a few bytes per name. Changes (`--changes-per-sec`)
//! are kept in an overlay keyed by name, small next to the corpus, and every read merges the
//! two: `_all_docs` walks both in byte order, `_changes` maps base sequence numbers
//! `1..=N` onto the base names through a fixed permutation and later ones onto the change log.
//! Everything here is synchronous and does no I/O; the server wraps it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::corpus::Corpus;
use super::docgen::{self, Profile};
use super::names;
use super::rng::{hash_parts, Rng};

/// What one name looks like at one moment: how many edits, and whether it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub edits: u32,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
struct DocState {
    in_base: bool,
    now: Version,
    /// What the CDN may still serve for `--cdn-lag-secs` after the last change
    /// (`None`: the name did not exist before).
    before: Option<Version>,
    last_seq: u64,
    changed_at: Instant,
}

#[derive(Debug, Default)]
struct Overlay {
    docs: BTreeMap<Arc<str>, DocState>,
    /// `log[k]` is the name changed at sequence `base + 1 + k`.
    log: Vec<Arc<str>>,
    /// Names created after start-up, in creation order (to pick mutation targets from).
    added: Vec<Arc<str>>,
    deleted_base: usize,
    added_live: usize,
}

/// One `_all_docs` range request, already validated.
#[derive(Debug, Clone, Default)]
pub struct Range<'a> {
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
    pub inclusive_end: bool,
    pub descending: bool,
    pub limit: usize,
}

/// A row of `_changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub name: String,
    pub rev: String,
    pub deleted: bool,
}

/// What a mutation did (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Updated(String),
    Created(String),
    Deleted(String),
}

/// Result of looking up one name in `keys=[...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRow {
    Live(String),
    Deleted(String),
    Missing,
}

#[derive(Debug)]
pub struct World {
    seed: u64,
    corpus: Corpus,
    huge: HashMap<String, Profile>,
    perm_step: u64,
    cdn_lag: Duration,
    overlay: RwLock<Overlay>,
}

impl World {
    /// `huge` maps names (already in `corpus`) to their fitted profiles.
    pub fn new(seed: u64, corpus: Corpus, huge: HashMap<String, Profile>, cdn_lag: Duration) -> World {
        let n = corpus.len() as u64;
        let mut step = ((n as f64 * 0.618_033_988_7) as u64) | 1;
        while n > 1 && gcd(step, n) != 1 {
            step += 2;
        }
        World {
            seed,
            corpus,
            huge,
            perm_step: step.max(1),
            cdn_lag,
            overlay: RwLock::new(Overlay::default()),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn profile(&self, name: &str) -> Profile {
        self.huge
            .get(name)
            .cloned()
            .unwrap_or_else(|| Profile::of(self.seed, name))
    }

    pub fn rev(&self, name: &str, edits: u32) -> String {
        docgen::rev(self.seed, name, self.profile(name).base_gen + edits)
    }

    pub fn update_seq(&self) -> u64 {
        self.corpus.len() as u64 + self.overlay.read().log.len() as u64
    }

    /// Live documents (unpublished stubs included: they are documents with a revision).
    pub fn doc_count(&self) -> usize {
        let ov = self.overlay.read();
        self.corpus.len() - ov.deleted_base + ov.added_live
    }

    pub fn deleted_count(&self) -> usize {
        let ov = self.overlay.read();
        ov.docs.values().filter(|s| s.now.deleted).count()
    }

    /// The version a reader of the registry origin sees now: `None` for unknown and deleted
    /// names. Within `--cdn-lag-secs` of a change the previous version is served.
    pub fn lookup(&self, name: &str, now: Instant) -> Option<u32> {
        let ov = self.overlay.read();
        let visible = match ov.docs.get(name) {
            Some(st) if now.saturating_duration_since(st.changed_at) < self.cdn_lag => st.before,
            Some(st) => Some(st.now),
            None => self.corpus.find(name).map(|_| Version {
                edits: 0,
                deleted: false,
            }),
        };
        visible.filter(|v| !v.deleted).map(|v| v.edits)
    }

    /// Calls `row(name, rev)` for each live document in `range`, in order; returns
    /// `(total_rows, offset)` as `_all_docs` reports them.
    pub fn scan(&self, range: &Range<'_>, mut row: impl FnMut(&str, String)) -> (usize, usize) {
        let ov = self.overlay.read();
        let total = self.corpus.len() - ov.deleted_base + ov.added_live;
        let (base, over): (BaseIter<'_>, OverlayIter<'_>) = if range.descending {
            let hi = range.start.map_or(self.corpus.len(), |s| self.corpus.upper_bound(s));
            let upper = range.start.map_or(Bound::Unbounded, Bound::Included);
            (
                Box::new((0..hi).rev().map(|i| self.corpus.name(i))),
                Box::new(ov.docs.range::<str, _>((Bound::Unbounded, upper)).rev()),
            )
        } else {
            let lo = range.start.map_or(0, |s| self.corpus.lower_bound(s));
            let lower = range.start.map_or(Bound::Unbounded, Bound::Included);
            (
                Box::new((lo..self.corpus.len()).map(|i| self.corpus.name(i))),
                Box::new(ov.docs.range::<str, _>((lower, Bound::Unbounded))),
            )
        };
        let offset = match (range.start, range.descending) {
            (None, _) => 0,
            (Some(s), false) => live_before(&self.corpus, &ov, s, false),
            (Some(s), true) => total - live_before(&self.corpus, &ov, s, true),
        };
        let past_end = |name: &str| match range.end {
            None => false,
            Some(end) if range.descending => {
                if range.inclusive_end {
                    name < end
                } else {
                    name <= end
                }
            }
            Some(end) => {
                if range.inclusive_end {
                    name > end
                } else {
                    name >= end
                }
            }
        };
        let mut emitted = 0;
        for (name, state) in merge(base, over, range.descending) {
            if emitted >= range.limit || past_end(name) {
                break;
            }
            let edits = match state {
                Some(st) if st.now.deleted => continue,
                Some(st) => st.now.edits,
                None => 0,
            };
            row(name, self.rev(name, edits));
            emitted += 1;
        }
        (total, offset)
    }

    /// `keys=[...]`: one answer per key, in the order asked.
    pub fn key_row(&self, key: &str) -> KeyRow {
        let ov = self.overlay.read();
        match ov.docs.get(key) {
            Some(st) if st.now.deleted => KeyRow::Deleted(self.rev(key, st.now.edits)),
            Some(st) => KeyRow::Live(self.rev(key, st.now.edits)),
            None if self.corpus.find(key).is_some() => KeyRow::Live(self.rev(key, 0)),
            None => KeyRow::Missing,
        }
    }

    /// Up to `limit` changes after `since`, each document at most once (at its latest change),
    /// and the last sequence number examined.
    pub fn changes(&self, since: u64, limit: usize) -> (Vec<Change>, u64) {
        let ov = self.overlay.read();
        let base = self.corpus.len() as u64;
        let update_seq = base + ov.log.len() as u64;
        let mut out = Vec::new();
        let mut seq = since;
        while seq < update_seq && out.len() < limit {
            seq += 1;
            let name: &str = if seq <= base {
                let idx = ((seq - 1) as u128 * self.perm_step as u128 % base as u128) as usize;
                self.corpus.name(idx)
            } else {
                &ov.log[(seq - base - 1) as usize]
            };
            let version = match ov.docs.get(name) {
                Some(st) if st.last_seq != seq => continue,
                Some(st) => st.now,
                None => Version {
                    edits: 0,
                    deleted: false,
                },
            };
            out.push(Change {
                seq,
                name: name.to_owned(),
                rev: self.rev(name, version.edits),
                deleted: version.deleted,
            });
        }
        (out, seq)
    }

    /// Applies the next mutation (deterministic in the seed and the new sequence number).
    pub fn mutate(&self, now: Instant) -> Mutation {
        let mut ov = self.overlay.write();
        let seq = self.corpus.len() as u64 + ov.log.len() as u64 + 1;
        let mut rng = Rng::new(hash_parts(self.seed, &[b"mutation", &seq.to_le_bytes()]));
        let roll = rng.unit();
        let target = if roll < 0.9 {
            self.pick_live(&mut rng, &ov)
        } else {
            None
        };
        let (name, mutation) = match target {
            Some(name) => {
                let deleting = roll >= 0.8;
                let st = ov.docs.entry(name.clone()).or_insert_with(|| DocState {
                    in_base: true,
                    now: Version {
                        edits: 0,
                        deleted: false,
                    },
                    before: None,
                    last_seq: 0,
                    changed_at: now,
                });
                st.before = Some(st.now);
                st.now = Version {
                    edits: st.now.edits + 1,
                    deleted: deleting,
                };
                st.last_seq = seq;
                st.changed_at = now;
                let in_base = st.in_base;
                if deleting {
                    if in_base {
                        ov.deleted_base += 1;
                    } else {
                        ov.added_live -= 1;
                    }
                    (name.clone(), Mutation::Deleted(name.to_string()))
                } else {
                    (name.clone(), Mutation::Updated(name.to_string()))
                }
            }
            None => {
                let name: Arc<str> = self.new_name(&mut rng, &ov, seq).into();
                ov.docs.insert(
                    name.clone(),
                    DocState {
                        in_base: false,
                        now: Version {
                            edits: 0,
                            deleted: false,
                        },
                        before: None,
                        last_seq: seq,
                        changed_at: now,
                    },
                );
                ov.added.push(name.clone());
                ov.added_live += 1;
                (name.clone(), Mutation::Created(name.to_string()))
            }
        };
        ov.log.push(name);
        mutation
    }

    /// A random live name, or `None` when a few tries find only deleted ones.
    fn pick_live(&self, rng: &mut Rng, ov: &Overlay) -> Option<Arc<str>> {
        let n = self.corpus.len() as u64;
        let pool = n + ov.added.len() as u64;
        if pool == 0 {
            return None;
        }
        for _ in 0..16 {
            let u = rng.below(pool);
            let name: &str = if u < n {
                self.corpus.name(u as usize)
            } else {
                &ov.added[(u - n) as usize]
            };
            match ov.docs.get_key_value(name) {
                Some((_, st)) if st.now.deleted => continue,
                Some((key, _)) => return Some(key.clone()),
                None => return Some(Arc::from(name)),
            }
        }
        None
    }

    fn new_name(&self, rng: &mut Rng, ov: &Overlay, seq: u64) -> String {
        let mut name = String::new();
        names::generate(rng, self.seed, names::scope_pool_size(self.corpus.len()), &mut name);
        name.push_str(&format!("-s{seq}"));
        while self.corpus.find(&name).is_some() || ov.docs.contains_key(name.as_str()) {
            name.push('x');
        }
        name
    }
}

type BaseIter<'a> = Box<dyn Iterator<Item = &'a str> + 'a>;
type OverlayIter<'a> = Box<dyn Iterator<Item = (&'a Arc<str>, &'a DocState)> + 'a>;

/// Merges base names and overlay entries (both in `descending` order or both ascending);
/// an overlay entry shadows the base name it equals.
fn merge<'a>(
    base: BaseIter<'a>,
    over: OverlayIter<'a>,
    descending: bool,
) -> impl Iterator<Item = (&'a str, Option<&'a DocState>)> + 'a {
    let mut base = base.peekable();
    let mut over = over.peekable();
    std::iter::from_fn(move || {
        let order = match (base.peek(), over.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(b), Some((k, _))) => {
                let o = (*b).cmp(&***k);
                if descending {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        match order {
            std::cmp::Ordering::Less => base.next().map(|b| (b, None)),
            std::cmp::Ordering::Greater => over.next().map(|(k, s)| (&**k, Some(s))),
            std::cmp::Ordering::Equal => {
                base.next();
                over.next().map(|(k, s)| (&**k, Some(s)))
            }
        }
    })
}

/// Live names `< key` (or `<= key` when `inclusive`).
fn live_before(corpus: &Corpus, ov: &Overlay, key: &str, inclusive: bool) -> usize {
    let base = if inclusive {
        corpus.upper_bound(key)
    } else {
        corpus.lower_bound(key)
    };
    let upper = if inclusive {
        Bound::Included(key)
    } else {
        Bound::Excluded(key)
    };
    let (mut deleted_base, mut added_live) = (0, 0);
    for (_, st) in ov.docs.range::<str, _>((Bound::Unbounded, upper)) {
        match (st.in_base, st.now.deleted) {
            (true, true) => deleted_base += 1,
            (false, false) => added_live += 1,
            _ => {}
        }
    }
    base - deleted_base + added_live
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::super::corpus::CorpusBuilder;
    use super::*;

    fn world(names: &[&str]) -> World {
        let mut b = CorpusBuilder::default();
        for n in names {
            b.push(n);
        }
        World::new(1, b.finish(), HashMap::new(), Duration::ZERO)
    }

    fn names(w: &World, range: Range<'_>) -> Vec<String> {
        let mut out = Vec::new();
        w.scan(&range, |n, _| out.push(n.to_owned()));
        out
    }

    fn all(limit: usize) -> Range<'static> {
        Range {
            inclusive_end: true,
            limit,
            ..Range::default()
        }
    }

    #[test]
    fn ranges_respect_inclusive_end_and_direction() {
        let w = world(&["a", "b", "c", "d"]);
        assert_eq!(
            names(
                &w,
                Range {
                    start: Some("b"),
                    end: Some("d"),
                    ..all(10)
                }
            ),
            ["b", "c", "d"]
        );
        assert_eq!(
            names(
                &w,
                Range {
                    start: Some("b"),
                    end: Some("d"),
                    inclusive_end: false,
                    ..all(10)
                }
            ),
            ["b", "c"]
        );
        assert_eq!(
            names(
                &w,
                Range {
                    start: Some("c"),
                    end: Some("a"),
                    descending: true,
                    ..all(10)
                }
            ),
            ["c", "b", "a"]
        );
        assert_eq!(
            names(
                &w,
                Range {
                    start: Some("c"),
                    end: Some("a"),
                    descending: true,
                    inclusive_end: false,
                    ..all(10)
                }
            ),
            ["c", "b"]
        );
        assert_eq!(names(&w, all(2)), ["a", "b"]);
        let (total, offset) = w.scan(
            &Range {
                start: Some("c"),
                ..all(1)
            },
            |_, _| {},
        );
        assert_eq!((total, offset), (4, 2));
    }

    #[test]
    fn base_changes_cover_every_name_once() {
        let w = world(&["a", "b", "c", "d", "e", "f"]);
        let (rows, last) = w.changes(0, 100);
        let mut seen: Vec<_> = rows.iter().map(|c| c.name.clone()).collect();
        seen.sort();
        assert_eq!(seen, ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(last, 6);
        assert!(rows.windows(2).all(|p| p[0].seq < p[1].seq));
    }

    #[test]
    fn mutations_show_up_everywhere_consistently() {
        let w = world(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        let now = Instant::now();
        let mut deleted = None;
        for _ in 0..200 {
            if let Mutation::Deleted(n) = w.mutate(now) {
                deleted = Some(n);
            }
        }
        let deleted = deleted.expect("some deletion in 200 mutations");
        assert_eq!(w.update_seq(), 208);
        assert_eq!(w.lookup(&deleted, now), None);
        let listed = names(&w, all(usize::MAX));
        assert!(!listed.contains(&deleted));
        assert_eq!(listed.len(), w.doc_count());
        assert!(listed.windows(2).all(|p| p[0] < p[1]), "byte order with added names");
        // Every live name's latest change is in the feed exactly once, with its current rev.
        let (rows, last) = w.changes(0, usize::MAX);
        assert_eq!(last, 208);
        let mut ids: Vec<_> = rows.iter().map(|c| c.name.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), rows.len());
        for c in &rows {
            assert_eq!(c.deleted, c.name == deleted || w.lookup(&c.name, now).is_none());
            assert_eq!(
                w.key_row(&c.name),
                if c.deleted {
                    KeyRow::Deleted(c.rev.clone())
                } else {
                    KeyRow::Live(c.rev.clone())
                }
            );
        }
    }

    #[test]
    fn cdn_lag_serves_the_previous_version() {
        let mut b = CorpusBuilder::default();
        for n in ["a", "b", "c", "d"] {
            b.push(n);
        }
        let w = World::new(1, b.finish(), HashMap::new(), Duration::from_secs(60));
        let t0 = Instant::now();
        let updated = (0..100).find_map(|_| match w.mutate(t0) {
            Mutation::Updated(name) => Some(name),
            _ => None,
        });
        let name = updated.expect("an update within 100 mutations");
        let edits = w
            .lookup(&name, t0 + Duration::from_secs(61))
            .expect("live after the lag");
        assert_eq!(w.lookup(&name, t0), Some(edits - 1), "stale within the lag");
    }
}
