//! `cache create-index|validate|stats` and `packument export`: reading the replica.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::{for_each_packument, open_store, read_name_list, write_atomic, Corrupt};
use crate::config::Replica;
use crate::error::Error;
use crate::keys::{Key, Kind};
use crate::store::{Access, Status, Store};

/// The packument origin id of the store: the configured registry's, or the only one stored.
pub(super) async fn cache_origin(g: &Replica, store: &dyn Store) -> Result<String, Error> {
    if let Ok(o) = g.registry() {
        return Ok(o.id().to_owned());
    }
    let ids = store.origins(Kind::Packument).await?;
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::usage(format!("no packuments in `{}`; replicate first", g.store))),
        _ => Err(Error::usage(format!(
            "the store holds several registries ({}); pick one with --registry-origin",
            ids.join(", ")
        ))),
    }
}

/// `cache create-index`: `name<TAB>rev` of every live packument, byte order.
pub async fn create_index(g: &Replica) -> Result<(), Error> {
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    for_each_packument(&*store, &origin, Corrupt::Fail, |name, meta| {
        if matches!(meta.status, Status::Ok | Status::Unpublished) && failed.is_none() {
            if let Err(e) = writeln!(out, "{name}\t{}", meta.rev.as_deref().unwrap_or("")) {
                failed = Some(e);
            }
        }
    })
    .await?;
    match failed.map_or_else(|| out.flush(), Err) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            what: "writing the index".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A temporary file nothing has written to for this long belongs to an interrupted write.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// `cache validate`: sweep what interrupted writes left, then re-hash every entry; exit 1 if
/// any is corrupt.
pub async fn validate(g: &Replica) -> Result<(), Error> {
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let (count, bytes) = store.sweep_temporaries(STALE_TEMPORARY).await?;
    if count > 0 {
        println!("removed {count} temporary files (freeing {bytes} bytes) that interrupted writes left");
    }
    let prefix = Key::packument_prefix(&origin);
    let (mut ok, mut bad) = (0u64, Vec::new());
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(&prefix, after.as_deref(), 10_000)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let Some(last) = page.last().map(|l| l.key.clone()) else {
            break;
        };
        let results: Vec<(String, Result<(), String>)> = futures_util::stream::iter(page)
            .map(|listed| {
                let (store, k) = (&store, listed.key);
                async move {
                    let res = match k.parse::<Key>() {
                        Err(e) => Err(e.to_string()),
                        Ok(key) => match store.get(&key).await {
                            Ok(Some(entry)) => entry.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                            Ok(None) => Ok(()),
                            Err(e) => Err(e.to_string()),
                        },
                    };
                    (k, res)
                }
            })
            .buffered(16)
            .collect()
            .await;
        for (k, r) in results {
            match r {
                Ok(()) => ok += 1,
                Err(e) => bad.push(format!("{k}: {e}")),
            }
        }
        after = Some(last);
    }
    println!("{ok} entries verified, {} corrupt", bad.len());
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::Incomplete(format!(
            "corrupt entries (re-run replicate to refetch them):\n  {}",
            bad.join("\n  ")
        )))
    }
}

/// `cache stats`: counts by status and bytes.
pub async fn stats(g: &Replica) -> Result<(), Error> {
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let (mut ok, mut unpublished, mut deleted, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut newest = 0u64;
    for_each_packument(&*store, &origin, Corrupt::Fail, |_, meta| {
        match meta.status {
            Status::Ok => ok += 1,
            Status::Unpublished => unpublished += 1,
            Status::Deleted => deleted += 1,
        }
        bytes += meta.size;
        newest = newest.max(meta.fetched_at);
    })
    .await?;
    let stats = serde_json::json!({
        "store": g.store,
        "origin": origin,
        "packuments": ok + unpublished,
        "ok": ok,
        "unpublished": unpublished,
        "deleted": deleted,
        "bytes": bytes,
        "lastFetchedAt": newest,
        "follow": follow_stats(g, &*store).await?,
    });
    println!("{}", serde_json::to_string_pretty(&stats).unwrap_or_default());
    Ok(())
}

/// The change-feed checkpoint of the replication origin (the configured one, or the only one
/// stored): how far the feed is applied and how far behind the upstream it was last seen.
async fn follow_stats(g: &Replica, store: &dyn Store) -> Result<serde_json::Value, Error> {
    let origin = match g.replicate() {
        Ok(o) => Some(o.id().to_owned()),
        Err(_) => match store.origins(Kind::Checkpoint).await?.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
    };
    let Some(origin) = origin else {
        return Ok(serde_json::Value::Null);
    };
    let key = Key::checkpoint(&origin);
    let Some((cp, _)) = crate::handlers::read_checkpoint(store, &key)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    else {
        return Ok(serde_json::Value::Null);
    };
    Ok(serde_json::json!({
        "origin": origin,
        "checkpoint": cp.seq,
        "upstreamSeq": cp.upstream_seq,
        "lagSeqs": cp.lag_seqs(),
        "lagSecs": cp.lag_secs(crate::clock::now_ms()),
        "caughtUpAt": cp.caught_up_at,
        "pending": cp.pending,
        "updatedAt": cp.updated_at,
    }))
}

/// `packument export LIST OUTDIR`: copies stored documents to `OUTDIR/<name>.json`
/// (scoped names in a folder per scope).
pub async fn export(g: &Replica, list: &Path, outdir: &Path) -> Result<(), Error> {
    let names = read_name_list(list)?;
    let store = open_store(g, Access::Read).await?;
    let origin = cache_origin(g, &*store).await?;
    let mut missing = Vec::new();
    for name in &names {
        let key = Key::packument(&origin, name);
        let entry = store.get(&key).await?;
        let Some(entry) = entry.filter(|e| e.meta.status != Status::Deleted) else {
            missing.push(name.clone());
            continue;
        };
        let bytes = entry
            .bytes()
            .await
            .map_err(|e| Error::Internal(format!("{name}: {e}")))?;
        let path = outdir.join(format!("{name}.json"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::usage(format!("cannot create `{}`: {e}", parent.display())))?;
        }
        write_atomic(&path, &bytes)?;
    }
    eprintln!(
        "exported {} of {} packuments to {}",
        names.len() - missing.len(),
        names.len(),
        outdir.display()
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotFound(format!("not in the replica: {}", missing.join(", "))))
    }
}
