//! The in-memory store: the same entries, tag versions and locks as Redis, in the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Error;
use crate::store::{BoxFuture, Lookup, Read, Store, UNVERSIONED, fresh_version};

#[derive(Clone)]
struct Entry {
    value: Bytes,
    tags: Vec<(String, String)>,
    expires: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// tag key -> (version, expiry)
    versions: HashMap<String, (String, Instant)>,
    locks: HashMap<String, (String, Instant)>,
    writes: u64,
}

/// Bounded by expiry: expired entries, versions and locks are swept every 1,024 writes.
#[derive(Clone, Default)]
pub(crate) struct MemoryStore {
    state: Arc<Mutex<State>>,
}

static NAMED: tidewell_core::SharedByName<Mutex<State>> = tidewell_core::SharedByName::new();

impl MemoryStore {
    /// A private store for an empty name, else the process-wide store of that name.
    pub(crate) fn named(name: &str) -> Self {
        if name.is_empty() {
            return Self::default();
        }
        Self {
            state: NAMED.get_or_create(name, Mutex::default),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn version(&self, tag: &str, now: Instant) -> String {
        match self.versions.get(tag) {
            Some((v, exp)) if *exp > now => v.clone(),
            _ => UNVERSIONED.to_owned(),
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.writes += 1;
        if self.writes.is_multiple_of(1_024) {
            self.entries.retain(|_, e| e.expires > now);
            self.versions.retain(|_, (_, exp)| *exp > now);
            self.locks.retain(|_, (_, exp)| *exp > now);
        }
    }
}

impl Store for MemoryStore {
    fn read<'a>(&'a self, key: &'a str, tags: &'a [String]) -> BoxFuture<'a, Result<Read, Error>> {
        Box::pin(async move {
            let now = Instant::now();
            let st = self.lock_state();
            let lookup = match st.entries.get(key) {
                Some(e) if e.expires > now => {
                    if e.tags.iter().all(|(t, v)| st.version(t, now) == *v) {
                        Lookup::Hit(e.value.clone())
                    } else {
                        Lookup::Stale
                    }
                }
                _ => Lookup::Miss,
            };
            let entry_tags = if matches!(lookup, Lookup::Hit(_)) {
                st.entries
                    .get(key)
                    .map(|e| e.tags.iter().map(|(t, _)| t.clone()).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let versions = tags.iter().map(|t| st.version(t, now)).collect();
            let ttl_left = matches!(lookup, Lookup::Hit(_))
                .then(|| {
                    st.entries
                        .get(key)
                        .map(|e| e.expires.saturating_duration_since(now))
                })
                .flatten();
            Ok(Read {
                lookup,
                entry_tags,
                versions,
                ttl_left,
            })
        })
    }

    fn write<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
        tags: &'a [String],
        versions: Option<&'a [String]>,
        _announce: bool,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut st = self.lock_state();
            st.sweep(now);
            let recorded: Vec<(String, String)> = match versions {
                Some(given) => {
                    let moved = tags
                        .iter()
                        .zip(given)
                        .any(|(t, v)| st.version(t, now) != *v);
                    if moved {
                        return Ok(false);
                    }
                    tags.iter().cloned().zip(given.iter().cloned()).collect()
                }
                None => tags
                    .iter()
                    .map(|t| (t.clone(), st.version(t, now)))
                    .collect(),
            };
            st.entries.insert(
                key.to_owned(),
                Entry {
                    value: Bytes::copy_from_slice(value),
                    tags: recorded,
                    expires: now + ttl,
                },
            );
            Ok(true)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let now = Instant::now();
            Ok(self
                .lock_state()
                .entries
                .remove(key)
                .is_some_and(|e| e.expires > now))
        })
    }

    fn invalidate<'a>(
        &'a self,
        tags: &'a [String],
        version_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut st = self.lock_state();
            st.sweep(now);
            for t in tags {
                st.versions
                    .insert(t.clone(), (fresh_version(), now + version_ttl));
            }
            Ok(())
        })
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.lock_state()
                .entries
                .retain(|k, _| !k.starts_with(prefix));
            Ok(())
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut st = self.lock_state();
            if st.locks.get(key).is_some_and(|(_, exp)| *exp > now) {
                return Ok(false);
            }
            st.locks
                .insert(key.to_owned(), (token.to_owned(), now + ttl));
            Ok(true)
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut st = self.lock_state();
            if st.locks.get(key).is_some_and(|(t, _)| t == token) {
                st.locks.remove(key);
            }
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}
