//! What this process recently saw in Redis, kept to save round trips: the tag keys an entry had
//! (so a read that names no tags fetches them in the same `MGET` as the entry) and the version a
//! tag had (so a write can record it without reading it first).
//!
//! Nothing here is trusted for correctness. A read compares the versions an entry recorded with
//! versions fetched atomically with it; a write reads the versions back in the same round trip
//! and writes again if they were not the ones it recorded. A missing, evicted or outdated record
//! (another instance retagged the entry or invalidated the tag) costs one more round trip, never
//! a stale value. The table is direct-mapped with a fixed number of slots: bounded memory, no
//! eviction work, one short lock per lookup.

use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

/// Slots in a table; a power of two.
const SLOTS: usize = 4_096;

type Slot<V> = Mutex<Option<(u64, V)>>;

/// A bounded map from a key to the value last seen for it.
pub(crate) struct Recent<V> {
    slots: Box<[Slot<V>]>,
    hasher: foldhash::fast::RandomState,
}

impl<V: Clone> Recent<V> {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn slot(&self, key: &str) -> (u64, Option<&Slot<V>>) {
        let hash = self.hasher.hash_one(key);
        // Truncating the hash is fine: the mask keeps its low bits (SLOTS is a power of two).
        let index = hash as usize & (SLOTS - 1);
        (hash, self.slots.get(index))
    }

    /// The value last seen for `key`, if its slot still holds it.
    pub(crate) fn get(&self, key: &str) -> Option<V> {
        let (hash, slot) = self.slot(key);
        let slot = slot?.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some((h, v)) if *h == hash => Some(v.clone()),
            _ => None,
        }
    }

    /// Records the value for `key`: `same` tells whether the slot already holds it, `make` builds
    /// it (called only when it does not, so an unchanged record costs no allocation).
    pub(crate) fn put(&self, key: &str, same: impl FnOnce(&V) -> bool, make: impl FnOnce() -> V) {
        let (hash, slot) = self.slot(key);
        let Some(slot) = slot else { return };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((h, v)) = &*slot
            && *h == hash
            && same(v)
        {
            return;
        }
        *slot = Some((hash, make()));
    }
}

/// Whether `known` holds exactly `names`, in order.
pub(crate) fn same_names<S: AsRef<str>>(known: &[String], names: &[S]) -> bool {
    known.len() == names.len() && known.iter().zip(names).all(|(a, b)| a == b.as_ref())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn put_tags(r: &Recent<Arc<[String]>>, key: &str, tags: &[&str]) {
        r.put(
            key,
            |k| same_names(k, tags),
            || tags.iter().map(|t| (*t).to_owned()).collect(),
        );
    }

    #[test]
    fn remembers_the_last_value_of_a_key() {
        let r = Recent::new();
        assert!(r.get("a").is_none());
        put_tags(&r, "a", &["t1", "t2"]);
        assert_eq!(r.get("a").unwrap().as_ref(), ["t1", "t2"]);
        put_tags(&r, "a", &["t3"]);
        assert_eq!(r.get("a").unwrap().as_ref(), ["t3"]);
        put_tags(&r, "a", &[]);
        assert!(r.get("a").unwrap().is_empty());
    }

    #[test]
    fn an_unchanged_value_is_not_rebuilt() {
        let r: Recent<Arc<str>> = Recent::new();
        r.put("t", |_| false, || Arc::from("v1"));
        r.put(
            "t",
            |v| &**v == "v1",
            || panic!("rebuilt an unchanged value"),
        );
        assert_eq!(r.get("t").as_deref(), Some("v1"));
    }

    #[test]
    fn a_key_sharing_the_slot_is_not_given_another_keys_value() {
        let r: Recent<Arc<str>> = Recent::new();
        // More keys than slots: some share a slot; none may read another's value.
        for i in 0..(SLOTS * 2) {
            r.put(&format!("k{i}"), |_| false, || Arc::from(format!("v{i}")));
        }
        let mut found = 0;
        for i in 0..(SLOTS * 2) {
            if let Some(v) = r.get(&format!("k{i}")) {
                assert_eq!(&*v, format!("v{i}"));
                found += 1;
            }
        }
        assert!(found > 0 && found <= SLOTS);
    }
}
