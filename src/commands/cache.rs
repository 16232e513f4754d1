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

/// How a report is printed: JSON for programs, a table for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    Json,
    Table,
}

/// Prints `rows` (each a list of cells) as left-aligned columns under `header`.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `partition list`: each stored range of the replication origin (the configured one, or the
/// only one stored) with its row count, size and when it was listed, from the first range.
pub async fn partition_list(g: &Replica, format: Report) -> Result<(), Error> {
    let store = open_store(g, Access::Read).await?;
    let origin = match g.replicate() {
        Ok(o) => o.id().to_owned(),
        Err(e) => match store.origins(Kind::Partition).await?.as_slice() {
            [one] => one.clone(),
            [] => return Err(Error::usage(format!("no partitions in `{}`; replicate first", g.store))),
            _ => return Err(e),
        },
    };
    let mut listed = Vec::new();
    crate::store::for_each(&*store, &Key::partition_prefix(&origin), |l| {
        listed.push(l);
        Ok::<_, Error>(())
    })
    .await?;
    let mut ranges = Vec::with_capacity(listed.len());
    for l in listed {
        let meta = l.meta?;
        let Ok(Key::Partition { start, end, .. }) = l.key.parse::<Key>() else {
            return Err(Error::Incomplete(format!("`{}` listed among the partitions", l.key)));
        };
        // The row count is in the body (a partition's rows are small: tens of thousands).
        let key = Key::partition(&origin, start.as_deref(), end.as_deref());
        let read = crate::handlers::read_partition(&*store, &key).await;
        let rows = match read.map_err(|e| Error::Incomplete(e.to_string()))? {
            Some(partition) => partition.rows.len(),
            None => continue, // removed since the listing
        };
        ranges.push((start, end, rows, meta.size, meta.fetched_at));
    }
    // Key order puts the open start last (an empty hex sorts after the `:`); people and plans
    // read ranges from the start.
    ranges.sort_by(|a, b| (a.0.is_some(), &a.0).cmp(&(b.0.is_some(), &b.0)));
    match format {
        Report::Json => {
            let out: Vec<_> = ranges
                .iter()
                .map(|(s, e, rows, bytes, at)| {
                    serde_json::json!({ "startKey": s, "endKey": e, "rows": rows, "bytes": bytes, "fetchedAt": at })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Report::Table => {
            let end_of = |k: &Option<String>| k.clone().unwrap_or_else(|| "(open)".into());
            let rows: Vec<Vec<String>> = ranges
                .iter()
                .map(|(s, e, rows, bytes, at)| {
                    vec![end_of(s), end_of(e), rows.to_string(), bytes.to_string(), rfc3339(*at)]
                })
                .collect();
            print_table(&["start", "end", "rows", "bytes", "listed at"], &rows);
        }
    }
    Ok(())
}

/// A Unix time in milliseconds as an HTTP-style date (UTC), for people.
fn rfc3339(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

/// `cache stats`: counts by status and bytes, and the change feed's lag.
pub async fn stats(g: &Replica, format: Report) -> Result<(), Error> {
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
    match format {
        Report::Json => println!("{}", serde_json::to_string_pretty(&stats).unwrap_or_default()),
        Report::Table => {
            let mut rows: Vec<Vec<String>> = Vec::new();
            flatten("", &stats, &mut rows);
            print_table(&["what", "value"], &rows);
        }
    }
    Ok(())
}

/// `value`'s leaves as `path  value` rows (`follow.lagSeqs`), in the JSON's order.
fn flatten(path: &str, value: &serde_json::Value, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        serde_json::Value::String(s) => out.push(vec![path.to_owned(), s.clone()]),
        serde_json::Value::Null => out.push(vec![path.to_owned(), "-".into()]),
        other => out.push(vec![path.to_owned(), other.to_string()]),
    }
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
