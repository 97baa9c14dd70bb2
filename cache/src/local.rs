//! The local tier: decoded values in process memory for a short TTL, in front of Redis.
//!
//! Each local entry remembers, for each of its tags, the local generation of that tag when it was
//! filled. An invalidation (from this process, or from another through Redis pub/sub) gives the tag
//! a new generation from one process-wide counter, so every older local entry with that tag stops
//! matching at once: O(1) per invalidation. The tier is used only while the pub/sub subscription is
//! live, and is flushed when it drops and again when it is back, so nothing missed in between
//! survives.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use moka::notification::RemovalCause;

/// One cached value.
pub(crate) struct LocalEntry {
    pub(crate) bytes: Bytes,
    tags: Vec<(String, u64)>,
    decoded: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl LocalEntry {
    /// The decoded value, if one of type `T` is kept; else decodes with `decode` and keeps it.
    pub(crate) fn value<T, F>(&self, decode: F) -> Option<T>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce(&[u8]) -> Option<T>,
    {
        if let Some(v) = self.decoded.get().and_then(|d| d.downcast_ref::<T>()) {
            return Some(v.clone());
        }
        let v = decode(&self.bytes)?;
        // ok to ignore: another reader may have stored the decoded value first
        let _ = self.decoded.set(Arc::new(v.clone()));
        Some(v)
    }
}

pub(crate) struct Local {
    entries: moka::sync::Cache<String, Arc<LocalEntry>>,
    generations: moka::sync::Cache<String, u64>,
    counter: Arc<AtomicU64>,
    /// The counter value at the last flush: reads marked before it are not cached.
    flushed_at: AtomicU64,
    live: AtomicBool,
}

impl Local {
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Arc<Self> {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build();
        // Generations must outlive every entry they guard. They expire after twice the entry TTL;
        // if one is evicted for room instead, the whole tier is flushed to stay correct.
        let flush_on_evict = entries.clone();
        let generations = moka::sync::Cache::builder()
            .max_capacity(capacity.saturating_mul(4).max(1_024))
            .time_to_live(ttl.saturating_mul(2))
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    flush_on_evict.invalidate_all();
                }
            })
            .build();
        Arc::new(Self {
            entries,
            generations,
            counter: Arc::new(AtomicU64::new(1)),
            flushed_at: AtomicU64::new(0),
            live: AtomicBool::new(false),
        })
    }

    /// Whether the tier may be used (its invalidation feed is live).
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
    }

    /// A marker to take before reading Redis: an entry read after it is cached only if none of its
    /// tags was invalidated after the marker.
    pub(crate) fn mark(&self) -> u64 {
        self.counter.load(Ordering::Acquire)
    }

    fn generation(&self, tag: &str) -> u64 {
        self.generations.get(tag).unwrap_or(0)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<LocalEntry>> {
        if !self.is_live() {
            return None;
        }
        let entry = self.entries.get(key)?;
        if entry.tags.iter().all(|(t, g)| self.generation(t) == *g) {
            Some(entry)
        } else {
            self.entries.invalidate(key);
            None
        }
    }

    /// Caches `bytes` for `key` with `tags`, unless a tag was invalidated since `mark`.
    pub(crate) fn insert(&self, key: &str, bytes: Bytes, tags: &[String], mark: u64) {
        if !self.is_live() || mark < self.flushed_at.load(Ordering::Acquire) {
            return;
        }
        if self.generation(&key_generation(key)) > mark {
            return; // the key was removed while this read was in flight
        }
        let mut recorded = Vec::with_capacity(tags.len());
        for t in tags {
            let g = self.generation(t);
            if g > mark {
                return;
            }
            recorded.push((t.clone(), g));
        }
        self.entries.insert(
            key.to_owned(),
            Arc::new(LocalEntry {
                bytes,
                tags: recorded,
                decoded: OnceLock::new(),
            }),
        );
    }

    /// Drops `key`, and refuses a value for it from any read that began before now.
    pub(crate) fn remove(&self, key: &str) {
        let g = self.counter.fetch_add(1, Ordering::AcqRel) + 1;
        self.generations.insert(key_generation(key), g);
        self.entries.invalidate(key);
    }

    pub(crate) fn invalidate_tag(&self, tag: &str) {
        let g = self.counter.fetch_add(1, Ordering::AcqRel) + 1;
        self.generations.insert(tag.to_owned(), g);
    }

    pub(crate) fn flush(&self) {
        // Everything cached before now is gone; reads marked before now are not cached either.
        let now = self.counter.fetch_add(1, Ordering::AcqRel) + 1;
        self.flushed_at.fetch_max(now, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

/// The generation slot of a key; tag keys start with the prefix and `:t:`, so they never collide.
fn key_generation(key: &str) -> String {
    format!("\0{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_invalidate_and_races_are_refused() {
        let l = Local::new(100, Duration::from_secs(10));
        l.set_live(true);
        let tags = vec!["t:a".to_owned(), "t:b".to_owned()];
        l.insert("k", Bytes::from_static(b"1"), &tags, l.mark());
        assert!(l.get("k").is_some());
        l.invalidate_tag("t:b");
        assert!(l.get("k").is_none(), "an invalidated tag drops the entry");

        let mark = l.mark();
        l.invalidate_tag("t:a"); // lands while the Redis read is in flight
        l.insert("k", Bytes::from_static(b"2"), &tags, mark);
        assert!(
            l.get("k").is_none(),
            "a value read before the invalidation is not cached"
        );

        l.insert("k", Bytes::from_static(b"3"), &tags, l.mark());
        assert!(l.get("k").is_some());
        let mark = l.mark();
        l.remove("k"); // another instance deletes the key while this read is in flight
        l.insert("k", Bytes::from_static(b"2"), &tags, mark);
        assert!(
            l.get("k").is_none(),
            "a value read before a key removal is not cached"
        );
        l.insert("k", Bytes::from_static(b"3"), &tags, l.mark());
        assert!(l.get("k").is_some());
        let before_flush = l.mark();
        l.flush();
        assert!(l.get("k").is_none());
        l.insert("k", Bytes::from_static(b"3"), &tags, before_flush);
        assert!(
            l.get("k").is_none(),
            "a read that began before a flush is not cached"
        );
        l.set_live(false);
        l.insert("k", Bytes::from_static(b"4"), &tags, l.mark());
        assert!(
            l.get("k").is_none(),
            "not used while the invalidation feed is down"
        );
    }

    #[test]
    fn decoded_value_is_kept() {
        let l = Local::new(10, Duration::from_secs(10));
        l.set_live(true);
        l.insert("k", Bytes::from_static(b"41"), &[], l.mark());
        let e = l.get("k").unwrap();
        let mut decodes = 0;
        for _ in 0..3 {
            let v: Option<u32> = e.value(|b| {
                decodes += 1;
                std::str::from_utf8(b).ok()?.parse().ok()
            });
            assert_eq!(v, Some(41));
        }
        assert_eq!(decodes, 1);
    }
}
