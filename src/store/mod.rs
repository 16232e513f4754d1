//! Storage: one interface, several drivers. Only this module touches stored data.
//!
//! An entry is a body (the packument JSON exactly as fetched, or a partition's rows) plus
//! [`Meta`]: what is needed to revalidate it (ETag, Last-Modified, Cache-Control, fetched-at),
//! what it is (status, `rev`), and an integrity hash of the body that every read verifies.
//!
//! Bodies stream in and out ([`BodyStream`]), so a 100 MB document never sits in memory
//! twice. A `put` whose body stream fails (a truncated download) commits nothing and leaves
//! the previous entry as it was.
//!
//! Drivers: [`fs::FsStore`] (the embedded default: atomic temp file + fsync + rename, safe for
//! concurrent writers), [`gcs::GcsStore`] (the cloud replica: one object per entry, conditional
//! writes with `ifGenerationMatch`) and [`memory::MemoryStore`] (tests). [`open`] picks one from
//! a store spec: `gs://BUCKET[/PREFIX]` or a folder.

pub mod fs;
pub mod gcs;
pub mod memory;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::keys::{Key, Kind};

/// A body, chunk by chunk.
pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub use all_docs_core::status::Status;

/// Everything stored beside a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// Unix time in milliseconds.
    pub fetched_at: u64,
    /// `sha256-<base64>` of the body; set by the store on `put`.
    #[serde(default)]
    pub integrity: String,
    /// Body length in bytes; set by the store on `put`.
    #[serde(default)]
    pub size: u64,
    /// The driver's token for this exact stored state, for conditional writes
    /// ([`Expect::Version`]): the object generation on GCS, integrity + fetched-at + status
    /// elsewhere. Filled in by
    /// the store on every read and write; never stored.
    #[serde(skip)]
    pub version: Option<String>,
}

impl Meta {
    pub fn new(status: Status, fetched_at: u64) -> Meta {
        Meta {
            status,
            rev: None,
            etag: None,
            last_modified: None,
            cache_control: None,
            fetched_at,
            integrity: String::new(),
            size: 0,
            version: None,
        }
    }

    /// Completes the metadata once the whole body has been read: `amend` (for what only the end
    /// of the body tells), then the body's size and integrity. Every driver calls it before it
    /// commits.
    pub fn seal(&mut self, body: Hasher, amend: &(dyn for<'m> Fn(&'m mut Meta) + Sync)) {
        amend(self);
        self.size = body.len();
        self.integrity = body.integrity();
    }

    /// The precondition that replaces exactly this stored state (or creates, when there was none).
    pub fn expect_replacing(stored: Option<&Meta>) -> Expect {
        match stored {
            None => Expect::Absent,
            Some(m) => m.version.clone().map_or(Expect::Any, Expect::Version),
        }
    }
}

/// The version of an entry in drivers without one of their own (file, memory): what it holds and
/// when it was written, so a tombstone keeping the old body is still a new version.
pub(crate) fn content_version(meta: &Meta) -> String {
    format!("{}@{}:{:?}", meta.integrity, meta.fetched_at, meta.status)
}

/// What a conditional write expects of the entry it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// Write only if there is no entry (GCS: `ifGenerationMatch=0`).
    Absent,
    /// Write only if the entry is still at this [`Meta::version`] (GCS: `ifGenerationMatch=N`).
    Version(String),
}

/// A stored entry being read: its metadata and a body stream that fails at its end if the
/// bytes do not match `meta.integrity`.
pub struct Entry {
    pub meta: Meta,
    pub body: BodyStream,
}

impl Entry {
    /// Reads the whole body (verified). For small entries: partitions, tests.
    pub async fn bytes(self) -> io::Result<Vec<u8>> {
        use futures_util::StreamExt as _;
        let mut out = Vec::with_capacity(self.meta.size as usize);
        let mut body = self.body;
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} `{path}`: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("stored entry `{key}` is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("the body of `{key}` failed while being stored: {source}")]
    Body {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("`{0}` is not a key prefix this store can list")]
    Prefix(String),
    /// A conditional write found the entry changed (or created) by another writer.
    #[error("`{key}` was changed by another writer (expected {expected:?})")]
    Conflict { key: String, expected: Expect },
    /// The store itself is unreachable or refused the request (a dependency is down).
    #[error("store request for `{key}` failed: {reason}")]
    Unavailable { key: String, reason: String },
}

/// The storage interface every driver implements.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The entry's metadata, without its body.
    async fn head(&self, key: &Key) -> Result<Option<Meta>, StoreError>;

    async fn has(&self, key: &Key) -> Result<bool, StoreError> {
        Ok(self.head(key).await?.is_some())
    }

    /// The entry, with a body that verifies its integrity as it is read.
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError>;

    /// Stores `body` under `key`, atomically: readers see the old entry or the new one, never a
    /// mix. Fills in `integrity` and `size`, and returns the stored metadata.
    async fn put(&self, key: &Key, meta: Meta, body: BodyStream) -> Result<Meta, StoreError> {
        self.put_with(key, meta, body, &|_| {}).await
    }

    /// [`Store::put`], with `amend` called on the metadata once the whole body has been read
    /// and before anything is committed (for what is only known at the end, like a `_rev`
    /// found while streaming).
    async fn put_with(
        &self,
        key: &Key,
        meta: Meta,
        body: BodyStream,
        amend: &(dyn for<'m> Fn(&'m mut Meta) + Sync),
    ) -> Result<Meta, StoreError> {
        self.put_if(key, meta, body, amend, &Expect::Any).await
    }

    /// [`Store::put_with`], committed only if the stored entry is as `expect` says; otherwise
    /// [`StoreError::Conflict`] and nothing changes. Redelivered or racing work items use it so
    /// that a stale writer never replaces a newer entry.
    async fn put_if(
        &self,
        key: &Key,
        meta: Meta,
        body: BodyStream,
        amend: &(dyn for<'m> Fn(&'m mut Meta) + Sync),
        expect: &Expect,
    ) -> Result<Meta, StoreError>;

    /// Removes the entry; `false` when there was none.
    async fn delete(&self, key: &Key) -> Result<bool, StoreError>;

    /// Entries whose key (as text) starts with `prefix`, in byte order of their keys, after
    /// `after` (exclusive), at most `limit` of them, each with its metadata: one listing
    /// answers what an index or counts need, without a request per entry. Page by passing the
    /// last key back as `after`.
    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Listed>, StoreError>;

    /// The origin ids this store holds entries of `kind` for, sorted.
    async fn origins(&self, kind: Kind) -> Result<Vec<String>, StoreError>;

    /// Removes what interrupted writes left behind (temporary files, scratch objects) once
    /// nothing has written to it for `idle`; returns how many were removed and the bytes freed.
    /// Drivers whose writes leave nothing, or whose platform cleans up (a bucket's lifecycle
    /// rule), do nothing.
    async fn sweep_temporaries(&self, idle: std::time::Duration) -> Result<(u64, u64), StoreError> {
        let _ = idle;
        Ok((0, 0))
    }
}

/// One entry of a [`Store::list`]ing: its key as text, and its metadata, or why that could
/// not be read (a corrupt entry does not end the listing, so `cache validate` can report every
/// one).
#[derive(Debug)]
pub struct Listed {
    pub key: String,
    pub meta: Result<Meta, StoreError>,
}

impl Listed {
    /// The listed entry whose key reads `text`, with the metadata `read` finds for that key (a
    /// key that does not parse is a corrupt entry too).
    pub(crate) fn read(text: String, read: impl FnOnce(&Key) -> Result<Meta, StoreError>) -> Listed {
        let meta = text
            .parse::<Key>()
            .map_err(|e| StoreError::Corrupt {
                key: text.clone(),
                reason: e.to_string(),
            })
            .and_then(|key| read(&key));
        Listed { key: text, meta }
    }
}

/// Lists every entry under `prefix`, page by page, calling `f` with each (in byte order of the
/// keys); stops at the first error `f` returns.
pub async fn for_each<E: From<StoreError>>(
    store: &dyn Store,
    prefix: &str,
    mut f: impl FnMut(Listed) -> Result<(), E>,
) -> Result<(), E> {
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref(), LIST_PAGE).await?;
        let Some(last) = page.last().map(|l| l.key.clone()) else {
            return Ok(());
        };
        for listed in page {
            f(listed)?;
        }
        after = Some(last);
    }
}

/// Entries asked for per listing request.
pub const LIST_PAGE: usize = 1_000;

/// What a command does with the store it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: the replica must already be there (a missing folder is an error, not an
    /// empty replica).
    Read,
    /// Writes too: a folder is created if needed and checked writable.
    Write,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The spec, or what it names, is wrong (exit 2).
    #[error("store `{spec}`: {reason}")]
    Bad { spec: String, reason: String },
    /// The store is there but could not be reached (exit 1).
    #[error("store `{spec}`: {source}")]
    Unavailable {
        spec: String,
        #[source]
        source: StoreError,
    },
}

/// Opens the store a spec names: `gs://BUCKET[/PREFIX]` for GCS (the bucket must exist), a
/// folder path for the file store. Any other `scheme://` is refused rather than taken for a
/// folder, so a mistyped cloud spec never reads as an empty local replica.
pub async fn open(spec: &str, access: Access) -> Result<std::sync::Arc<dyn Store>, OpenError> {
    let bad = |reason: String| OpenError::Bad {
        spec: spec.to_owned(),
        reason,
    };
    if let Some(gcs) = gcs::GcsSpec::parse(spec) {
        let gcs = gcs.map_err(bad)?;
        let bucket = gcs.bucket.clone();
        let store = gcs::GcsStore::connect(gcs)
            .await
            .map_err(|source| OpenError::Unavailable {
                spec: spec.to_owned(),
                source,
            })?;
        match store.bucket_exists().await {
            Ok(true) => {}
            Ok(false) => return Err(bad(format!("bucket `{bucket}` does not exist"))),
            Err(source) => {
                return Err(OpenError::Unavailable {
                    spec: spec.to_owned(),
                    source,
                })
            }
        }
        return Ok(std::sync::Arc::new(store));
    }
    if spec.trim().is_empty() {
        return Err(bad("empty: give a folder or gs://BUCKET[/PREFIX]".into()));
    }
    if let Some((scheme, _)) = spec.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err(bad(format!(
                "`{scheme}://` is not a store this program knows: give a folder or gs://BUCKET[/PREFIX]"
            )));
        }
    }
    let root = std::path::Path::new(spec);
    let store = fs::FsStore::new(root);
    match access {
        Access::Write => store.check_writable().await.map_err(|e| bad(e.to_string()))?,
        Access::Read if root.is_dir() => {}
        Access::Read if root.exists() => return Err(bad("not a folder".into())),
        Access::Read => return Err(bad("no such folder (nothing has been replicated there)".into())),
    }
    Ok(std::sync::Arc::new(store))
}

/// A running SHA-256 of a body, and its `sha256-<base64>` form.
#[derive(Default, Clone)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn integrity(self) -> String {
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(self.sha.finalize())
        )
    }
}

/// `sha256-<base64>` of `bytes`.
pub fn integrity_of(bytes: &[u8]) -> String {
    let mut h = Hasher::default();
    h.update(bytes);
    h.integrity()
}

/// Wraps a body so that its end is an error when the bytes do not hash to `expected`.
pub fn verified(key: &Key, expected: &str, body: BodyStream) -> BodyStream {
    Box::pin(Verified {
        key: key.to_string(),
        expected: expected.to_owned(),
        hasher: Some(Hasher::default()),
        body,
    })
}

struct Verified {
    key: String,
    expected: String,
    hasher: Option<Hasher>,
    body: BodyStream,
}

impl Stream for Verified {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => match self.hasher.take() {
                Some(h) => {
                    let got = h.integrity();
                    if got == self.expected {
                        Poll::Ready(None)
                    } else {
                        let msg = format!(
                            "integrity mismatch for `{}`: stored {}, read {got}",
                            self.key, self.expected
                        );
                        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, msg))))
                    }
                }
                None => Poll::Ready(None),
            },
            other => other,
        }
    }
}

/// The start of a body, read into memory: what every driver does first.
pub(crate) struct Head {
    /// The hash of `bytes`.
    pub hasher: Hasher,
    pub bytes: Vec<u8>,
    /// The chunk that would have taken `bytes` past the limit (neither kept nor hashed), when
    /// the body is longer than that; the rest of the body is still in the stream.
    pub overflow: Option<Bytes>,
}

/// Reads `body` into memory up to `max` bytes (see [`Head`]); a failing body is
/// [`StoreError::Body`].
pub(crate) async fn read_head(key: &Key, body: &mut BodyStream, max: usize) -> Result<Head, StoreError> {
    use futures_util::StreamExt as _;
    let mut head = Head {
        hasher: Hasher::default(),
        bytes: Vec::new(),
        overflow: None,
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| StoreError::Body {
            key: key.to_string(),
            source,
        })?;
        if head.bytes.len() + chunk.len() > max {
            head.overflow = Some(chunk);
            break;
        }
        head.hasher.update(&chunk);
        head.bytes.extend_from_slice(&chunk);
    }
    Ok(head)
}

/// A body from bytes already in memory.
pub fn body_from(bytes: impl Into<Bytes>) -> BodyStream {
    let bytes = bytes.into();
    Box::pin(futures_util::stream::iter(std::iter::once(Ok(bytes))))
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The behaviour every driver must show. Each driver's tests expand [`conformance_suite!`]
    //! with a fixture maker, which makes every case below its own test for that driver: a case
    //! added here runs for every driver, and none can leave one out.
    use super::*;
    use futures_util::StreamExt as _;

    /// One `#[tokio::test]` per conformance case, each on a fresh store from
    /// `$fixture(case_name).await` (anything that dereferences to a driver and cleans up when
    /// dropped).
    macro_rules! conformance_suite {
        ($fixture:ident) => {
            $crate::store::conformance::conformance_suite!(
                $fixture: round_trip,
                failed_body_keeps_the_old_entry,
                lists_in_byte_order_with_paging,
                listing_carries_the_metadata,
                conditional_writes,
                streams_large_bodies,
                every_legal_name_is_stored_and_listed_in_byte_order,
                origins_are_listed_by_kind,
            );
        };
        ($fixture:ident: $($case:ident),+ $(,)?) => {
            mod conformance_cases {
                $(
                    #[tokio::test]
                    async fn $case() {
                        let fixture = super::$fixture(stringify!($case)).await;
                        $crate::store::conformance::$case(&*fixture).await;
                    }
                )+
            }
        };
    }
    pub(crate) use conformance_suite;

    /// The names of every entry under `prefix`, paging `page` at a time.
    async fn names_under(store: &dyn Store, prefix: &str, page: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let listed = store.list(prefix, after.as_deref(), page).await.unwrap();
            if listed.is_empty() {
                break;
            }
            assert!(listed.len() <= page);
            after = listed.last().map(|l| l.key.clone());
            all.extend(listed.into_iter().map(|l| match l.key.parse::<Key>().unwrap() {
                Key::Packument { name, .. } => name,
                other => panic!("unexpected {other:?}"),
            }));
        }
        all
    }

    fn meta(rev: &str) -> Meta {
        let mut m = Meta::new(Status::Ok, 1);
        m.rev = Some(rev.into());
        m.etag = Some("\"e\"".into());
        m
    }

    pub async fn round_trip(store: &dyn Store) {
        let key = Key::packument("o", "@scope/café");
        assert!(store.head(&key).await.unwrap().is_none());
        assert!(!store.has(&key).await.unwrap());
        let stored = store
            .put(&key, meta("1-a"), body_from(&b"{\"a\":1}"[..]))
            .await
            .unwrap();
        assert_eq!(stored.integrity, integrity_of(b"{\"a\":1}"));
        assert_eq!(stored.size, 7);
        assert_eq!(store.head(&key).await.unwrap(), Some(stored.clone()));
        let entry = store.get(&key).await.unwrap().unwrap();
        assert_eq!(entry.meta, stored);
        assert_eq!(entry.bytes().await.unwrap(), b"{\"a\":1}");
        // Overwrite, then delete.
        store.put(&key, meta("2-b"), body_from(&b"{}"[..])).await.unwrap();
        assert_eq!(store.head(&key).await.unwrap().unwrap().rev.as_deref(), Some("2-b"));
        assert!(store.delete(&key).await.unwrap());
        assert!(!store.delete(&key).await.unwrap());
        assert!(store.get(&key).await.unwrap().is_none());
    }

    pub async fn failed_body_keeps_the_old_entry(store: &dyn Store) {
        let key = Key::packument("o", "lodash");
        store.put(&key, meta("1-a"), body_from(&b"old"[..])).await.unwrap();
        let failing: BodyStream = Box::pin(futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"new new")),
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut")),
        ]));
        assert!(matches!(
            store.put(&key, meta("2-b"), failing).await,
            Err(StoreError::Body { .. })
        ));
        let entry = store.get(&key).await.unwrap().unwrap();
        assert_eq!(entry.meta.rev.as_deref(), Some("1-a"));
        assert_eq!(entry.bytes().await.unwrap(), b"old");
    }

    pub async fn lists_in_byte_order_with_paging(store: &dyn Store) {
        let names = ["b", "a", "@types/node", "Zed", "ab", "café", "-x", "9"];
        for n in names {
            store
                .put(&Key::packument("o", n), meta("1-a"), body_from(&b"{}"[..]))
                .await
                .unwrap();
        }
        store
            .put(&Key::packument("other", "zz"), meta("1-a"), body_from(&b"{}"[..]))
            .await
            .unwrap();
        store
            .put(
                &Key::partition("o", None, Some("m")),
                meta("1-a"),
                body_from(&b"[]"[..]),
            )
            .await
            .unwrap();
        let prefix = Key::packument_prefix("o");
        let got = names_under(store, &prefix, 3).await;
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        let a_only = store.list(&format!("{prefix}61"), None, 100).await.unwrap();
        assert_eq!(a_only.len(), 2, "a and ab: {a_only:?}");
        let parts = store.list(&Key::partition_prefix("o"), None, 100).await.unwrap();
        let parts: Vec<&str> = parts.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(parts, vec![Key::partition("o", None, Some("m")).to_string()]);
    }

    pub async fn listing_carries_the_metadata(store: &dyn Store) {
        let mut stored = Vec::new();
        for (name, status) in [("a", Status::Ok), ("b", Status::Unpublished), ("c", Status::Deleted)] {
            let mut m = meta(&format!("1-{name}"));
            m.status = status;
            let key = Key::packument("o", name);
            stored.push(store.put(&key, m, body_from(name.repeat(3))).await.unwrap());
        }
        let listed = store.list(&Key::packument_prefix("o"), None, 10).await.unwrap();
        assert_eq!(listed.len(), 3);
        for (l, want) in listed.iter().zip(&stored) {
            let got = l.meta.as_ref().unwrap();
            assert_eq!(got, want, "{}", l.key);
            assert_eq!(
                got.version, want.version,
                "the version too, for a conditional write after it"
            );
        }
    }

    /// Names of every length a registry allows (up to 214 bytes, scoped or not, some not ASCII),
    /// at the edges of where a driver may have to split a name (file names hold 255 bytes), are
    /// stored, read back, replaced conditionally, listed in byte order (also page by page across
    /// those edges) and deleted; partitions whose ends are such names too.
    pub async fn every_legal_name_is_stored_and_listed_in_byte_order(store: &dyn Store) {
        let base = "a".repeat(126);
        let mut names: Vec<String> = vec![
            "a".into(),
            "ab".into(),
            "abc".into(),
            format!("{base}a"),                   // 127 bytes: the longest single file name
            format!("{base}ab"),                  // 128: the shortest cut one, same first 127
            format!("{base}a{}", "-".repeat(87)), // 214, same first 127
            format!("{base}a{}", "z".repeat(87)), // 214, same first 127
            format!("{base}a0"),
            format!("{base}b"), // 127, after all of those
            base.clone(),       // 126: a prefix of all of them
            "z".repeat(214),
            format!("@{}/{}", "s".repeat(100), "n".repeat(112)), // scoped, 214
            format!("@{}/{}", "s".repeat(100), "n".repeat(20)),
            format!("{}é", "é".repeat(106)),     // 214 bytes, not ASCII
            format!("{base}{}", "é".repeat(44)), // 214 bytes, cut inside a character's hex
        ];
        for n in &names {
            assert!(n.len() <= 214, "{} bytes", n.len());
            let key = Key::packument("o", n);
            store.put(&key, meta("1-a"), body_from(n.clone())).await.unwrap();
        }
        names.sort();
        for page in [1, 2, 5, 100] {
            assert_eq!(
                names_under(store, &Key::packument_prefix("o"), page).await,
                names,
                "pages of {page}"
            );
        }
        for n in &names {
            let key = Key::packument("o", n);
            let head = store.head(&key).await.unwrap().expect("stored");
            let entry = store.get(&key).await.unwrap().unwrap();
            assert_eq!(entry.bytes().await.unwrap(), n.as_bytes());
            let expect = Meta::expect_replacing(Some(&head));
            store
                .put_if(&key, meta("2-a"), body_from(&b"{}"[..]), &|_| {}, &expect)
                .await
                .unwrap();
            let again = store
                .put_if(&key, meta("2-b"), body_from(&b"{}"[..]), &|_| {}, &expect)
                .await;
            assert!(matches!(again, Err(StoreError::Conflict { .. })), "{n}: {again:?}");
        }
        let long = &names[names.len() - 1];
        for (start, end) in [
            (None, Some(long.as_str())),
            (Some(long.as_str()), None),
            (Some(&names[3][..]), Some(long.as_str())),
        ] {
            let key = Key::partition("o", start, end);
            store.put(&key, meta("1-a"), body_from(&b"[]"[..])).await.unwrap();
            assert!(store.get(&key).await.unwrap().is_some(), "{key}");
        }
        let parts = store.list(&Key::partition_prefix("o"), None, 100).await.unwrap();
        assert_eq!(parts.len(), 3, "{parts:?}");
        for n in &names {
            assert!(store.delete(&Key::packument("o", n)).await.unwrap(), "{n}");
        }
        assert!(names_under(store, &Key::packument_prefix("o"), 100).await.is_empty());
    }

    pub async fn origins_are_listed_by_kind(store: &dyn Store) {
        assert!(store.origins(Kind::Packument).await.unwrap().is_empty());
        for origin in ["reg-b", "reg-a"] {
            store
                .put(&Key::packument(origin, "x"), meta("1-a"), body_from(&b"{}"[..]))
                .await
                .unwrap();
        }
        store
            .put(&Key::partition("rep", None, None), meta("1-a"), body_from(&b"[]"[..]))
            .await
            .unwrap();
        store
            .put(&Key::checkpoint("rep"), meta("1-a"), body_from(&b"{}"[..]))
            .await
            .unwrap();
        assert_eq!(store.origins(Kind::Packument).await.unwrap(), ["reg-a", "reg-b"]);
        assert_eq!(store.origins(Kind::Partition).await.unwrap(), ["rep"]);
        assert_eq!(store.origins(Kind::Checkpoint).await.unwrap(), ["rep"]);
    }

    pub async fn conditional_writes(store: &dyn Store) {
        let key = Key::packument("o", "cond");
        let body = |b: &'static [u8]| body_from(b);
        let created = store
            .put_if(&key, meta("1-a"), body(b"one"), &|_| {}, &Expect::Absent)
            .await
            .unwrap();
        assert!(created.version.is_some(), "a write reports the new version");
        // A second create, as from a redelivered message, changes nothing.
        let again = store
            .put_if(&key, meta("1-b"), body(b"two"), &|_| {}, &Expect::Absent)
            .await;
        assert!(matches!(again, Err(StoreError::Conflict { .. })), "{again:?}");
        assert_eq!(store.get(&key).await.unwrap().unwrap().bytes().await.unwrap(), b"one");
        // Replacing the version just read works once; the stale version then conflicts.
        let head = store.head(&key).await.unwrap().unwrap();
        assert_eq!(head.version, created.version);
        let expect = Meta::expect_replacing(Some(&head));
        let replaced = store
            .put_if(&key, meta("2-a"), body(b"three"), &|_| {}, &expect)
            .await
            .unwrap();
        assert_ne!(replaced.version, created.version);
        let stale = store.put_if(&key, meta("2-b"), body(b"four"), &|_| {}, &expect).await;
        assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
        let entry = store.get(&key).await.unwrap().unwrap();
        assert_eq!(entry.meta.rev.as_deref(), Some("2-a"));
        assert_eq!(entry.bytes().await.unwrap(), b"three");
        // A version for an entry that is gone conflicts too.
        assert!(store.delete(&key).await.unwrap());
        let gone = store.put_if(&key, meta("3-a"), body(b"five"), &|_| {}, &expect).await;
        assert!(matches!(gone, Err(StoreError::Conflict { .. })), "{gone:?}");
        assert!(store.head(&key).await.unwrap().is_none());
    }

    pub async fn streams_large_bodies(store: &dyn Store) {
        let key = Key::packument("o", "big");
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let chunks: Vec<io::Result<Bytes>> = (0..20).map(|_| Ok(chunk.clone())).collect();
        let stored = store
            .put(
                &key,
                Meta::new(Status::Ok, 1),
                Box::pin(futures_util::stream::iter(chunks)),
            )
            .await
            .unwrap();
        assert_eq!(stored.size, 20 << 20);
        let mut body = store.get(&key).await.unwrap().unwrap().body;
        let mut total = 0;
        while let Some(c) = body.next().await {
            total += c.unwrap().len();
        }
        assert_eq!(total, 20 << 20);
    }
}
