//! A namespace: typed get, set, delete, invalidation and clearing of the keys of one namespace.
//! `get_or_load` is in `load`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::cache::Cache;
use crate::codec::Codec;
use crate::key::{Key, Tag, is_plain_name, joined};
use crate::stats::NsCounters;
use crate::store::{Lookup, Read};

/// One namespace of a [`Cache`]: keys are per namespace, tags are shared by all namespaces.
/// Cheap to clone (one reference count).
#[derive(Clone)]
pub struct Namespace {
    shared: Arc<NamespaceShared>,
}

/// What every handle on one namespace shares.
struct NamespaceShared {
    cache: Cache,
    name: Arc<str>,
    /// The start of every entry key of the namespace (`{P}:e:<name>:`).
    entry_prefix: String,
    /// Each entry key is its own hash tag (`…:{key}`): see `CacheConfig::sharded`.
    sharded: bool,
    counters: NsCounters,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A handle on namespace `name` (letters, digits, `-`, `_`, `.`).
    pub fn namespace(&self, name: &str) -> Result<Namespace, Error> {
        if !is_plain_name(name) {
            return Err(Error::Config(format!(
                "namespace {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        let counters = self.namespace_counters(name);
        let entries = self.config().entries_prefix();
        Ok(Namespace {
            shared: Arc::new(NamespaceShared {
                cache: self.clone(),
                entry_prefix: format!("{entries}{name}:"),
                sharded: self.config().sharded(),
                counters,
                name: name.into(),
            }),
        })
    }
}

impl Namespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The value under `key`, if present, valid (no tag invalidated since it was written) and
    /// still decodable as `T` (a value of an older schema reads as a counted miss).
    pub async fn get<T>(&self, key: &Key) -> Result<Option<T>, Error>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let full = self.entry_key(key)?;
        let cache = self.cache();
        let codec = cache.config().codec;
        if let Some(hit) = self.local_get(&full, codec) {
            return Ok(Some(hit));
        }
        let mark = cache.local().map(|l| l.mark());
        match cache
            .call(Some(self.counters()), cache.store().read(&full, &[]))
            .await
        {
            Ok(read) => Ok(self.accept(&full, read, mark)),
            Err(e) => cache.fail_open_or(e, None),
        }
    }

    /// Stores `value` under `key` for `ttl`, tagged with `tags`.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        ttl: Duration,
        tags: &[Tag],
    ) -> Result<(), Error> {
        let full = self.entry_key(key)?;
        self.check_ttl(ttl)?;
        let names = self.tag_names(tags)?;
        let bytes = self.encode(value)?;
        let cache = self.cache();
        if let Some(local) = cache.local() {
            local.remove(&full);
        }
        let written = cache
            .call(
                Some(self.counters()),
                cache.store().write(&full, &bytes, ttl, &names, None, true),
            )
            .await;
        match written {
            Ok(_) => {
                self.counters().set.inc();
                Ok(())
            }
            Err(e) => {
                // The old value may still be there: make sure it goes when Redis is back.
                cache.defer_deletes(vec![full]);
                cache.fail_open_or(e, ())
            }
        }
    }

    /// Deletes `key`; returns whether it was there. If Redis is down, the delete is replayed as
    /// soon as it is back.
    pub async fn delete(&self, key: &Key) -> Result<bool, Error> {
        let full = self.entry_key(key)?;
        let cache = self.cache();
        if let Some(local) = cache.local() {
            local.remove(&full);
        }
        match cache
            .call(Some(self.counters()), cache.store().delete(&full))
            .await
        {
            Ok(existed) => {
                self.counters().delete.inc();
                Ok(existed)
            }
            Err(e) => {
                cache.defer_deletes(vec![full]);
                cache.fail_open_or(e, false)
            }
        }
    }

    /// Invalidates `tags` (in every namespace, like [`Cache::invalidate_tags`]).
    pub async fn invalidate_tags(&self, tags: &[Tag]) -> Result<(), Error> {
        let cache = self.cache();
        let names = tags
            .iter()
            .map(|t| t.validate().map(|()| cache.tag_key(t)))
            .collect::<Result<Vec<_>, _>>()?;
        cache.invalidate_names(names, Some(self.counters())).await
    }

    /// Deletes every entry of this namespace (a scan: O(entries), for maintenance; use tags to
    /// invalidate on the request path).
    pub async fn clear(&self) -> Result<(), Error> {
        self.cache()
            .clear_prefix(self.shared.entry_prefix.clone(), Some(self.counters()))
            .await
    }
}

/// What loads (`load`) and the lock (`lock`) use.
impl Namespace {
    pub(crate) fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    pub(crate) fn counters(&self) -> &NsCounters {
        &self.shared.counters
    }

    /// The store key of `key` in this namespace, once `key` is checked.
    pub(crate) fn entry_key(&self, key: &Key) -> Result<String, Error> {
        key.validate(self.cache().config().max_key_len)?;
        Ok(if self.shared.sharded {
            joined(&[&self.shared.entry_prefix, "{", key.as_str(), "}"])
        } else {
            joined(&[&self.shared.entry_prefix, key.as_str()])
        })
    }

    /// The store keys of `tags`, checked, sorted and without duplicates.
    pub(crate) fn tag_names(&self, tags: &[Tag]) -> Result<Vec<String>, Error> {
        let mut names = Vec::with_capacity(tags.len() + 2);
        for t in tags {
            t.validate()?;
            names.push(self.cache().tag_key(t));
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Refuses a zero TTL or one over the configured maximum.
    pub(crate) fn check_ttl(&self, ttl: Duration) -> Result<(), Error> {
        let max = self.cache().config().max_ttl;
        if ttl.is_zero() || ttl > max {
            return Err(Error::InvalidTtl { ttl, max });
        }
        Ok(())
    }

    /// Encodes `value`, refusing one over the configured size.
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, Error> {
        let config = self.cache().config();
        let bytes = config.codec.encode(value)?;
        let limit = config.max_value_size;
        if bytes.len() > limit {
            return Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// A hit of the local tier, counted.
    pub(crate) fn local_get<T>(&self, full: &str, codec: Codec) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let entry = self.cache().local()?.get(full)?;
        let value = entry.value(|b| codec.decode::<T>(b))?;
        self.counters().local_hit.inc();
        Some(value)
    }

    /// Counts a read and decodes a hit (filling the local tier).
    pub(crate) fn accept<T>(&self, full: &str, read: Read, mark: Option<u64>) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let counters = self.counters();
        match read.lookup {
            Lookup::Hit(bytes) => match self.cache().config().codec.decode::<T>(&bytes) {
                Some(v) => {
                    counters.hit.inc();
                    if let (Some(local), Some(mark)) = (self.cache().local(), mark) {
                        local.insert(full, bytes, &read.entry_tags, mark);
                    }
                    Some(v)
                }
                None => {
                    counters.undecodable.inc();
                    None
                }
            },
            Lookup::Stale => {
                counters.stale.inc();
                None
            }
            Lookup::Miss => {
                counters.miss.inc();
                None
            }
        }
    }
}
