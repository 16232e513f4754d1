//! The simulator's base corpus: every package name, sorted in byte order, in one arena.
//!
//! 4.5 M names must fit well under 1 GiB and be searchable by key, so names are not stored as
//! one `String` each: they are concatenated into a single buffer with a table of start offsets,
//! sorted once at start-up. Lookups and range starts are binary searches over that table.
//! Byte order of UTF-8 is what `str`'s `Ord` gives, and it is the order of `_all_docs`.

use super::names;
use super::rng::Rng;

/// An immutable, sorted, de-duplicated set of names.
#[derive(Debug, Default)]
pub struct Corpus {
    buf: String,
    /// `starts[i]..starts[i + 1]` is name `i` in `buf`; one more entry than there are names.
    starts: Vec<u32>,
}

impl Corpus {
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Name `i` (panics if `i >= len()`, which is a bug in the caller, not bad input).
    pub fn name(&self, i: usize) -> &str {
        &self.buf[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Index of the first name `>= key` (`len()` when there is none).
    pub fn lower_bound(&self, key: &str) -> usize {
        self.partition_point(|name| name < key)
    }

    /// Index of the first name `> key` (`len()` when there is none).
    pub fn upper_bound(&self, key: &str) -> usize {
        self.partition_point(|name| name <= key)
    }

    pub fn find(&self, key: &str) -> Option<usize> {
        let i = self.lower_bound(key);
        (i < self.len() && self.name(i) == key).then_some(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.name(i))
    }

    fn partition_point(&self, below: impl Fn(&str) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(self.name(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The synthetic corpus of `--packages N`: exactly `count` distinct names, from `seed`.
    pub fn synthetic(count: usize, seed: u64) -> Corpus {
        let scopes = names::scope_pool_size(count);
        let mut builder = CorpusBuilder::with_capacity(count);
        // Generated names collide now and then: skip repeats as they come (by a 64-bit hash,
        // which never collides for distinct names in practice) so one sort suffices.
        let mut seen = std::collections::HashSet::with_capacity(count);
        let mut name = String::new();
        let mut next = 0u64;
        while seen.len() < count {
            let mut rng = Rng::new(super::rng::hash_parts(seed, &[b"name", &next.to_le_bytes()]));
            next += 1;
            name.clear();
            names::generate(&mut rng, seed, scopes, &mut name);
            if seen.insert(super::rng::fnv1a(seed, name.as_bytes())) && !builder.push(&name) {
                break;
            }
        }
        builder.finish()
    }
}

/// Collects names in any order; `finish` sorts and de-duplicates them.
#[derive(Debug, Default)]
pub struct CorpusBuilder {
    buf: String,
    starts: Vec<u32>,
}

/// Names past this many bytes in total cannot be addressed with `u32` offsets.
const MAX_ARENA: usize = u32::MAX as usize;

impl CorpusBuilder {
    pub fn with_capacity(names: usize) -> Self {
        CorpusBuilder {
            buf: String::with_capacity(names * 20),
            starts: Vec::with_capacity(names + 1),
        }
    }

    /// Adds a name; returns false (and adds nothing) when the arena is full.
    pub fn push(&mut self, name: &str) -> bool {
        if self.buf.len() + name.len() > MAX_ARENA {
            return false;
        }
        self.starts.push(self.buf.len() as u32);
        self.buf.push_str(name);
        true
    }

    pub fn finish(self) -> Corpus {
        let CorpusBuilder { buf, mut starts } = self;
        let n = starts.len();
        starts.push(buf.len() as u32);
        let name = |i: u32| &buf[starts[i as usize] as usize..starts[i as usize + 1] as usize];
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
        order.dedup_by(|a, b| name(*a) == name(*b));

        let mut sorted = Corpus {
            buf: String::with_capacity(buf.len()),
            starts: Vec::with_capacity(order.len() + 1),
        };
        for &i in &order {
            sorted.starts.push(sorted.buf.len() as u32);
            sorted.buf.push_str(name(i));
        }
        sorted.starts.push(sorted.buf.len() as u32);
        sorted.buf.shrink_to_fit();
        sorted
    }
}

impl From<Corpus> for CorpusBuilder {
    fn from(corpus: Corpus) -> Self {
        let Corpus { buf, mut starts } = corpus;
        starts.pop();
        CorpusBuilder { buf, starts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(names: &[&str]) -> Corpus {
        let mut b = CorpusBuilder::default();
        for n in names {
            b.push(n);
        }
        b.finish()
    }

    #[test]
    fn sorts_in_byte_order_and_dedupes() {
        let c = corpus(&[
            "lodash",
            "@types/node",
            "_under",
            "Zebra",
            "9lives",
            "-dash",
            ".dot",
            "lodash",
            "café",
            "cafe",
        ]);
        let got: Vec<&str> = c.iter().collect();
        assert_eq!(
            got,
            [
                "-dash",
                ".dot",
                "9lives",
                "@types/node",
                "Zebra",
                "_under",
                "cafe",
                "café",
                "lodash"
            ]
        );
    }

    #[test]
    fn bounds_and_find() {
        let c = corpus(&["a", "b", "d"]);
        assert_eq!(c.lower_bound("b"), 1);
        assert_eq!(c.upper_bound("b"), 2);
        assert_eq!(c.lower_bound("c"), 2);
        assert_eq!(c.upper_bound("z"), 3);
        assert_eq!(c.find("d"), Some(2));
        assert_eq!(c.find("c"), None);
        assert!(corpus(&[]).is_empty());
    }

    #[test]
    fn synthetic_corpus_has_exactly_the_requested_count() {
        for n in [0, 1, 10, 5_000] {
            assert_eq!(Corpus::synthetic(n, 3).len(), n);
        }
        let a: Vec<String> = Corpus::synthetic(500, 9).iter().map(String::from).collect();
        let b: Vec<String> = Corpus::synthetic(500, 9).iter().map(String::from).collect();
        assert_eq!(a, b, "same seed, same corpus");
    }
}
