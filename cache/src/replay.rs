//! Invalidations, deletes and clears that failed while the store was unreachable, kept (bounded)
//! and replayed before the next store call once it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::Error;
use crate::config::CacheConfig;
use crate::store::Store;

/// The most pending invalidations kept for replay while Redis is down; beyond it, everything is
/// invalidated on recovery.
const MAX_PENDING: usize = 10_000;

/// What waits for the store to come back.
#[derive(Default)]
struct Pending {
    /// Tag keys to invalidate.
    tags: Vec<String>,
    /// Entry keys to delete.
    keys: Vec<String>,
    /// Delete every entry of the cache first (a clear failed, or too much was pending).
    clear_everything: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.keys.is_empty() && !self.clear_everything
    }

    /// Nothing but a clear of every entry.
    fn everything() -> Self {
        Self {
            clear_everything: true,
            ..Self::default()
        }
    }
}

/// The queue of changes to replay.
#[derive(Default)]
pub(crate) struct ReplayQueue {
    pending: Mutex<Pending>,
    /// Whether `pending` holds anything (checked on every call without the lock).
    has_pending: AtomicBool,
}

impl ReplayQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps tags to invalidate and keys to delete; past [`MAX_PENDING`], keeps a clear of every
    /// entry instead.
    pub(crate) fn defer(&self, tags: Vec<String>, keys: Vec<String>) {
        let mut p = self.lock();
        if p.clear_everything {
            return;
        }
        p.tags.extend(tags);
        p.keys.extend(keys);
        self.has_pending.store(true, Ordering::Release);
        if p.tags.len() + p.keys.len() > MAX_PENDING {
            tracing::warn!(
                "too many invalidations waiting for redis; everything will be invalidated on recovery"
            );
            *p = Pending::everything();
        }
    }

    /// Keeps a clear of every entry (which covers anything kept before).
    pub(crate) fn defer_clear_all(&self) {
        let mut p = self.lock();
        *p = Pending::everything();
        self.has_pending.store(true, Ordering::Release);
    }

    /// How many invalidations and deletes wait.
    pub(crate) fn len(&self) -> usize {
        let p = self.lock();
        p.tags.len() + p.keys.len()
    }

    /// Applies what waits to `store`; on failure keeps it for the next attempt.
    pub(crate) async fn replay(
        &self,
        store: &dyn Store,
        config: &CacheConfig,
    ) -> Result<(), Error> {
        if !self.has_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let pending = {
            let mut p = self.lock();
            if p.is_empty() {
                return Ok(());
            }
            self.has_pending.store(false, Ordering::Release);
            std::mem::take(&mut *p)
        };
        let tags = pending.tags.clone();
        let ttl = config.tag_version_ttl();
        let everything = config.entries_prefix();
        let outcome = async {
            if pending.clear_everything {
                store.clear(&everything).await?;
            }
            if !tags.is_empty() {
                store.invalidate(&tags, ttl).await?;
            }
            for k in &pending.keys {
                store.delete(k).await?;
            }
            Ok::<(), Error>(())
        };
        match tokio::time::timeout(config.timeout.saturating_mul(4), outcome).await {
            Ok(Ok(())) => {
                tracing::info!(
                    tags = tags.len(),
                    keys = pending.keys.len(),
                    "replayed invalidations after redis recovered"
                );
                Ok(())
            }
            other => {
                let mut p = self.lock();
                p.tags.extend(pending.tags);
                p.keys.extend(pending.keys);
                p.clear_everything |= pending.clear_everything;
                self.has_pending.store(true, Ordering::Release);
                Err(match other {
                    Ok(Err(e)) => e,
                    _ => Error::Redis {
                        operation: "replay",
                        reason: "no answer in time".into(),
                    },
                })
            }
        }
    }
}
