//! The GCS driver: the bucket is the replica.
//!
//! One object per entry, named `[PREFIX/]` + [`Key::path`] (`v1/packument/{origin}/{hex(name)}`,
//! `v1/partition/{origin}/{hex(start)}-{hex(end)}`),
//! so any GCS client can list and read the replica. The object's body is the entry's body
//! exactly (a packument as fetched); [`Meta`] lives in the object's custom metadata (`status`,
//! `rev`, `etag`, `last-modified`, `cache-control`, `fetched-at`, `integrity`, `size`) and
//! [`Meta::version`] is the object generation.
//!
//! Writes are atomic per object (GCS never shows a partial object) and conditional when asked
//! (`ifGenerationMatch`: `0` to create, the generation read to replace). The metadata must hold
//! what is only known at the body's end (integrity, a `_rev` found while streaming), so:
//! - a body up to [`INLINE_MAX`] is hashed in memory and sent in one multipart upload with its
//!   metadata (nearly every packument: the median is ~9 KB);
//! - a larger one streams to a scratch object under `tmp/` while being hashed, then a
//!   server-side copy puts it under its name with its metadata (and the precondition), and the
//!   scratch object is deleted. A crash in between leaves only a scratch object, which the
//!   bucket's lifecycle rule removes.
//!
//! Credentials: anonymous against `STORAGE_EMULATOR_HOST` (fake-gcs-server), otherwise
//! Application Default Credentials (the metadata server on Cloud Run). Crate choice and evidence:
//! `docs/adr/002-gcs-client.md`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::objects::copy::CopyObjectRequest;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::{ListObjectsRequest, ListObjectsResponse};
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::objects::Object;
use parking_lot::Mutex;

use super::{read_head, verified, BodyStream, Entry, Expect, Hasher, Head, Listed, Meta, Status, Store, StoreError};
use crate::keys::{Key, Kind};

/// Bodies up to this size go up in one request with their metadata.
pub const INLINE_MAX: usize = 8 << 20;

/// Where a GCS store lives: `gs://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsSpec {
    pub bucket: String,
    /// Empty, or a folder-like prefix without slashes at either end.
    pub prefix: String,
}

impl GcsSpec {
    /// Parses `gs://BUCKET[/PREFIX]`; `None` when `spec` is not a `gs://` URL at all.
    pub fn parse(spec: &str) -> Option<Result<GcsSpec, String>> {
        let rest = spec.strip_prefix("gs://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=222).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Some(Err(format!(
                "`{bucket}` is not a bucket name (3-63 lowercase letters, digits, `-`, `_`, `.`)"
            )));
        }
        Some(Ok(GcsSpec {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        }))
    }
}

pub struct GcsStore {
    client: Client,
    spec: GcsSpec,
}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

impl GcsStore {
    /// Connects: anonymously to `STORAGE_EMULATOR_HOST` when it is set, else with Application
    /// Default Credentials.
    pub async fn connect(spec: GcsSpec) -> Result<GcsStore, StoreError> {
        let unavailable = |reason: String| StoreError::Unavailable {
            key: format!("gs://{}", spec.bucket),
            reason,
        };
        let config = match std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|h| !h.is_empty()) {
            Some(host) => {
                let endpoint = if host.contains("://") {
                    host
                } else {
                    format!("http://{host}")
                };
                ClientConfig {
                    storage_endpoint: endpoint.trim_end_matches('/').to_owned(),
                    ..ClientConfig::default()
                }
                .anonymous()
            }
            None => ClientConfig::default().with_auth().await.map_err(|e| {
                unavailable(format!(
                    "no Google credentials ({e}); on Cloud Run the service account is used, elsewhere run \
                     `gcloud auth application-default login` or set STORAGE_EMULATOR_HOST for an emulator"
                ))
            })?,
        };
        let http = reqwest_middleware::reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            // Between bytes, not in total: a 100 MB body may take a while, a stalled one may not.
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| unavailable(format!("HTTP client: {e}")))?;
        Ok(GcsStore {
            client: Client::new(ClientConfig {
                http: Some(reqwest_middleware::ClientBuilder::new(http).build()),
                ..config
            }),
            spec,
        })
    }

    /// The object name of `key`.
    fn object(&self, key: &Key) -> String {
        self.under(&key.path())
    }

    fn under(&self, name: &str) -> String {
        if self.spec.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.spec.prefix)
        }
    }

    /// The key text of an object name made by [`GcsStore::object`].
    fn key_text(&self, object: &str) -> Option<String> {
        let rest = if self.spec.prefix.is_empty() {
            object
        } else {
            object.strip_prefix(&self.spec.prefix)?.strip_prefix('/')?
        };
        Some(crate::keys::text_of_path(rest))
    }

    async fn stat(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        let req = GetObjectRequest {
            bucket: self.spec.bucket.clone(),
            object: self.object(key),
            ..Default::default()
        };
        match self.client.get_object(&req).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(failed(key, "stat", &e)),
        }
    }

    /// One multipart upload: body and metadata together.
    async fn upload_inline(
        &self,
        key: &Key,
        meta: &Meta,
        body: Vec<u8>,
        expect: &Expect,
    ) -> Result<Object, StoreError> {
        let req = UploadObjectRequest {
            bucket: self.spec.bucket.clone(),
            if_generation_match: precondition(key, expect)?,
            ..Default::default()
        };
        let object = Object {
            name: self.object(key),
            content_type: Some(content_type(key).to_owned()),
            metadata: Some(to_metadata(meta)),
            ..Default::default()
        };
        let kind = UploadType::Multipart(Box::new(object));
        self.client
            .upload_object(&req, body, &kind)
            .await
            .map_err(|e| conflict_or(key, expect, "upload", &e))
    }

    /// Streams `head` then `rest` to a scratch object, hashing all of it; then copies it under
    /// its name with the metadata `finish` makes from that hash, and deletes the scratch object.
    async fn upload_large(
        &self,
        key: &Key,
        head: Vec<u8>,
        rest: BodyStream,
        finish: impl FnOnce(Hasher) -> Meta,
        expect: &Expect,
    ) -> Result<Meta, StoreError> {
        // At the bucket's root whatever the store's prefix, where the lifecycle rule looks.
        let scratch = format!(
            "tmp/{}-{}-{}",
            std::process::id(),
            crate::clock::now_ms(),
            SCRATCH.fetch_add(1, Ordering::Relaxed)
        );
        let hasher = Arc::new(Mutex::new(Hasher::default()));
        let body_failed: Arc<Mutex<Option<io::Error>>> = Arc::default();
        let stream = {
            let (hasher, body_failed) = (hasher.clone(), body_failed.clone());
            futures_util::stream::once(async move { Ok(Bytes::from(head)) })
                .chain(rest)
                .inspect(move |item| match item {
                    Ok(chunk) => hasher.lock().update(chunk),
                    Err(e) => *body_failed.lock() = Some(io::Error::new(e.kind(), e.to_string())),
                })
        };
        let req = UploadObjectRequest {
            bucket: self.spec.bucket.clone(),
            ..Default::default()
        };
        let kind = UploadType::Multipart(Box::new(Object {
            name: scratch.clone(),
            content_type: Some("application/octet-stream".to_owned()),
            ..Default::default()
        }));
        let uploaded = self.client.upload_streamed_object(&req, stream, &kind).await;
        let body_failed = body_failed.lock().take();
        if let Some(source) = body_failed {
            self.remove_scratch(&scratch).await;
            return Err(StoreError::Body {
                key: key.to_string(),
                source,
            });
        }
        if let Err(e) = uploaded {
            self.remove_scratch(&scratch).await;
            return Err(failed(key, "upload", &e));
        }
        let hasher = std::mem::take(&mut *hasher.lock());
        let meta = finish(hasher);
        let copied = match precondition(key, expect) {
            Ok(if_generation_match) => {
                let req = CopyObjectRequest {
                    source_bucket: self.spec.bucket.clone(),
                    source_object: scratch.clone(),
                    destination_bucket: self.spec.bucket.clone(),
                    destination_object: self.object(key),
                    if_generation_match,
                    metadata: Some(Object {
                        name: self.object(key),
                        content_type: Some(content_type(key).to_owned()),
                        metadata: Some(to_metadata(&meta)),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                self.client
                    .copy_object(&req)
                    .await
                    .map(|object| Meta {
                        version: Some(object.generation.to_string()),
                        ..meta
                    })
                    .map_err(|e| conflict_or(key, expect, "copy", &e))
            }
            Err(e) => Err(e),
        };
        self.remove_scratch(&scratch).await;
        copied
    }

    async fn remove_scratch(&self, scratch: &str) {
        let req = DeleteObjectRequest {
            bucket: self.spec.bucket.clone(),
            object: scratch.to_owned(),
            ..Default::default()
        };
        if let Err(e) = self.client.delete_object(&req).await {
            if status_of(&e) != Some(404) {
                tracing::warn!(object = scratch, error = %e, "could not delete a scratch object; the bucket's lifecycle rule will");
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for GcsStore {
    async fn head(&self, key: &Key) -> Result<Option<Meta>, StoreError> {
        match self.stat(key).await? {
            Some(o) => from_object(key, &o).map(Some),
            None => Ok(None),
        }
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        // Metadata first, then the body of exactly that generation. If it was replaced in
        // between (404 for the old generation), read again.
        for _ in 0..3 {
            let Some(object) = self.stat(key).await? else {
                return Ok(None);
            };
            let meta = from_object(key, &object)?;
            let req = GetObjectRequest {
                bucket: self.spec.bucket.clone(),
                object: self.object(key),
                generation: Some(object.generation),
                ..Default::default()
            };
            match self.client.download_streamed_object(&req, &Range::default()).await {
                Ok(stream) => {
                    let body: BodyStream = Box::pin(stream.map_err(|e| io::Error::other(e.to_string())));
                    return Ok(Some(Entry {
                        body: verified(key, &meta.integrity, body),
                        meta,
                    }));
                }
                Err(e) if status_of(&e) == Some(404) => continue,
                Err(e) => return Err(failed(key, "download", &e)),
            }
        }
        Err(StoreError::Unavailable {
            key: key.to_string(),
            reason: "the object kept changing while being read".into(),
        })
    }

    async fn put_if(
        &self,
        key: &Key,
        mut meta: Meta,
        mut body: BodyStream,
        amend: &(dyn for<'m> Fn(&'m mut Meta) + Sync),
        expect: &Expect,
    ) -> Result<Meta, StoreError> {
        let Head {
            hasher,
            bytes: mut inline,
            overflow,
        } = read_head(key, &mut body, INLINE_MAX).await?;
        if let Some(chunk) = overflow {
            // Too large for one request: the large path hashes it all again as it streams.
            inline.extend_from_slice(&chunk);
            let finish = |h: Hasher| {
                meta.seal(h, amend);
                meta
            };
            return self.upload_large(key, inline, body, finish, expect).await;
        }
        meta.seal(hasher, amend);
        let object = self.upload_inline(key, &meta, inline, expect).await?;
        meta.version = Some(object.generation.to_string());
        Ok(meta)
    }

    async fn delete(&self, key: &Key) -> Result<bool, StoreError> {
        let req = DeleteObjectRequest {
            bucket: self.spec.bucket.clone(),
            object: self.object(key),
            ..Default::default()
        };
        match self.client.delete_object(&req).await {
            Ok(()) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(failed(key, "delete", &e)),
        }
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Listed>, StoreError> {
        if prefix.contains('/') {
            return Err(StoreError::Prefix(prefix.to_owned()));
        }
        let object_prefix = self.under(&prefix.replace(':', "/"));
        let start = after.filter(|a| *a >= prefix).map(|a| self.under(&a.replace(':', "/")));
        let mut out = Vec::new();
        let mut page_token = None;
        while out.len() < limit {
            let page = self
                .list_page(
                    &object_prefix,
                    ListObjectsRequest {
                        start_offset: start.clone(),
                        max_results: Some((limit - out.len() + 1).min(1000) as i32),
                        page_token: page_token.take(),
                        ..Default::default()
                    },
                )
                .await?;
            for object in page.items.unwrap_or_default() {
                // `startOffset` is inclusive; `after` is not.
                if Some(&object.name) == start.as_ref() {
                    continue;
                }
                let Some(text) = self.key_text(&object.name) else {
                    continue;
                };
                // The listing carries each object's metadata: no request per entry.
                out.push(Listed::read(text, |key| from_object(key, &object)));
                if out.len() == limit {
                    break;
                }
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => page_token = Some(t),
                None => break,
            }
        }
        // In object-name order, which pages consistently with `startOffset`; for packuments
        // (a fixed prefix, then hex) it is the keys' byte order, as the trait asks.
        Ok(out)
    }

    async fn origins(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let prefix = self.under(&format!("v1/{}/", kind.as_str()));
        // Checkpoints are objects named by their origin; the others are folders of them.
        let folders = kind != Kind::Checkpoint;
        let mut ids = Vec::new();
        let mut page_token = None;
        loop {
            let more = ListObjectsRequest {
                delimiter: Some("/".to_owned()),
                page_token: page_token.take(),
                ..Default::default()
            };
            let page = self.list_page(&prefix, more).await?;
            if folders {
                let names = page.prefixes.unwrap_or_default();
                ids.extend(
                    names
                        .iter()
                        .filter_map(|p| p.strip_prefix(&prefix))
                        .map(|id| id.trim_end_matches('/').to_owned()),
                );
            } else {
                let items = page.items.unwrap_or_default();
                ids.extend(
                    items
                        .iter()
                        .filter_map(|o| o.name.strip_prefix(&prefix))
                        .map(str::to_owned),
                );
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => page_token = Some(t),
                None => break,
            }
        }
        ids.sort();
        Ok(ids)
    }
}

impl GcsStore {
    /// One page of the objects under `prefix`, with the rest of the request from `more`.
    async fn list_page(&self, prefix: &str, more: ListObjectsRequest) -> Result<ListObjectsResponse, StoreError> {
        let req = ListObjectsRequest {
            bucket: self.spec.bucket.clone(),
            prefix: Some(prefix.to_owned()),
            ..more
        };
        self.client
            .list_objects(&req)
            .await
            .map_err(|e| failed_at(prefix, "list", &e))
    }

    /// Whether the bucket exists (a one-object listing: it needs only the permission to list
    /// objects, which every user of the replica has, unlike reading the bucket's own metadata).
    pub async fn bucket_exists(&self) -> Result<bool, StoreError> {
        let req = ListObjectsRequest {
            bucket: self.spec.bucket.clone(),
            max_results: Some(1),
            ..Default::default()
        };
        match self.client.list_objects(&req).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(failed_at(&format!("gs://{}", self.spec.bucket), "list", &e)),
        }
    }
}

fn content_type(key: &Key) -> &'static str {
    match key {
        Key::Packument { .. } | Key::Partition { .. } | Key::Checkpoint { .. } => "application/json",
    }
}

fn to_metadata(meta: &Meta) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let status = match meta.status {
        Status::Ok => "ok",
        Status::Unpublished => "unpublished",
        Status::Deleted => "deleted",
    };
    m.insert("status".to_owned(), status.to_owned());
    let optional = [
        ("rev", &meta.rev),
        ("etag", &meta.etag),
        ("last-modified", &meta.last_modified),
        ("cache-control", &meta.cache_control),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            m.insert(name.to_owned(), v.clone());
        }
    }
    m.insert("fetched-at".to_owned(), meta.fetched_at.to_string());
    m.insert("integrity".to_owned(), meta.integrity.clone());
    m.insert("size".to_owned(), meta.size.to_string());
    m
}

fn from_object(key: &Key, object: &Object) -> Result<Meta, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let empty = HashMap::new();
    let m = object.metadata.as_ref().unwrap_or(&empty);
    let status = match m.get("status").map(String::as_str) {
        Some("ok") => Status::Ok,
        Some("unpublished") => Status::Unpublished,
        Some("deleted") => Status::Deleted,
        other => return Err(corrupt(format!("object metadata `status` is {other:?}"))),
    };
    let integrity = m
        .get("integrity")
        .filter(|i| i.starts_with("sha256-"))
        .ok_or_else(|| corrupt("object metadata has no `integrity`".into()))?;
    let number = |name: &str| -> Result<u64, StoreError> {
        m.get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(format!("object metadata `{name}` is missing or not a number")))
    };
    let size = number("size")?;
    if size != object.size as u64 {
        return Err(corrupt(format!(
            "metadata says {size} bytes, the object has {}",
            object.size
        )));
    }
    Ok(Meta {
        status,
        rev: m.get("rev").cloned(),
        etag: m.get("etag").cloned(),
        last_modified: m.get("last-modified").cloned(),
        cache_control: m.get("cache-control").cloned(),
        fetched_at: number("fetched-at")?,
        integrity: integrity.clone(),
        size,
        version: Some(object.generation.to_string()),
    })
}

fn precondition(key: &Key, expect: &Expect) -> Result<Option<i64>, StoreError> {
    match expect {
        Expect::Any => Ok(None),
        Expect::Absent => Ok(Some(0)),
        Expect::Version(v) => v.parse().map(Some).map_err(|_| StoreError::Conflict {
            key: key.to_string(),
            expected: expect.clone(),
        }),
    }
}

/// The HTTP status of a failed request, when there was one.
fn status_of(e: &gcloud_storage::http::Error) -> Option<u16> {
    use gcloud_storage::http::Error;
    match e {
        Error::Response(r) => Some(r.code),
        Error::HttpClient(r) | Error::RawResponse(r, _) => r.status().map(|s| s.as_u16()),
        _ => None,
    }
}

fn conflict_or(key: &Key, expect: &Expect, what: &str, e: &gcloud_storage::http::Error) -> StoreError {
    if status_of(e) == Some(412) {
        StoreError::Conflict {
            key: key.to_string(),
            expected: expect.clone(),
        }
    } else {
        failed(key, what, e)
    }
}

fn failed(key: &Key, what: &str, e: &gcloud_storage::http::Error) -> StoreError {
    failed_at(&key.to_string(), what, e)
}

fn failed_at(at: &str, what: &str, e: &gcloud_storage::http::Error) -> StoreError {
    let status = status_of(e).map_or(String::new(), |s| format!(" ({s})"));
    StoreError::Unavailable {
        key: at.to_owned(),
        reason: format!("GCS {what} failed{status}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, conformance_suite};
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(GcsSpec::parse("/var/replica"), None);
        assert_eq!(
            GcsSpec::parse("gs://replica").unwrap().unwrap(),
            GcsSpec {
                bucket: "replica".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            GcsSpec::parse("gs://my-bucket/npm/replica/").unwrap().unwrap().prefix,
            "npm/replica"
        );
        let bad = GcsSpec::parse("gs://Bad_Bucket!").unwrap().unwrap_err();
        assert!(bad.contains("`Bad_Bucket!` is not a bucket name"), "{bad}");
        assert!(GcsSpec::parse("gs://").unwrap().is_err());
    }

    #[test]
    fn metadata_round_trips_and_bad_metadata_is_corrupt() {
        let key = Key::packument("o", "x");
        let mut meta = Meta::new(Status::Unpublished, 42);
        meta.rev = Some("3-c".into());
        meta.etag = Some("\"e\"".into());
        meta.integrity = super::super::integrity_of(b"{}");
        meta.size = 2;
        let object = Object {
            metadata: Some(to_metadata(&meta)),
            size: 2,
            generation: 7,
            ..Default::default()
        };
        meta.version = Some("7".into());
        assert_eq!(from_object(&key, &object).unwrap(), meta);
        let truncated = Object {
            size: 1,
            ..object.clone()
        };
        assert!(matches!(from_object(&key, &truncated), Err(StoreError::Corrupt { .. })));
        let bare = Object {
            metadata: None,
            ..object
        };
        assert!(matches!(from_object(&key, &bare), Err(StoreError::Corrupt { .. })));
    }

    /// A store in a fresh bucket of its own fake-gcs-server (installed by
    /// `scripts/install-fake-gcs`; `ALL_DOCS_FAKE_GCS_SERVER` names another binary), under a
    /// prefix, so the prefix handling is part of every case.
    struct Fixture {
        store: GcsStore,
        _server: FakeGcs,
    }

    impl std::ops::Deref for Fixture {
        type Target = GcsStore;
        fn deref(&self) -> &GcsStore {
            &self.store
        }
    }

    async fn fixture(case: &str) -> Fixture {
        let server = FakeGcs::start().await;
        let bucket: String = case.replace('_', "-").chars().take(63).collect();
        server.bucket(&bucket).await;
        let store = server
            .store(GcsSpec {
                bucket,
                prefix: "some/prefix".into(),
            })
            .await;
        Fixture { store, _server: server }
    }

    conformance_suite!(fixture);

    #[tokio::test]
    async fn a_large_write_leaves_no_scratch_object_and_a_missing_bucket_is_told_apart() {
        let server = FakeGcs::start().await;
        server.bucket("c-large").await;
        let store = server
            .store(GcsSpec {
                bucket: "c-large".into(),
                prefix: String::new(),
            })
            .await;
        conformance::streams_large_bodies(&store).await;
        let scratch = store
            .client
            .list_objects(&ListObjectsRequest {
                bucket: "c-large".into(),
                prefix: Some("tmp/".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(scratch.items.unwrap_or_default().is_empty());
        assert!(store.bucket_exists().await.unwrap());
        let missing = server
            .store(GcsSpec {
                bucket: "no-such-bucket".into(),
                prefix: String::new(),
            })
            .await;
        assert!(!missing.bucket_exists().await.unwrap());
    }

    struct FakeGcs {
        child: std::process::Child,
        endpoint: String,
    }

    impl FakeGcs {
        async fn start() -> FakeGcs {
            let bin = std::env::var_os("ALL_DOCS_FAKE_GCS_SERVER").map_or_else(
                || {
                    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                        .join("target/tools/fake-gcs-server/fake-gcs-server")
                },
                std::path::PathBuf::from,
            );
            assert!(
                bin.exists(),
                "fake-gcs-server is not at {} (run scripts/install-fake-gcs, or set ALL_DOCS_FAKE_GCS_SERVER)",
                bin.display()
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = std::process::Command::new(bin)
                .args([
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-backend",
                    "memory",
                    "-log-level",
                    "error",
                ])
                .args(["-port", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let endpoint = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::new();
            for _ in 0..200 {
                if http.get(format!("{endpoint}/storage/v1/b")).send().await.is_ok() {
                    return FakeGcs { child, endpoint };
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("fake-gcs-server did not answer on {endpoint}");
        }

        async fn bucket(&self, name: &str) {
            let resp = reqwest::Client::new()
                .post(format!("{}/storage/v1/b?project=test", self.endpoint))
                .json(&serde_json::json!({ "name": name }))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
        }

        async fn store(&self, spec: GcsSpec) -> GcsStore {
            let config = ClientConfig {
                storage_endpoint: self.endpoint.clone(),
                ..ClientConfig::default()
            }
            .anonymous();
            GcsStore {
                client: Client::new(config),
                spec,
            }
        }
    }

    impl Drop for FakeGcs {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
