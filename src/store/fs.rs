//! The local file store: the embedded default replica.
//!
//! Layout under the root (see `keys` for the key format):
//!
//! - packument: `v1/packument/{origin}/{hex[0..4]}/{hex[4..6]}/{hex}`, with `hex` the hex of
//!   the name, the first level shorter for short names and the second level `-` when the hex
//!   has four digits or fewer (`-` sorts before every hex digit). Each level is a prefix of the
//!   file names below it, so walking folders and files in name order is byte order of package
//!   names. Two levels keep folders small: concurrent creates and renames in one folder
//!   contend on its lock.
//! - partition: `v1/partition/{origin}/{hex(start)}-{hex(end)}`.
//!
//! A file name holds at most 255 bytes, and a 214-byte package name has 428 hex digits. An
//! entry name longer than [`FLAT_MAX`] is therefore cut: its first [`FLAT_MAX`] characters
//! plus [`CONTINUED`] name a folder, and the rest is the file (or, for a partition's two long
//! ends, the next cut) inside it. Names up to [`FLAT_MAX`] keep the single file they always
//! had, so older replicas need no migration (`docs/adr/006-long-names-in-the-file-store.md`).
//! Byte order survives: the other files in the folder are at most [`FLAT_MAX`] long, so none
//! sorts between the folder and the names inside it.
//!
//! Each file is one line of JSON [`Meta`], a newline, then the body exactly as fetched. One
//! file per entry means one rename commits body and metadata together: a write goes to a
//! unique temporary file in the same directory, is fsynced, renamed over the entry, and the
//! directory is fsynced. Readers and concurrent writers (other processes too) therefore see
//! the old entry or a new complete one, never a mix; the last rename wins.
//!
//! The header carries the body's integrity, which is only known once the body has been read:
//! bodies up to [`INLINE_MAX`] are hashed in memory and written once; larger ones are streamed
//! to a scratch file first and then copied after the header (in the kernel, by `std::io::copy`).

use std::io::{self, BufRead as _, Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::{read_head, verified, BodyStream, Entry, Expect, Hasher, Head, Listed, Meta, Store, StoreError};
use crate::keys::{hex, Key, Kind};

/// Bodies up to this size are hashed in memory before the entry is written.
pub const INLINE_MAX: usize = 1 << 20;
/// The metadata line may not be longer than this.
const MAX_HEADER: u64 = 64 * 1024;
/// The longest entry name kept as one file name: 255 bytes (the usual file-system limit),
/// rounded down to an even number of hex digits.
pub const FLAT_MAX: usize = 254;
/// Ends the name of a folder that holds the rest of longer entry names. `-` sorts before
/// every hex digit, and no file name is longer than [`FLAT_MAX`], so the folder sorts right
/// after the file of exactly its prefix, as the names inside it do.
const CONTINUED: char = '-';
/// The part of an entry name kept in its temporary files' names (which need room for the pid
/// and a counter too).
const TEMP_NAME_MAX: usize = 32;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> FsStore {
        FsStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the temporary files that interrupted writes (a killed process, a full disk)
    /// left beside the entries, once nothing has written to them for `idle`: a write in
    /// progress keeps appending to its file, and no single write takes that long. Only the
    /// store's own tree (`v1/`) is walked, symbolic links are not followed, and only names of
    /// the temporary pattern are removed; entries are never touched. Best effort: a folder
    /// that cannot be read is skipped with a warning. Returns how many files were removed and
    /// the bytes that freed.
    pub fn remove_stale_temporaries(&self, idle: std::time::Duration) -> (u64, u64) {
        let (mut count, mut bytes) = (0, 0);
        let mut dirs = vec![self.root.join("v1")];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(folder = %dir.display(), error = %e, "cannot list a folder of the store; its temporary files stay");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    dirs.push(entry.path());
                    continue;
                }
                if !is_temporary(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                let idle_for = meta.modified().ok().and_then(|m| m.elapsed().ok());
                if idle_for.is_some_and(|d| d >= idle) && std::fs::remove_file(entry.path()).is_ok() {
                    count += 1;
                    // A file the hard-link commit left shares its data with the entry.
                    #[cfg(unix)]
                    let shared = std::os::unix::fs::MetadataExt::nlink(&meta) > 1;
                    #[cfg(not(unix))]
                    let shared = false;
                    if !shared {
                        bytes += meta.len();
                    }
                }
            }
        }
        (count, bytes)
    }

    /// The file of `key`.
    pub fn path_of(&self, key: &Key) -> PathBuf {
        match key {
            Key::Packument { origin, name } => {
                let h = hex(name.as_bytes());
                let (l1, l2) = shards(&h);
                let dir = self.root.join("v1").join("packument").join(origin).join(l1).join(l2);
                entry_path(dir, &h)
            }
            Key::Partition { origin, start, end } => {
                let (s, e) = (
                    hex(start.as_deref().unwrap_or("").as_bytes()),
                    hex(end.as_deref().unwrap_or("").as_bytes()),
                );
                entry_path(self.root.join("v1").join("partition").join(origin), &format!("{s}-{e}"))
            }
            Key::Checkpoint { origin } => self.root.join("v1").join("checkpoint").join(origin),
        }
    }

    /// Checks that the root can be created and written, for a clear error before any work.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let io = |what, source| StoreError::Io {
            what,
            path: self.root.display().to_string(),
            source,
        };
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| io("cannot create the store folder", e))?;
        let probe = self.root.join(format!(".write-probe.{}", std::process::id()));
        tokio::fs::write(&probe, b"ok")
            .await
            .map_err(|e| io("cannot write in the store folder", e))?;
        let _ = tokio::fs::remove_file(&probe).await;
        Ok(())
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Reads the header line of an entry file; the file is left positioned at the body.
fn read_header(key: &Key, file: &mut std::fs::File) -> Result<Meta, StoreError> {
    let mut reader = io::BufReader::new((&*file).take(MAX_HEADER));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    if line.last() != Some(&b'\n') {
        return Err(StoreError::Corrupt {
            key: key.to_string(),
            reason: "no metadata line".into(),
        });
    }
    let mut meta: Meta = serde_json::from_slice(&line).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: format!("bad metadata: {e}"),
    })?;
    meta.version = Some(super::content_version(&meta));
    file.seek(io::SeekFrom::Start(line.len() as u64))
        .map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
    Ok(meta)
}

fn open_entry(key: &Key, path: &Path) -> Result<Option<(Meta, std::fs::File)>, StoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot open", path)(e)),
    };
    let meta = read_header(key, &mut file)?;
    Ok(Some((meta, file)))
}

/// Whether a file name is one of [`temp_beside`]'s: `.{name}.{pid}.{n}.{tmp|spill}`.
fn is_temporary(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = name.rsplitn(4, '.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("tmp" | "spill"), Some(n), Some(pid), Some(entry)) => {
            digits(n) && digits(pid) && entry.len() > 1 && entry.starts_with('.')
        }
        _ => false,
    }
}

/// Writes `head`, then `chunk` and the rest of `body` (hashing those into `hasher`), to a new
/// scratch file at `spath`.
async fn spill(
    key: &Key,
    spath: &Path,
    head: &[u8],
    chunk: Bytes,
    body: &mut BodyStream,
    hasher: &mut Hasher,
) -> Result<(), StoreError> {
    let written = |e| io_err("cannot write", spath)(e);
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(spath)
        .await
        .map_err(io_err("cannot create", spath))?;
    f.write_all(head).await.map_err(written)?;
    let mut next = Some(chunk);
    while let Some(chunk) = next {
        hasher.update(&chunk);
        f.write_all(&chunk).await.map_err(written)?;
        next = body.next().await.transpose().map_err(|source| StoreError::Body {
            key: key.to_string(),
            source,
        })?;
    }
    f.flush().await.map_err(written)
}

/// A unique temporary path beside `path`: `.{name}.{pid}.{n}.{tag}`, with `name` the start of
/// the entry's file name (at most [`TEMP_NAME_MAX`] bytes, so the whole stays a legal file
/// name whatever the entry's length).
fn temp_beside(path: &Path, tag: &str) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cut = name.len().min(TEMP_NAME_MAX);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    path.with_file_name(format!(".{}.{}.{n}.{tag}", &name[..cut], std::process::id()))
}

/// The path of the entry named `name` in `dir`: the name itself when it is at most
/// [`FLAT_MAX`] long, else cut into folders (see the module docs).
fn entry_path(mut dir: PathBuf, name: &str) -> PathBuf {
    let mut rest = name;
    while rest.len() > FLAT_MAX {
        // Hex digits and `-` only: every index is a character boundary.
        let (head, tail) = rest.split_at(FLAT_MAX);
        dir.push(format!("{head}{CONTINUED}"));
        rest = tail;
    }
    dir.join(rest)
}

/// Creates `dir` and its missing parents, then syncs the folder that holds each new one, so
/// an entry whose rename was made durable cannot be lost with a folder whose name was not.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for created in &missing {
        if let Some(parent) = created.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for FsStore {
    async fn head(&self, key: &Key) -> Result<Option<Meta>, StoreError> {
        let (key, path) = (key.clone(), self.path_of(key));
        blocking(move || Ok(open_entry(&key, &path)?.map(|(m, _)| m))).await
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        let (k, path) = (key.clone(), self.path_of(key));
        let Some((meta, file)) = blocking(move || open_entry(&k, &path)).await? else {
            return Ok(None);
        };
        let reader = tokio::fs::File::from_std(file);
        let body: BodyStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024));
        Ok(Some(Entry {
            body: verified(key, &meta.integrity, body),
            meta,
        }))
    }

    async fn put_if(
        &self,
        key: &Key,
        mut meta: Meta,
        mut body: BodyStream,
        amend: &(dyn for<'m> Fn(&'m mut Meta) + Sync),
        expect: &Expect,
    ) -> Result<Meta, StoreError> {
        let path = self.path_of(key);
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let mkdir = dir.clone();
        blocking(move || create_dir_durably(&mkdir).map_err(io_err("cannot create folder", &mkdir))).await?;
        // Read up to INLINE_MAX into memory; spill a longer body to a scratch file.
        let Head {
            mut hasher,
            bytes: mut inline,
            overflow,
        } = read_head(key, &mut body, INLINE_MAX).await?;
        let spill_path = match overflow {
            None => None,
            Some(chunk) => {
                let spath = temp_beside(&path, "spill");
                let spilled = spill(key, &spath, &inline, chunk, &mut body, &mut hasher).await;
                if let Err(e) = spilled {
                    let _ = tokio::fs::remove_file(&spath).await;
                    return Err(e);
                }
                inline = Vec::new();
                Some(spath)
            }
        };

        meta.seal(hasher, amend);
        meta.version = Some(super::content_version(&meta));
        let mut header = serde_json::to_vec(&meta).map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        header.push(b'\n');
        let tmp = temp_beside(&path, "tmp");
        let (tmp2, path2, dir2) = (tmp.clone(), path.clone(), dir.clone());
        let (key2, expect2, spill_left) = (key.clone(), expect.clone(), spill_path.clone());
        let committed = blocking(move || {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp2)
                .map_err(io_err("cannot create", &tmp2))?;
            use std::io::Write as _;
            out.write_all(&header).map_err(io_err("cannot write", &tmp2))?;
            match &spill_path {
                None => out.write_all(&inline).map_err(io_err("cannot write", &tmp2))?,
                Some(sp) => {
                    let mut src = std::fs::File::open(sp).map_err(io_err("cannot open", sp))?;
                    io::copy(&mut src, &mut out).map_err(io_err("cannot copy into", &tmp2))?;
                }
            }
            out.sync_all().map_err(io_err("cannot fsync", &tmp2))?;
            drop(out);
            let conflict = || StoreError::Conflict {
                key: key2.to_string(),
                expected: expect2.clone(),
            };
            match &expect2 {
                Expect::Any => std::fs::rename(&tmp2, &path2).map_err(io_err("cannot rename into place", &path2))?,
                // A hard link creates the name only if nothing holds it, atomically.
                Expect::Absent => match std::fs::hard_link(&tmp2, &path2) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&tmp2);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(conflict()),
                    Err(e) => return Err(io_err("cannot link into place", &path2)(e)),
                },
                // Checked just before the rename: exact between processes only up to that
                // window, which the local runner never opens (one item per key at a time).
                Expect::Version(v) => {
                    let current = open_entry(&key2, &path2)?.and_then(|(m, _)| m.version);
                    if current.as_deref() != Some(v.as_str()) {
                        return Err(conflict());
                    }
                    std::fs::rename(&tmp2, &path2).map_err(io_err("cannot rename into place", &path2))?
                }
            }
            // Make the rename itself durable.
            if let Ok(d) = std::fs::File::open(&dir2) {
                let _ = d.sync_all();
            }
            if let Some(sp) = &spill_path {
                let _ = std::fs::remove_file(sp);
            }
            Ok(())
        })
        .await;
        if committed.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
            if let Some(sp) = &spill_left {
                let _ = tokio::fs::remove_file(sp).await;
            }
        }
        committed.map(|()| meta)
    }

    async fn delete(&self, key: &Key) -> Result<bool, StoreError> {
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot delete", &path)(e)),
        }
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Listed>, StoreError> {
        let store = self.clone();
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        blocking(move || {
            let keys = list_sync(&store.root, &prefix, after.as_deref(), limit)?;
            Ok(keys
                .into_iter()
                .map(|text| {
                    Listed::read(text, |key| {
                        open_entry(key, &store.path_of(key))?
                            .map(|(m, _)| m)
                            .ok_or_else(|| StoreError::Corrupt {
                                key: key.to_string(),
                                reason: "removed while being listed".into(),
                            })
                    })
                })
                .collect())
        })
        .await
    }

    async fn origins(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("v1").join(kind.as_str());
        blocking(move || {
            Ok(read_dir_sorted(&dir)?
                .into_iter()
                .filter(|(_, is_dir)| *is_dir == (kind != Kind::Checkpoint))
                .map(|(name, _)| name)
                .collect())
        })
        .await
    }

    async fn sweep_temporaries(&self, idle: std::time::Duration) -> Result<(u64, u64), StoreError> {
        let store = self.clone();
        blocking(move || Ok(store.remove_stale_temporaries(idle))).await
    }
}

/// Lists by walking the layout; a prefix must name the kind and origin (`v1:packument:o:`),
/// optionally followed by the start of the hex.
fn list_sync(root: &Path, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
    let parts: Vec<&str> = prefix.splitn(4, ':').collect();
    let (kind, origin, rest) = match parts.as_slice() {
        ["v1", kind @ ("packument" | "partition"), origin, rest] if !origin.is_empty() => (*kind, *origin, *rest),
        _ => return Err(StoreError::Prefix(prefix.to_owned())),
    };
    let dir = root.join("v1").join(kind).join(origin);
    let mut keys: Vec<String> = Vec::new();
    let key_prefix = format!("v1:{kind}:{origin}:");
    let wanted = |key: &str| key.starts_with(prefix) && after.is_none_or(|a| key > a);
    let after_hex = after.and_then(|a| a.strip_prefix(&key_prefix)).unwrap_or("");
    if kind == "partition" {
        entry_names(&dir, &mut |name| {
            if let Some((s, e)) = name.split_once('-') {
                let key = format!("{key_prefix}{s}:{e}");
                if wanted(&key) {
                    keys.push(key);
                }
            }
            true
        })?;
        keys.sort();
        keys.truncate(limit);
        return Ok(keys);
    }
    walk(&dir, "", 2, rest, after_hex, &mut |name| {
        let key = format!("{key_prefix}{name}");
        if wanted(&key) {
            keys.push(key);
        }
        keys.len() < limit
    })?;
    Ok(keys)
}

/// The two shard folders of a packument's hex name.
fn shards(h: &str) -> (&str, &str) {
    let l1 = &h[..h.len().min(4)];
    let l2 = if h.len() > 4 { &h[4..h.len().min(6)] } else { "-" };
    (l1, l2)
}

/// Visits entry names under `dir` in byte order, `levels` shard folders deep, skipping folders
/// that cannot hold names starting with `rest` or after `after_hex`. `visit` returns false to
/// stop.
fn walk(
    dir: &Path,
    prefix: &str,
    levels: u32,
    rest: &str,
    after_hex: &str,
    visit: &mut dyn FnMut(String) -> bool,
) -> Result<bool, StoreError> {
    if levels == 0 {
        return entry_names(dir, visit);
    }
    for (entry, is_dir) in read_dir_sorted(dir)? {
        if !is_dir {
            continue;
        }
        let p = if entry == "-" {
            prefix.to_owned()
        } else {
            format!("{prefix}{entry}")
        };
        let compatible = p.starts_with(rest) || rest.starts_with(&p);
        // Folders wholly before `after` hold nothing we want.
        let before_after = p.as_str() < after_hex && !after_hex.starts_with(&p);
        if compatible && !before_after && !walk(&dir.join(&entry), &p, levels - 1, rest, after_hex, visit)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Visits the entry names in `dir` in byte order: each file's name, and for each folder named
/// with [`CONTINUED`] (see [`entry_path`]) its prefix joined to every entry name inside it.
/// `visit` returns false to stop.
fn entry_names(dir: &Path, visit: &mut dyn FnMut(String) -> bool) -> Result<bool, StoreError> {
    for (name, is_dir) in read_dir_sorted(dir)? {
        if !is_dir {
            if !visit(name) {
                return Ok(false);
            }
            continue;
        }
        // Any other folder is not ours: nothing in it is an entry.
        let Some(head) = name.strip_suffix(CONTINUED) else {
            continue;
        };
        if !entry_names(&dir.join(&name), &mut |tail| visit(format!("{head}{tail}")))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Names in `dir` in byte order, each with whether it is a folder, without temporary files (or
/// anything else starting with `.`); an absent folder is empty.
fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, bool)>, StoreError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err("cannot list", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            if !name.starts_with('.') {
                let is_dir = entry.file_type().map_err(io_err("cannot list", dir))?.is_dir();
                names.push((name, is_dir));
            }
        }
    }
    names.sort_unstable();
    Ok(names)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            what: "store task failed",
            path: String::new(),
            source: io::Error::other(e.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::conformance::conformance_suite;
    use super::super::{body_from, Status};
    use super::*;

    fn temp_root(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "all-docs-fs-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A file store in a fresh temporary folder, removed when dropped.
    pub(super) struct Fixture(FsStore);

    impl std::ops::Deref for Fixture {
        type Target = FsStore;
        fn deref(&self) -> &FsStore {
            &self.0
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.root());
        }
    }

    async fn fixture(case: &str) -> Fixture {
        Fixture(FsStore::new(temp_root(case)))
    }

    conformance_suite!(fixture);

    #[tokio::test]
    async fn long_names_are_cut_into_folders_and_short_ones_keep_their_file() {
        let store = fixture("cut").await;
        let short = Key::packument("o", &"a".repeat(127));
        let long = Key::packument("o", &"a".repeat(214));
        for key in [&short, &long] {
            store
                .put(key, Meta::new(Status::Ok, 1), body_from(&b"{}"[..]))
                .await
                .unwrap();
        }
        let shard = store.root().join("v1/packument/o/6161/61");
        assert_eq!(store.path_of(&short), shard.join("61".repeat(127)));
        assert_eq!(
            store.path_of(&long),
            shard.join(format!("{}-", "61".repeat(127))).join("61".repeat(87))
        );
        for key in [&short, &long] {
            let path = store.path_of(key);
            assert!(path.is_file(), "{}", path.display());
            for part in path.strip_prefix(store.root()).unwrap() {
                assert!(part.len() <= 255, "{} bytes", part.len());
            }
        }
        // A partition between two long names: two cuts.
        let part = Key::partition("o", Some(&"b".repeat(214)), Some(&"c".repeat(214)));
        store
            .put(&part, Meta::new(Status::Ok, 1), body_from(&b"[]"[..]))
            .await
            .unwrap();
        let components: Vec<_> = store
            .path_of(&part)
            .strip_prefix(store.root())
            .unwrap()
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(components, [2, 9, 1, 255, 255, 255, 95]);
    }

    #[tokio::test]
    async fn temporary_names_stay_short_whatever_the_entry() {
        let path = PathBuf::from("/r").join("61".repeat(127));
        let tmp = temp_beside(&path, "spill");
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(name.len() < 80, "{name}");
        assert!(is_temporary(name), "{name}");
        assert!(name.starts_with(&format!(".{}.", "61".repeat(16))), "{name}");
    }

    #[tokio::test]
    async fn files_hold_the_body_after_one_metadata_line_and_no_temp_files_remain() {
        let root = temp_root("layout");
        let store = FsStore::new(&root);
        let key = Key::packument("o", "@types/node");
        store
            .put(
                &key,
                Meta::new(Status::Ok, 1),
                body_from(&b"{\"name\":\"@types/node\"}"[..]),
            )
            .await
            .unwrap();
        let path = store.path_of(&key);
        assert!(
            path.ends_with("v1/packument/o/4074/79/4074797065732f6e6f6465"),
            "{}",
            path.display()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, body) = text.split_once('\n').unwrap();
        assert!(head.contains("\"integrity\":\"sha256-"));
        assert_eq!(body, "{\"name\":\"@types/node\"}");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(leftovers.len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A fresh store under a temporary root holding one packument `x` with `body`.
    async fn store_with_one_entry(tag: &str, body: &'static [u8]) -> (PathBuf, FsStore, Key) {
        let root = temp_root(tag);
        let store = FsStore::new(&root);
        let key = Key::packument("o", "x");
        store
            .put(&key, Meta::new(Status::Ok, 1), body_from(body))
            .await
            .unwrap();
        (root, store, key)
    }

    #[tokio::test]
    async fn only_temporary_files_idle_long_enough_are_swept() {
        let (root, store, key) = store_with_one_entry("sweep", b"{}").await;
        let path = store.path_of(&key);
        let beside = |tag: &str| temp_beside(&path, tag);
        let (old_tmp, old_spill, fresh) = (beside("tmp"), beside("spill"), beside("tmp"));
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (p, len) in [(&old_tmp, 5), (&old_spill, 7), (&fresh, 3)] {
            std::fs::write(p, vec![b'x'; len]).unwrap();
        }
        for p in [&old_tmp, &old_spill] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        // Old enough to look abandoned, but not a temporary file: kept.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();

        let swept = store.remove_stale_temporaries(std::time::Duration::from_secs(1800));
        assert_eq!(swept, (2, 12));
        assert!(
            is_temporary(".127.0.0.1-5984.41.7.tmp"),
            "a checkpoint's, origin with dots"
        );
        for name in [
            ".x.tmp",
            ".bashrc.tmp",
            "x.1.2.tmp",
            "..1.2.tmp",
            ".x.1.b.tmp",
            ".x.1.2.bak",
        ] {
            assert!(!is_temporary(name), "{name}");
        }
        assert!(!old_tmp.exists() && !old_spill.exists());
        assert!(fresh.exists(), "a write that may still be going on is left alone");
        assert!(store.get(&key).await.unwrap().is_some());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn a_tampered_body_fails_verification() {
        let (root, store, key) = store_with_one_entry("tamper", b"{\"a\":1}").await;
        let path = store.path_of(&key);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("{\"a\":1}", "{\"a\":2}");
        std::fs::write(&path, text).unwrap();
        let err = store.get(&key).await.unwrap().unwrap().bytes().await.unwrap_err();
        assert!(err.to_string().contains("integrity mismatch"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn concurrent_writers_leave_one_complete_entry() {
        let root = temp_root("race");
        let store = std::sync::Arc::new(FsStore::new(&root));
        let key = Key::packument("o", "contended");
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let (store, key) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let body = vec![b'a' + i; 100_000 + usize::from(i) * 1_000];
                store
                    .put(&key, Meta::new(Status::Ok, 1), body_from(body))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let entry = store.get(&key).await.unwrap().unwrap();
        let size = entry.meta.size;
        let bytes = entry.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert!(bytes.iter().all(|&b| b == bytes[0]), "one writer's body, whole");
        let _ = std::fs::remove_dir_all(&root);
    }
}
