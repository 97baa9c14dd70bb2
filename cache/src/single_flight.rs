//! Single flight: at most one load per key per process. Callers that miss while a key's load
//! runs wait for its value instead of calling the loader again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::future::Shared;

use crate::Error;
use crate::store::BoxFuture;

/// One key's load, awaited by every caller that joined it: the encoded value.
pub(crate) type Flight = Shared<BoxFuture<'static, Result<Bytes, Error>>>;

/// The flights running in one cache, by entry key.
#[derive(Default)]
pub(crate) struct SingleFlight {
    running: Mutex<HashMap<String, Flight>>,
    /// Flights ended so far (a caller's read that started before one ended may be outdated).
    ended: AtomicU64,
}

impl SingleFlight {
    /// How many flights have ended so far.
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(Ordering::Acquire)
    }

    /// The running flight of `key`, or the one `start` makes. `start` runs under the table's
    /// lock, so it must not touch the table; it only builds the (lazy) flight.
    pub(crate) fn join_or_start(&self, key: &str, start: impl FnOnce() -> Flight) -> Flight {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.get(key) {
            Some(f) => f.clone(),
            None => {
                let f = start();
                running.insert(key.to_owned(), f.clone());
                f
            }
        }
    }

    /// A guard that ends `key`'s flight when dropped.
    pub(crate) fn guard(self: &Arc<Self>, key: String) -> FlightGuard {
        FlightGuard {
            flights: Arc::clone(self),
            key,
        }
    }
}

/// Removes a key's flight when dropped: when the flight ends, or when every caller gave up on it.
pub(crate) struct FlightGuard {
    flights: Arc<SingleFlight>,
    key: String,
}

impl FlightGuard {
    /// The key whose flight this guards.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut running = self
            .flights
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        running.remove(&self.key);
        // Under the lock: a caller that finds no flight for the key also sees it counted.
        self.flights.ended.fetch_add(1, Ordering::Release);
    }
}
