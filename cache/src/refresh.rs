//! Refresh-ahead ([`CacheBuilder::refresh_ahead`](crate::CacheBuilder::refresh_ahead)): which
//! hits are due a background reload, and at most one such reload per key at a time. The reload
//! itself is a load like any other (see `load`).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The refresh-ahead policy and the keys being reloaded early.
pub(crate) struct RefreshAhead {
    /// Reload a hit past this fraction of its TTL; `None`: off.
    fraction: Option<f64>,
    /// Keys being reloaded early in the background.
    running: Mutex<HashSet<String>>,
}

impl RefreshAhead {
    /// Reloads hits past `fraction` of their TTL (`None`: never).
    pub(crate) fn new(fraction: Option<f64>) -> Self {
        Self {
            fraction,
            running: Mutex::default(),
        }
    }

    /// Whether a hit with `left` to live, of an entry stored for `ttl`, is due an early reload.
    pub(crate) fn due(&self, ttl: Duration, left: Option<Duration>) -> bool {
        match (self.fraction, left) {
            (Some(f), Some(left)) => left < ttl.mul_f64(1.0 - f),
            _ => false,
        }
    }

    /// Claims `key` for a reload; `false` if one is running already.
    pub(crate) fn start(&self, key: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned())
    }

    /// Releases `key` once its reload is over.
    pub(crate) fn finish(&self, key: &str) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
