//! Which tag keys an entry had when this process last saw it, so that a read that names no tags
//! can fetch the entry and its tags' current versions in one `MGET`.
//!
//! A hint only saves a round trip. Every read compares the tag versions the entry recorded with
//! versions fetched atomically with it, so a missing, evicted or wrong hint (another instance
//! rewrote the entry with other tags, or two keys share a slot) costs one more round trip, never a
//! stale value. The table is direct-mapped with a fixed number of slots: bounded memory, no
//! eviction work, one short lock per lookup.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};

/// Slots in the table; a power of two.
const SLOTS: usize = 4_096;

type Slot = Mutex<Option<(u64, Arc<[String]>)>>;

pub(crate) struct Hints {
    slots: Box<[Slot]>,
    hasher: std::hash::RandomState,
}

impl Hints {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn slot(&self, key: &str) -> (u64, Option<&Slot>) {
        let hash = self.hasher.hash_one(key);
        // Truncating the hash is fine: the mask keeps its low bits (SLOTS is a power of two).
        let index = hash as usize & (SLOTS - 1);
        (hash, self.slots.get(index))
    }

    /// The tag keys `key` had when last seen, if this slot still remembers it.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<[String]>> {
        let (hash, slot) = self.slot(key);
        let slot = slot?.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some((h, tags)) if *h == hash => Some(tags.clone()),
            _ => None,
        }
    }

    /// Remembers that `key` has `tags` (allocates only when that changes what the slot holds).
    pub(crate) fn put<S: AsRef<str>>(&self, key: &str, tags: &[S]) {
        let (hash, slot) = self.slot(key);
        let Some(slot) = slot else { return };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((h, known)) = &*slot
            && *h == hash
            && known.len() == tags.len()
            && known.iter().zip(tags).all(|(a, b)| a == b.as_ref())
        {
            return;
        }
        let tags: Arc<[String]> = tags.iter().map(|t| t.as_ref().to_owned()).collect();
        *slot = Some((hash, tags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_tags_of_a_key() {
        let hints = Hints::new();
        assert!(hints.get("a").is_none());
        hints.put("a", &["t1", "t2"]);
        assert_eq!(hints.get("a").unwrap().as_ref(), ["t1", "t2"]);
        hints.put("a", &["t3"]);
        assert_eq!(hints.get("a").unwrap().as_ref(), ["t3"]);
        hints.put::<&str>("a", &[]);
        assert!(hints.get("a").unwrap().is_empty());
    }

    #[test]
    fn a_key_sharing_the_slot_is_not_given_another_keys_tags() {
        let hints = Hints::new();
        // More keys than slots: some share a slot; none may read another's hint.
        for i in 0..(SLOTS * 2) {
            hints.put(&format!("k{i}"), &[format!("t{i}")]);
        }
        for i in 0..(SLOTS * 2) {
            if let Some(tags) = hints.get(&format!("k{i}")) {
                assert_eq!(tags.as_ref(), [format!("t{i}")]);
            }
        }
    }
}
