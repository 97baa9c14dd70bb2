//! The idempotent-consumer guard: run a handler once per message id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;
use crate::backend::BoxFuture;

/// What the guard says about a message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: the caller now owns it and must `complete` or `release` it.
    Claimed,
    /// Already processed: acknowledge without running the handler.
    Done,
    /// Being processed elsewhere right now: try again later.
    InProgress,
}

/// A store of processed message ids, shared by the consumers that must not process one twice.
///
/// A claim is held while the handler runs (a lease that expires, so a consumer that dies
/// releases it), marked done when it succeeds, released when it fails.
pub trait Dedup: Send + Sync + 'static {
    /// Claims `id` for processing.
    fn claim<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Claim, Error>>;
    /// Marks `id` processed.
    fn complete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// Gives up the claim on `id` (the handler failed; it may run again).
    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
}

/// A bounded in-process guard: remembers the last `capacity` processed ids.
///
/// Enough for one consumer process; use [`RedisDedup`](crate::RedisDedup) (feature `redis`) when
/// several processes consume the same queue.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_event_hub::Error> {
/// use tidewell_event_hub::{Claim, Dedup, MemoryDedup};
/// let guard = MemoryDedup::new(10_000);
/// assert_eq!(guard.claim("m1").await?, Claim::Claimed);
/// assert_eq!(guard.claim("m1").await?, Claim::InProgress);
/// guard.complete("m1").await?;
/// assert_eq!(guard.claim("m1").await?, Claim::Done);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryDedup {
    capacity: usize,
    lease: Duration,
    state: Mutex<DedupState>,
}

#[derive(Debug, Default)]
struct DedupState {
    entries: HashMap<String, Entry>,
    done_order: VecDeque<String>,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    InProgress(Instant),
    Done,
}

impl MemoryDedup {
    /// Remembers up to `capacity` processed ids (oldest forgotten first); claims last 60 s.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            lease: Duration::from_secs(60),
            state: Mutex::new(DedupState::default()),
        }
    }

    /// How long a claim lasts if neither completed nor released.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DedupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Dedup for MemoryDedup {
    fn claim<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move {
            let mut st = self.lock();
            let now = Instant::now();
            Ok(match st.entries.get(id) {
                Some(Entry::Done) => Claim::Done,
                Some(Entry::InProgress(since)) if now.duration_since(*since) < self.lease => {
                    Claim::InProgress
                }
                _ => {
                    st.entries.insert(id.to_owned(), Entry::InProgress(now));
                    Claim::Claimed
                }
            })
        })
    }

    fn complete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut st = self.lock();
            if !matches!(
                st.entries.insert(id.to_owned(), Entry::Done),
                Some(Entry::Done)
            ) {
                st.done_order.push_back(id.to_owned());
            }
            while st.done_order.len() > self.capacity {
                if let Some(old) = st.done_order.pop_front() {
                    st.entries.remove(&old);
                }
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut st = self.lock();
            if matches!(st.entries.get(id), Some(Entry::InProgress(_))) {
                st.entries.remove(id);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_and_leases_expire() {
        let g = MemoryDedup::new(2).lease(Duration::from_millis(20));
        for id in ["a", "b", "c"] {
            assert_eq!(g.claim(id).await.unwrap(), Claim::Claimed);
            g.complete(id).await.unwrap();
        }
        assert_eq!(
            g.claim("a").await.unwrap(),
            Claim::Claimed,
            "oldest forgotten"
        );
        assert_eq!(g.claim("c").await.unwrap(), Claim::Done);
        assert_eq!(g.lock().entries.len(), 3, "b, c done and a in progress");
        assert_eq!(g.claim("x").await.unwrap(), Claim::Claimed);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            g.claim("x").await.unwrap(),
            Claim::Claimed,
            "an expired lease is reclaimed"
        );
        g.release("x").await.unwrap();
        assert_eq!(g.claim("x").await.unwrap(), Claim::Claimed);
    }
}
