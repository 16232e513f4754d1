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

use crate::keys::Key;

/// A body, chunk by chunk.
pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What a stored entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A document as served.
    Ok,
    /// The upstream's stub for an unpublished package.
    Unpublished,
    /// A tombstone: the upstream says the package is gone (the last body may be kept).
    Deleted,
}

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

    /// Keys (as text) starting with `prefix`, in byte order, after `after` (exclusive), at most
    /// `limit` of them. Page by passing the last key back as `after`.
    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// Opens the store a spec names: `gs://BUCKET[/PREFIX]` for GCS, anything else a folder for
/// the file store (created and checked writable).
pub async fn open(spec: &str) -> Result<std::sync::Arc<dyn Store>, String> {
    if let Some(gcs) = gcs::GcsSpec::parse(spec) {
        let store = gcs::GcsStore::connect(gcs?).await.map_err(|e| e.to_string())?;
        return Ok(std::sync::Arc::new(store));
    }
    if spec.trim().is_empty() {
        return Err("the store is empty: give a folder or gs://BUCKET[/PREFIX]".into());
    }
    let store = fs::FsStore::new(std::path::Path::new(spec));
    store.check_writable().await.map_err(|e| e.to_string())?;
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

/// A body from bytes already in memory.
pub fn body_from(bytes: impl Into<Bytes>) -> BodyStream {
    let bytes = bytes.into();
    Box::pin(futures_util::stream::iter(std::iter::once(Ok(bytes))))
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The behaviour every driver must show; each driver's tests call these.
    use super::*;
    use futures_util::StreamExt as _;

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
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list(&prefix, after.as_deref(), 3).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            after = page.last().cloned();
            all.extend(page);
        }
        let got: Vec<String> = all
            .iter()
            .map(|k| match k.parse::<Key>().unwrap() {
                Key::Packument { name, .. } => name,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        let a_only = store.list(&format!("{prefix}61"), None, 100).await.unwrap();
        assert_eq!(a_only.len(), 2, "a and ab: {a_only:?}");
        let parts = store.list(&Key::partition_prefix("o"), None, 100).await.unwrap();
        assert_eq!(parts, vec![Key::partition("o", None, Some("m")).to_string()]);
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
