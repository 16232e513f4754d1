//! The handlers: what each work item does, with I/O. The same functions serve the local runner
//! and (later) the Pub/Sub push service.
//!
//! The decisions they apply are pure and live in [`crate::work`] (`diff_rows`,
//! `plan_packument`); the upstream is reached only through [`crate::registry`], storage only
//! through [`crate::store`]. Every handler is idempotent: running it twice stores the same thing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::follow::{self, Checkpoint, Task};
use crate::keys::Key;
use crate::registry::alldocs::{self, Row};
use crate::registry::changes;
use crate::registry::client::{Client, FetchError};
use crate::registry::origin::Origin;
use crate::registry::packument::{self, Fetched};
use crate::store::{body_from, Expect, Meta, Status, Store, StoreError};
use crate::work::{self, PackumentPlan, RowDiff};

/// What the handlers need: the client, the store, and the two origins.
#[derive(Clone)]
pub struct Ctx {
    pub client: Arc<Client>,
    pub store: Arc<dyn Store>,
    pub replicate: Origin,
    pub registry: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored partition `{key}` is unreadable: {reason}")]
    BadPartition { key: String, reason: String },
    #[error("package `{0}` is listed upstream but its document answers 404")]
    ListedButMissing(String),
    #[error("package `{name}`: another writer stored rev {stored:?} while rev {wanted} was being fetched")]
    Raced {
        name: String,
        wanted: String,
        stored: Option<String>,
    },
    #[error("package `{name}`: the registry still serves rev {got:?}, older than rev {wanted} (a CDN that lags behind the change); try again later")]
    Stale {
        name: String,
        wanted: String,
        got: Option<String>,
    },
    #[error("stored checkpoint `{key}` is unreadable: {reason}")]
    BadCheckpoint { key: String, reason: String },
    /// The work an item fans out was not handed on (see [`crate::run::FanOut`]).
    #[error(transparent)]
    FanOut(#[from] crate::run::FanOutError),
}

/// The stored form of a partition: its range and rows.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionBody {
    pub start_key: Option<String>,
    pub end_key: Option<String>,
    pub rows: Vec<(String, String)>,
}

impl Ctx {
    pub fn packument_key(&self, name: &str) -> Key {
        Key::packument(self.registry.id(), name)
    }

    pub fn partition_key(&self, start: Option<&str>, end: Option<&str>) -> Key {
        Key::partition(self.replicate.id(), start, end)
    }

    /// The rows stored for a partition by its last complete run (empty if none).
    pub async fn stored_rows(
        &self,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Vec<(String, String)>, HandlerError> {
        let stored = read_partition(&*self.store, &self.partition_key(start, end)).await?;
        Ok(stored.map(|p| p.rows).unwrap_or_default())
    }

    /// `partition`: lists `[start, end)` completely and compares it with the stored rows.
    pub async fn list_partition(
        &self,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<(Vec<Row>, RowDiff), HandlerError> {
        let listed = alldocs::list_range(&self.client, &self.replicate, start, end).await?;
        // A name no registry would accept (`_design/app`, `../x`) cannot be fetched or stored
        // safely; it is reported, and the rest of the range goes on.
        let mut rows = Vec::with_capacity(listed.len());
        for row in listed {
            match work::validate_name(&row.id) {
                Ok(()) => rows.push(row),
                Err(e) => tracing::warn!(error = %e, "listed upstream under an invalid package name: not replicated"),
            }
        }
        let previous = self.stored_rows(start, end).await?;
        let diff = work::diff_rows(&previous, rows.iter().map(|r| (r.id.as_str(), r.rev.as_str())));
        Ok((rows, diff))
    }

    /// Records a finished partition: tombstones for names gone upstream, then its rows. The local
    /// runner calls it once every changed packument of the partition is stored; the service once
    /// Pub/Sub has accepted their items (a packument item that ends in the dead-letter topic is
    /// fetched again when its rev changes or the dead letters are replayed). Either way a crash
    /// before this point makes the next run list the partition again.
    pub async fn commit_partition(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        rows: &[Row],
        removed: &[String],
    ) -> Result<(), HandlerError> {
        for name in removed {
            self.tombstone(name, None).await?;
        }
        let body = PartitionBody {
            start_key: start.map(str::to_owned),
            end_key: end.map(str::to_owned),
            rows: rows.iter().map(|r| (r.id.clone(), r.rev.clone())).collect(),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| HandlerError::BadPartition {
            key: String::new(),
            reason: e.to_string(),
        })?;
        self.store
            .put(
                &self.partition_key(start, end),
                Meta::new(Status::Ok, now_ms()),
                body_from(bytes),
            )
            .await?;
        Ok(())
    }

    /// Marks a package deleted, keeping its last body; `deleted_rev` (the rev of the deletion,
    /// from the change feed) becomes the entry's rev, so a packument item for an older rev that
    /// arrives later cannot bring the package back. Conditional on the entry read: if another
    /// writer stored the key meanwhile, its entry stands (a package still gone shows up in the
    /// next listing again).
    pub async fn tombstone(&self, name: &str, deleted_rev: Option<&str>) -> Result<(), HandlerError> {
        let key = self.packument_key(name);
        let (meta, body, expect) = match self.store.get(&key).await? {
            Some(entry)
                if entry.meta.status == Status::Deleted
                    && deleted_rev.is_none_or(|r| entry.meta.rev.as_deref() == Some(r)) =>
            {
                return Ok(())
            }
            Some(entry) => {
                let expect = Meta::expect_replacing(Some(&entry.meta));
                (entry.meta, entry.body, expect)
            }
            None => (
                Meta::new(Status::Deleted, now_ms()),
                body_from(Vec::new()),
                Expect::Absent,
            ),
        };
        let mut meta = meta;
        meta.fetched_at = now_ms();
        let stored = self
            .store
            .put_if(
                &key,
                meta,
                body,
                &|m: &mut Meta| {
                    m.status = Status::Deleted;
                    if let Some(r) = deleted_rev {
                        m.rev = Some(r.to_owned());
                    }
                },
                &expect,
            )
            .await;
        match stored {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `packument`: fetches one document unless the store already has `rev`.
    pub async fn packument(&self, name: &str, rev: Option<&str>) -> Result<PackumentDone, HandlerError> {
        let key = self.packument_key(name);
        let stored = self.store.head(&key).await?;
        // A deletion recorded at this rev or a later one wins over an item for an older change
        // (which a lagging CDN might still answer with the deleted document).
        if let (Some(m), Some(wanted)) = (&stored, rev) {
            if m.status == Status::Deleted && m.rev.is_some() && !follow::is_older(m.rev.as_deref(), wanted) {
                return Ok(PackumentDone::Deleted);
            }
        }
        let plan = work::plan_packument(
            stored.as_ref().map(|m| (m.rev.as_deref(), m.etag.as_deref(), m.status)),
            rev,
        );
        let etag = match plan {
            PackumentPlan::Skip => return Ok(PackumentDone::Skipped),
            PackumentPlan::Fetch { etag } => etag,
        };
        // Replace exactly what was read: a redelivered or racing item that stored this key in the
        // meantime wins, and this one is done.
        let expect = Meta::expect_replacing(stored.as_ref());
        let fetched = packument::fetch_into(
            &self.client,
            &self.registry,
            &*self.store,
            &key,
            name,
            etag.as_deref(),
            &expect,
        )
        .await?;
        // What the registry serves may lag behind the rev this item is for (a CDN): then the
        // item is not done, whatever was stored.
        let stale = |got: Option<&str>| match rev {
            Some(wanted) if follow::is_older(got, wanted) => Err(HandlerError::Stale {
                name: name.to_owned(),
                wanted: wanted.to_owned(),
                got: got.map(str::to_owned),
            }),
            _ => Ok(()),
        };
        match fetched {
            Fetched::Stored(meta) => {
                stale(meta.rev.as_deref())?;
                Ok(PackumentDone::Stored { bytes: meta.size })
            }
            Fetched::NotModified => {
                stale(stored.as_ref().and_then(|m| m.rev.as_deref()))?;
                Ok(PackumentDone::NotModified)
            }
            // Another writer won. Fine if it stored the rev this item is for (or the item names
            // no rev); otherwise this item is not done: it fails, to be run again.
            Fetched::Superseded => {
                let now = self.store.head(&key).await?.and_then(|m| m.rev);
                match rev {
                    Some(wanted) if now.as_deref() != Some(wanted) => Err(HandlerError::Raced {
                        name: name.to_owned(),
                        wanted: wanted.to_owned(),
                        stored: now,
                    }),
                    _ => Ok(PackumentDone::Superseded),
                }
            }
            // A name asked for by hand and never stored: record the 404 as a tombstone.
            Fetched::NotFound if rev.is_none() && stored.is_none() => {
                self.tombstone(name, None).await?;
                Ok(PackumentDone::NotFound)
            }
            // A change for a package that a later change deleted: the deletion is recorded (the
            // tombstone), so there is nothing left to fetch. (A package published again after
            // its deletion comes back with its next change, or the next partition listing.)
            Fetched::NotFound if rev.is_some() && stored.as_ref().is_some_and(|m| m.status == Status::Deleted) => {
                Ok(PackumentDone::Deleted)
            }
            // Otherwise never a tombstone here: a 404 alone may be an upstream glitch, so the
            // stored document stays as is. Only a listing that no longer holds the name makes
            // it a deletion ([`Ctx::packument_or_gone`], or the next partition listing).
            Fetched::NotFound => Err(HandlerError::ListedButMissing(name.to_owned())),
        }
    }
}

impl Ctx {
    /// The key of the replication origin's change-feed checkpoint.
    pub fn checkpoint_key(&self) -> Key {
        Key::checkpoint(self.replicate.id())
    }

    /// The stored checkpoint and its metadata (for a conditional write after it).
    pub async fn read_checkpoint(&self) -> Result<Option<(Checkpoint, Meta)>, HandlerError> {
        read_checkpoint(&*self.store, &self.checkpoint_key()).await
    }

    /// Stores `cp` if the stored checkpoint is as `expect` says (else
    /// [`StoreError::Conflict`]: another follower moved it first).
    /// Returns the stored metadata (whose `version` the next conditional write expects).
    pub async fn write_checkpoint(&self, cp: &Checkpoint, expect: &Expect) -> Result<Meta, HandlerError> {
        let bytes = serde_json::to_vec(cp).map_err(|e| HandlerError::BadCheckpoint {
            key: self.checkpoint_key().to_string(),
            reason: e.to_string(),
        })?;
        let mut meta = Meta::new(Status::Ok, now_ms());
        meta.rev = Some(cp.seq.to_string());
        Ok(self
            .store
            .put_if(&self.checkpoint_key(), meta, body_from(bytes), &|_| {}, expect)
            .await?)
    }

    /// Before a bootstrap enumerates: reads the upstream's `update_seq` and records it as the
    /// checkpoint unless the stored one is lower (see [`follow::bootstrap_checkpoint`]).
    /// Returns the checkpoint in force.
    pub async fn record_bootstrap_seq(&self) -> Result<u64, HandlerError> {
        let update_seq = changes::update_seq(&self.client, &self.replicate).await?;
        loop {
            let stored = self.read_checkpoint().await?;
            let Some(cp) = follow::bootstrap_checkpoint(stored.as_ref().map(|(c, _)| c), update_seq, now_ms()) else {
                return Ok(stored.map_or(update_seq, |(c, _)| c.seq));
            };
            let expect = Meta::expect_replacing(stored.as_ref().map(|(_, m)| m));
            match self.write_checkpoint(&cp, &expect).await {
                Err(HandlerError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
                Ok(_) => {
                    tracing::info!(checkpoint = cp.seq, "change-feed checkpoint recorded");
                    return Ok(cp.seq);
                }
            }
        }
    }

    /// Whether the upstream confirms that `name` is gone: a fresh `_all_docs` listing of exactly
    /// its key (`[name, name\0)`, through the same client and governor as every listing) no
    /// longer holds it. Only such a complete, valid listing says `true`; a 404, a 5xx, a cut
    /// body or a timeout is an error, and an error is never a deletion. (The listing is the
    /// authority here as in [`Ctx::commit_partition`], which tombstones the names a partition's
    /// listing no longer holds.)
    pub async fn confirm_gone(&self, name: &str) -> Result<bool, HandlerError> {
        let end = format!("{name}\0");
        let rows = alldocs::list_range(&self.client, &self.replicate, Some(name), Some(&end)).await?;
        Ok(!rows.iter().any(|r| r.id == name))
    }

    /// A packument item, as every runner runs it: [`Ctx::packument`], tried again with backoff
    /// (1 s, doubling) for up to about `patience` in all while the registry still serves a rev
    /// older than `rev`, or a 404 for a listed package (a CDN lagging behind a change); waiting
    /// here rather than failing at once keeps a queue's delivery attempts for real failures.
    ///
    /// A package that still answers 404 then gets one more question to the upstream
    /// ([`Ctx::confirm_gone`]): gone from `_all_docs` means it was deleted upstream since it was
    /// listed. That deletion is recorded as a tombstone keeping the last body (as
    /// [`Ctx::commit_partition`] does for a name gone from a listing), so no later step takes
    /// the package for live; the change feed's row for the deletion later gives the tombstone
    /// its rev. Still listed, or the listing failed: [`HandlerError::ListedButMissing`], a
    /// failure as before, with nothing stored.
    pub async fn packument_or_gone(
        &self,
        name: &str,
        rev: Option<&str>,
        patience: std::time::Duration,
    ) -> Result<PackumentDone, HandlerError> {
        let mut wait = std::time::Duration::from_secs(1);
        let mut waited = std::time::Duration::ZERO;
        let missing = loop {
            match self.packument(name, rev).await {
                Err(HandlerError::Stale { .. } | HandlerError::ListedButMissing(_))
                    if rev.is_some() && waited + wait <= patience && !self.client.stopping() =>
                {
                    tracing::debug!(
                        package = name,
                        wait_secs = wait.as_secs(),
                        "not at the registry yet; trying again"
                    );
                    self.client.sleep(wait).await;
                    waited += wait;
                    wait *= 2;
                }
                Err(e @ HandlerError::ListedButMissing(_)) => break e,
                r => return r,
            }
        };
        match self.confirm_gone(name).await {
            Ok(true) => {
                self.tombstone(name, None).await?;
                tracing::info!(package = name, "answers 404 and is no longer listed: deleted upstream");
                Ok(PackumentDone::GoneUpstream)
            }
            Ok(false) => Err(missing),
            Err(e @ HandlerError::Fetch(FetchError::Cancelled { .. })) => Err(e),
            Err(e) => {
                tracing::warn!(package = name, error = %e, "answers 404, and whether it is still listed could not be checked");
                Err(missing)
            }
        }
    }

    /// Brings one package up to a change: a tombstone for a deletion, else the document at (at
    /// least) the change's rev. [`HandlerError::Stale`] while the registry serves an older rev.
    pub async fn apply_change(&self, task: &Task) -> Result<PackumentDone, HandlerError> {
        if task.deleted {
            self.tombstone(&task.name, Some(&task.rev)).await?;
            return Ok(PackumentDone::Deleted);
        }
        self.packument(&task.name, Some(&task.rev)).await
    }
}

/// Takes a page of the change feed into `tracker`, reporting the rows it passes over because
/// their id is not a valid package name (the local follower and the service's ticks alike).
pub fn take_feed_page(tracker: &mut follow::Tracker, page: &changes::Page, now: u64) {
    for e in tracker.add_page(page, now) {
        tracing::warn!(error = %e, "the change feed names an invalid package: not replicated");
    }
}

/// The partition stored under `key` (a [`Key::Partition`]), if any.
pub async fn read_partition(store: &dyn Store, key: &Key) -> Result<Option<PartitionBody>, HandlerError> {
    let Some(entry) = store.get(key).await? else {
        return Ok(None);
    };
    let bad = |reason: String| HandlerError::BadPartition {
        key: key.to_string(),
        reason,
    };
    let bytes = entry.bytes().await.map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| bad(e.to_string()))
}

/// The checkpoint stored under `key` (a [`Key::Checkpoint`]) and its metadata.
pub async fn read_checkpoint(store: &dyn Store, key: &Key) -> Result<Option<(Checkpoint, Meta)>, HandlerError> {
    let Some(entry) = store.get(key).await? else {
        return Ok(None);
    };
    let bad = |reason: String| HandlerError::BadCheckpoint {
        key: key.to_string(),
        reason,
    };
    let meta = entry.meta.clone();
    let bytes = entry.bytes().await.map_err(|e| bad(e.to_string()))?;
    let cp = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    Ok(Some((cp, meta)))
}

/// How a packument item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackumentDone {
    Skipped,
    /// Another writer stored the key since it was read (see [`Fetched::Superseded`]).
    Superseded,
    /// `404` for a name that was never stored: recorded as a tombstone.
    NotFound,
    NotModified,
    Stored {
        bytes: u64,
    },
    /// A change that deleted the package: recorded as a tombstone (the last body kept).
    Deleted,
    /// Still `404` after the patience, and no longer in `_all_docs`: deleted upstream since it
    /// was listed (or asked for). Recorded as a tombstone (the last body kept); see
    /// [`Ctx::packument_or_gone`].
    GoneUpstream,
}

/// A scripted upstream for unit tests: one origin whose `_all_docs` lists a fixed set of names
/// (or fails), and whose every document answers 404, as for a package deleted upstream.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use axum::extract::RawQuery;
    use axum::http::StatusCode;

    use super::Ctx;
    use crate::registry::client::{Client, ClientConfig};
    use crate::registry::origin::Origin;
    use crate::store::{body_from, Meta, Status, Store};

    /// How the scripted `_all_docs` answers.
    #[derive(Debug, Clone)]
    pub enum Listing {
        /// `200` with these names (each at rev `1-x`), as far as the asked range holds them.
        Names(Vec<&'static str>),
        /// This status with a body that parses as an empty listing.
        Fails(u16),
    }

    /// Serves `listing` on 127.0.0.1 until the test's runtime ends; returns its origin.
    pub async fn upstream(listing: Listing) -> Origin {
        let all_docs = move |RawQuery(q): RawQuery| {
            let listing = listing.clone();
            async move {
                let q = crate::sim::query::all_docs(&q.unwrap_or_default()).expect("a valid query");
                let (status, names) = match listing {
                    Listing::Names(names) => (StatusCode::OK, names),
                    Listing::Fails(code) => (StatusCode::from_u16(code).expect("a status"), Vec::new()),
                };
                let inside = |n: &str| {
                    q.start.as_deref().is_none_or(|s| n >= s)
                        && q.end
                            .as_deref()
                            .is_none_or(|e| if q.inclusive_end { n <= e } else { n < e })
                };
                let rows: Vec<_> = names
                    .iter()
                    .filter(|n| inside(n))
                    .map(|n| serde_json::json!({ "id": n, "key": n, "value": { "rev": "1-x" } }))
                    .collect();
                (
                    status,
                    axum::Json(serde_json::json!({ "total_rows": rows.len(), "offset": 0, "rows": rows })),
                )
            }
        };
        let app = axum::Router::new()
            .route("/_all_docs", axum::routing::get(all_docs))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({ "error": "not_found" })),
                )
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Origin::parse(&url).expect("origin")
    }

    /// A context on `origin` (both origins) and `store`, whose client gives up after three
    /// attempts (the fewest that let a packument's 404 be believed) so that failing answers
    /// end quickly.
    pub fn ctx(origin: Origin, store: Arc<dyn Store>) -> Ctx {
        let mut cfg = ClientConfig::default();
        cfg.governor.max_attempts = 3;
        Ctx {
            client: Arc::new(Client::new(cfg, Default::default()).expect("client")),
            store,
            replicate: origin.clone(),
            registry: origin,
        }
    }

    /// Stores `name` live at rev `1-x` with a small body.
    pub async fn store_live(ctx: &Ctx, name: &str) {
        let mut meta = Meta::new(Status::Ok, 1);
        meta.rev = Some("1-x".into());
        let body = format!(r#"{{"_id":"{name}","_rev":"1-x"}}"#);
        ctx.store
            .put(&ctx.packument_key(name), meta, body_from(body.into_bytes()))
            .await
            .expect("stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{BodyStream, Entry, Expect, Listed};

    /// A store where another writer stores `rev` under a key just before every conditional
    /// write to it, so that write loses.
    struct Racing {
        inner: MemoryStore,
        rev: String,
    }

    #[async_trait::async_trait]
    impl Store for Racing {
        async fn head(&self, key: &Key) -> Result<Option<Meta>, StoreError> {
            self.inner.head(key).await
        }

        async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
            self.inner.get(key).await
        }

        async fn put_if(
            &self,
            key: &Key,
            meta: Meta,
            body: BodyStream,
            amend: &(dyn for<'m> Fn(&'m mut Meta) + Sync),
            expect: &Expect,
        ) -> Result<Meta, StoreError> {
            if *expect != Expect::Any {
                let mut other = Meta::new(Status::Ok, 1);
                other.rev = Some(self.rev.clone());
                self.inner.put(key, other, body_from(&b"{}"[..])).await?;
            }
            self.inner.put_if(key, meta, body, amend, expect).await
        }

        async fn delete(&self, key: &Key) -> Result<bool, StoreError> {
            self.inner.delete(key).await
        }

        async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Listed>, StoreError> {
            self.inner.list(prefix, after, limit).await
        }

        async fn origins(&self, kind: crate::keys::Kind) -> Result<Vec<String>, StoreError> {
            self.inner.origins(kind).await
        }
    }

    async fn ctx_with(store: Arc<dyn Store>, sim: &crate::sim::RunningSim) -> Ctx {
        let origin = Origin::parse(&sim.url).unwrap();
        Ctx {
            client: Arc::new(Client::new(Default::default(), Default::default()).unwrap()),
            store,
            replicate: origin.clone(),
            registry: origin,
        }
    }

    #[tokio::test]
    async fn a_lost_race_is_done_only_if_the_winner_stored_the_wanted_rev() {
        let sim = crate::sim::spawn(crate::commands::parse_wrapped_sim(5)).await.unwrap();
        let probe = ctx_with(Arc::new(MemoryStore::new()), &sim).await;
        let (rows, _) = probe.list_partition(None, None).await.unwrap();
        let row = &rows[0];

        // The winner stored an older rev: this item is not done.
        let older = ctx_with(
            Arc::new(Racing {
                inner: MemoryStore::new(),
                rev: "0-older".into(),
            }),
            &sim,
        )
        .await;
        match older.packument(&row.id, Some(&row.rev)).await {
            Err(HandlerError::Raced { wanted, stored, .. }) => {
                assert_eq!(wanted, row.rev);
                assert_eq!(stored.as_deref(), Some("0-older"));
            }
            other => panic!("expected Raced, got {other:?}"),
        }

        // The winner stored the very rev wanted: done.
        let same = ctx_with(
            Arc::new(Racing {
                inner: MemoryStore::new(),
                rev: row.rev.clone(),
            }),
            &sim,
        )
        .await;
        assert_eq!(
            same.packument(&row.id, Some(&row.rev)).await.unwrap(),
            PackumentDone::Superseded
        );
        sim.stop().await;
    }

    async fn stored(ctx: &Ctx, name: &str) -> (Status, Vec<u8>) {
        let entry = ctx.store.get(&ctx.packument_key(name)).await.unwrap().expect("stored");
        (entry.meta.status, entry.bytes().await.unwrap())
    }

    /// No waiting for a CDN: the check comes right after the first 404.
    const NO_PATIENCE: std::time::Duration = std::time::Duration::ZERO;

    #[tokio::test]
    async fn a_404_for_a_name_still_listed_is_not_a_deletion() {
        use testing::{upstream, Listing};
        let ctx = testing::ctx(
            upstream(Listing::Names(vec!["a", "b"])).await,
            Arc::new(MemoryStore::new()),
        );
        testing::store_live(&ctx, "a").await;
        let before = stored(&ctx, "a").await;
        assert!(!ctx.confirm_gone("a").await.unwrap());
        // Listed at a newer rev than the stored one, but the document answers 404.
        match ctx.packument_or_gone("a", Some("2-y"), NO_PATIENCE).await {
            Err(HandlerError::ListedButMissing(name)) => assert_eq!(name, "a"),
            other => panic!("expected ListedButMissing, got {other:?}"),
        }
        assert_eq!(stored(&ctx, "a").await, before, "nothing stored changes");
    }

    #[tokio::test]
    async fn a_404_for_a_name_no_longer_listed_is_a_deletion_that_keeps_the_last_body() {
        use testing::{upstream, Listing};
        // Neighbours on both sides in byte order: only the name's own key counts.
        let ctx = testing::ctx(
            upstream(Listing::Names(vec!["@a/a", "a-b", "aa", "b"])).await,
            Arc::new(MemoryStore::new()),
        );
        testing::store_live(&ctx, "a").await;
        let (_, body) = stored(&ctx, "a").await;
        assert!(ctx.confirm_gone("a").await.unwrap());
        assert!(!ctx.confirm_gone("a-b").await.unwrap());
        assert_eq!(
            ctx.packument_or_gone("a", Some("2-y"), NO_PATIENCE).await.unwrap(),
            PackumentDone::GoneUpstream
        );
        assert_eq!(
            stored(&ctx, "a").await,
            (Status::Deleted, body),
            "a tombstone with the last body"
        );
        // Never stored: the tombstone has no body.
        assert_eq!(
            ctx.packument_or_gone("c", Some("2-y"), NO_PATIENCE).await.unwrap(),
            PackumentDone::GoneUpstream
        );
        assert_eq!(stored(&ctx, "c").await, (Status::Deleted, Vec::new()));
    }

    #[tokio::test]
    async fn a_listing_that_fails_never_confirms_a_deletion() {
        use testing::{upstream, Listing};
        // A 404 or a 5xx from `_all_docs`, even with a body that reads as an empty listing.
        for code in [404, 500, 503] {
            let ctx = testing::ctx(upstream(Listing::Fails(code)).await, Arc::new(MemoryStore::new()));
            testing::store_live(&ctx, "a").await;
            let before = stored(&ctx, "a").await;
            assert!(ctx.confirm_gone("a").await.is_err(), "{code}");
            match ctx.packument_or_gone("a", Some("2-y"), NO_PATIENCE).await {
                Err(HandlerError::ListedButMissing(_)) => {}
                other => panic!("{code}: expected ListedButMissing, got {other:?}"),
            }
            assert_eq!(stored(&ctx, "a").await, before, "{code}: nothing stored changes");
        }
    }
}
