//! An in-memory store, for tests. Same contract as every driver, nothing persisted.

use std::collections::BTreeMap;

use bytes::Bytes;
use parking_lot::RwLock;

use super::{body_from, read_head, verified, BodyStream, Entry, Expect, Head, Listed, Meta, Store, StoreError};
use crate::keys::{Key, Kind};

#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RwLock<BTreeMap<String, (Meta, Bytes)>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn head(&self, key: &Key) -> Result<Option<Meta>, StoreError> {
        Ok(self.entries.read().get(&key.to_string()).map(|(m, _)| m.clone()))
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        let found = self.entries.read().get(&key.to_string()).cloned();
        Ok(found.map(|(meta, body)| Entry {
            body: verified(key, &meta.integrity, body_from(body)),
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
        let Head { hasher, bytes: buf, .. } = read_head(key, &mut body, usize::MAX).await?;
        meta.seal(hasher, amend);
        meta.version = Some(super::content_version(&meta));
        let mut entries = self.entries.write();
        let current = entries.get(&key.to_string()).and_then(|(m, _)| m.version.as_deref());
        let holds = match expect {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v.as_str()),
        };
        if !holds {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expect.clone(),
            });
        }
        entries.insert(key.to_string(), (meta.clone(), buf.into()));
        Ok(meta)
    }

    async fn delete(&self, key: &Key) -> Result<bool, StoreError> {
        Ok(self.entries.write().remove(&key.to_string()).is_some())
    }

    async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Listed>, StoreError> {
        let entries = self.entries.read();
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a.to_owned()),
            _ => std::ops::Bound::Included(prefix.to_owned()),
        };
        Ok(entries
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, (meta, _))| Listed {
                key: k.clone(),
                meta: Ok(meta.clone()),
            })
            .collect())
    }

    async fn origins(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let prefix = format!("v1:{}:", kind.as_str());
        let mut ids: Vec<String> = self
            .entries
            .read()
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split(':').next().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::conformance_suite;
    use super::*;

    async fn fixture(_case: &str) -> Box<MemoryStore> {
        Box::new(MemoryStore::new())
    }

    conformance_suite!(fixture);
}
