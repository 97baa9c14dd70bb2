//! Values shared by name within one process, kept alive only while someone holds them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// A process-wide registry of values by name, for in-memory backends that several handles in one
/// process must share (`memory://orders` in two services of one binary reach the same broker).
/// Entries are weak: a value lives while some handle holds its `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use tidewell_core::SharedByName;
///
/// static BROKERS: SharedByName<std::sync::Mutex<Vec<u8>>> = SharedByName::new();
/// let a = BROKERS.get_or_create("orders", Default::default);
/// let b = BROKERS.get_or_create("orders", Default::default);
/// assert!(Arc::ptr_eq(&a, &b));
/// let c = BROKERS.get_or_create("billing", Default::default);
/// assert!(!Arc::ptr_eq(&a, &c));
/// ```
#[derive(Debug)]
pub struct SharedByName<T> {
    map: Mutex<Option<HashMap<String, Weak<T>>>>,
}

impl<T> SharedByName<T> {
    /// An empty registry (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            map: Mutex::new(None),
        }
    }

    /// The value named `name`, created with `create` if no handle holds one.
    pub fn get_or_create(&self, name: &str, create: impl FnOnce() -> T) -> Arc<T> {
        let mut guard = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let map = guard.get_or_insert_with(HashMap::new);
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = map.get(name).and_then(Weak::upgrade) {
            return existing;
        }
        let fresh = Arc::new(create());
        map.insert(name.to_owned(), Arc::downgrade(&fresh));
        fresh
    }
}

impl<T> Default for SharedByName<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_go_when_the_last_handle_drops() {
        let reg: SharedByName<u32> = SharedByName::new();
        let a = reg.get_or_create("x", || 1);
        drop(a);
        let b = reg.get_or_create("x", || 2);
        assert_eq!(*b, 2, "a new value once the old one was dropped");
    }
}
