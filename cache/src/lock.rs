//! The cross-process loader lock ([`CacheBuilder::distributed_lock`](crate::CacheBuilder::distributed_lock)):
//! the first process to miss a key takes a lock in the store (a token and an expiry) and loads;
//! the others wait for its value, and load themselves if it takes longer than the lock lives.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::namespace::Namespace;
use crate::store::{Lookup, fresh_version};

/// How long a cross-process lock holder may take before its lock expires.
const LOCK_TTL: Duration = Duration::from_secs(10);

/// What trying the lock came to.
pub(crate) enum LockOutcome {
    /// This process holds the lock (with this token): load, then release it.
    Held(String),
    /// The holder's value arrived while waiting: serve it.
    Value(Bytes),
    /// Load without the lock (the store failed, or the holder took too long).
    Unlocked,
}

impl Namespace {
    /// Takes the cross-process lock, or waits (with backoff) for the holder's value; after
    /// [`LOCK_TTL`] without one, loads without the lock.
    pub(crate) async fn acquire_or_wait<T>(&self, full: &str, names: &[String]) -> LockOutcome
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let cache = self.cache();
        let lock_key = self.lock_key(full);
        let token = fresh_version();
        match cache
            .call(
                Some(self.counters()),
                cache.store().lock(&lock_key, &token, LOCK_TTL),
            )
            .await
        {
            Ok(true) => return LockOutcome::Held(token),
            Ok(false) => {}
            Err(_) => return LockOutcome::Unlocked,
        }
        let deadline = tokio::time::Instant::now() + LOCK_TTL;
        let mut delay = Duration::from_millis(10);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
            if let Ok(read) = cache
                .call(Some(self.counters()), cache.store().read(full, names))
                .await
                && let Lookup::Hit(bytes) = read.lookup
                && cache.config().codec.decode::<T>(&bytes).is_some()
            {
                self.counters().hit.inc();
                return LockOutcome::Value(bytes);
            }
        }
        tracing::warn!(
            key = full,
            "lock holder took too long; loading without the lock"
        );
        LockOutcome::Unlocked
    }

    /// Releases the lock on `full` taken with `token`, if it still holds it.
    pub(crate) async fn release_lock(&self, full: &str, token: &str) {
        let cache = self.cache();
        let lock_key = self.lock_key(full);
        // ok to ignore: the lock expires by itself
        let _ = cache
            .call(None, cache.store().unlock(&lock_key, token))
            .await;
    }

    fn lock_key(&self, full: &str) -> String {
        self.cache().config().lock_key(full)
    }
}
