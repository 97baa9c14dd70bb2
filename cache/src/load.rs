//! `get_or_load` and every call of a loader: the caller's read, the single flight that loads a
//! missing key once per process (behind the cross-process lock if configured), the write of its
//! value with the tag versions read before the loader ran, and the background reload of
//! refresh-ahead.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::key::{Key, Tag};
use crate::lock::LockOutcome;
use crate::namespace::Namespace;
use crate::single_flight::Flight;
use crate::store::{BoxFuture, Lookup, Read};

/// What a `get_or_load` caller's own read found, when it was not a hit to return.
enum PreRead {
    /// No valid entry (not counted yet).
    Miss(Read),
    /// A hit that did not decode (counted); the versions it read.
    Counted(Vec<String>),
    /// Redis failed (counted), in fail-open mode.
    Failed,
}

/// How a new flight begins, from what the read of the caller that starts it found.
enum FlightStart {
    /// Call the loader at once.
    Load(AfterLoad),
    /// A flight of the key ended after that read began and may have written the entry since:
    /// read again, and call the loader only if there is still no valid entry.
    ReadAgain,
}

/// What a load does with the loader's value.
enum AfterLoad {
    /// Stores it recording these tag versions, read before the loader ran (so an invalidation
    /// during the load keeps it out); with the cross-process lock if configured.
    Store(Vec<String>),
    /// Only serves it: the store failed (fail-open), so nothing is locked or written.
    ServeOnly,
}

impl Namespace {
    /// The value under `key`, or the loader's value, stored for `ttl` with `tags`.
    ///
    /// - One loader per key per process: concurrent callers wait for the first one's value.
    /// - With [`CacheBuilder::distributed_lock`](crate::CacheBuilder::distributed_lock), one per
    ///   key across processes.
    /// - The tag versions are read before the loader runs: if a tag is invalidated during the
    ///   load, the loaded value is returned to this caller but not cached.
    /// - If Redis fails (fail-open), the loader's value is served and the error counted.
    pub async fn get_or_load<T, F, Fut, E>(
        &self,
        key: &Key,
        ttl: Duration,
        tags: &[Tag],
        loader: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let full = self.entry_key(key)?;
        self.check_ttl(ttl)?;
        let names = self.tag_names(tags)?;
        let cache = self.cache();
        let codec = cache.config().codec;
        if let Some(hit) = self.local_get(&full, codec) {
            return Ok(hit);
        }
        // The read runs in the caller's task: a hit costs no flight bookkeeping and one decode.
        let mark = cache.local().map(|l| l.mark());
        let flights = cache.flights();
        let flights_before = flights.ended();
        let read = match cache
            .call(Some(self.counters()), cache.store().read(&full, &names))
            .await
        {
            Ok(mut read) if matches!(read.lookup, Lookup::Hit(_)) => {
                let due = cache.refresh_ahead().due(ttl, read.ttl_left);
                let versions = std::mem::take(&mut read.versions);
                match self.accept::<T>(&full, read, mark) {
                    Some(value) => {
                        if due {
                            self.refresh_in_background::<T, F, Fut, E>(
                                full, ttl, names, versions, loader,
                            );
                        }
                        return Ok(value);
                    }
                    // Counted as undecodable; load with the versions read.
                    None => PreRead::Counted(versions),
                }
            }
            Ok(read) => PreRead::Miss(read),
            Err(e) if !cache.config().fail_open => return Err(e),
            Err(_) => PreRead::Failed,
        };
        // Another caller's load may be running: then this one waits for its value. Its miss is
        // counted once, by the caller that started it, as before reads left the flight.
        let flight = flights.join_or_start(&full, || {
            // What this load records: this read's versions, unless a flight ended since it
            // started (its value may be written after this read: the flight reads again rather
            // than load twice); none when Redis failed (serve, don't store).
            let start = match read {
                PreRead::Failed => FlightStart::Load(AfterLoad::ServeOnly),
                _ if flights.ended() != flights_before => FlightStart::ReadAgain,
                PreRead::Miss(mut read) => {
                    let versions = std::mem::take(&mut read.versions);
                    self.accept::<T>(&full, read, mark);
                    FlightStart::Load(AfterLoad::Store(versions))
                }
                PreRead::Counted(versions) => FlightStart::Load(AfterLoad::Store(versions)),
            };
            // The load runs as its own task, so it completes (and caches) even if every caller
            // waiting for it is cancelled.
            let flight: Flight = self
                .clone()
                .fly::<T, F, Fut, E>(full.clone(), ttl, names, start, loader)
                .shared();
            flight
        });
        let bytes = flight.await?;
        codec
            .decode::<T>(&bytes)
            .ok_or_else(|| Error::Encode("a loaded value did not decode as the same type".into()))
    }

    /// The single flight of one key: loads at once, or first reads again and returns a hit if a
    /// load that just ended wrote one. Ends its flight when done (or when every caller gave up
    /// before a load started).
    fn fly<T, F, Fut, E>(
        self,
        full: String,
        ttl: Duration,
        names: Vec<String>,
        start: FlightStart,
        loader: F,
    ) -> BoxFuture<'static, Result<Bytes, Error>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        Box::pin(async move {
            let cache = self.cache().clone();
            let done = cache.flights().guard(full);
            let full = done.key();
            let after = match start {
                FlightStart::Load(after) => after,
                FlightStart::ReadAgain => {
                    let mark = cache.local().map(|l| l.mark());
                    match cache
                        .call(Some(self.counters()), cache.store().read(full, &names))
                        .await
                    {
                        Ok(read) => {
                            if let Lookup::Hit(bytes) = &read.lookup
                                && cache.config().codec.decode::<T>(bytes).is_some()
                            {
                                let bytes = bytes.clone();
                                let due = cache.refresh_ahead().due(ttl, read.ttl_left);
                                let versions = read.versions.clone();
                                self.accept::<T>(full, read, mark);
                                if due {
                                    self.refresh_in_background::<T, F, Fut, E>(
                                        full.to_owned(),
                                        ttl,
                                        names,
                                        versions,
                                        loader,
                                    );
                                }
                                return Ok(bytes);
                            }
                            let versions = read.versions.clone();
                            self.accept::<T>(full, read, mark);
                            AfterLoad::Store(versions)
                        }
                        Err(e) if !cache.config().fail_open => return Err(e),
                        Err(_) => AfterLoad::ServeOnly,
                    }
                }
            };
            let task = cache.spawn(async move {
                let full = done.key();
                let result = self
                    .load::<T, F, Fut, E>(full, ttl, &names, after, loader)
                    .await;
                drop(done);
                result
            });
            task.await.unwrap_or_else(|e| {
                Err(Error::Loader(Arc::new(std::io::Error::other(format!(
                    "loader task failed: {e}"
                )))))
            })
        })
    }

    /// A flight's load: the cross-process lock if configured, the loader, and the write of its
    /// value as `after` says.
    async fn load<T, F, Fut, E>(
        &self,
        full: &str,
        ttl: Duration,
        names: &[String],
        after: AfterLoad,
        loader: F,
    ) -> Result<Bytes, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let cache = self.cache();
        let lock = match after {
            AfterLoad::Store(_) if cache.config().distributed_lock => {
                self.acquire_or_wait::<T>(full, names).await
            }
            _ => LockOutcome::Unlocked,
        };
        let token = match lock {
            LockOutcome::Value(bytes) => return Ok(bytes),
            LockOutcome::Held(token) => Some(token),
            LockOutcome::Unlocked => None,
        };

        self.counters().load.inc();
        let loaded = loader().await.map_err(|e| Error::Loader(Arc::new(e)));
        let result = match loaded {
            Ok(value) => {
                let bytes = self.encode(&value)?;
                if let AfterLoad::Store(versions) = after {
                    let write =
                        cache
                            .store()
                            .write(full, &bytes, ttl, names, Some(&versions), false);
                    match cache.call(Some(self.counters()), write).await {
                        Ok(true) => self.counters().set.inc(),
                        Ok(false) => self.counters().skipped.inc(),
                        Err(e) if !cache.config().fail_open => return Err(e),
                        Err(_) => {}
                    }
                }
                Ok(Bytes::from(bytes))
            }
            Err(e) => Err(e),
        };
        if let Some(token) = token {
            self.release_lock(full, &token).await;
        }
        result
    }

    /// Reloads `full` in a tracked background task, once at a time per key (refresh-ahead);
    /// the reload records `versions`, read with the hit, like any load.
    fn refresh_in_background<T, F, Fut, E>(
        &self,
        full: String,
        ttl: Duration,
        names: Vec<String>,
        versions: Vec<String>,
        loader: F,
    ) where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let cache = self.cache();
        if !cache.refresh_ahead().start(&full) {
            return;
        }
        let ns = self.clone();
        cache.spawn(async move {
            ns.counters().load.inc();
            let cache = ns.cache();
            match loader().await {
                Ok(value) => match ns.encode(&value) {
                    Ok(bytes) => {
                        let write =
                            cache
                                .store()
                                .write(&full, &bytes, ttl, &names, Some(&versions), true);
                        match cache.call(Some(ns.counters()), write).await {
                            Ok(true) => {
                                ns.counters().set.inc();
                                if let Some(local) = cache.local() {
                                    local.remove(&full);
                                }
                            }
                            Ok(false) => ns.counters().skipped.inc(),
                            Err(error) => {
                                tracing::debug!(%error, key = %full, "early refresh not stored");
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, key = %full, "early refresh: cannot encode");
                    }
                },
                Err(error) => tracing::warn!(
                    %error,
                    key = %full,
                    "early refresh: loader failed; the cached value stays until it expires"
                ),
            }
            cache.refresh_ahead().finish(&full);
        });
    }
}
