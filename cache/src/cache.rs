//! The cache: the state its namespaces share, and how every store call is made (through the
//! circuit breaker and a timeout, after replaying what failed, failing open). Also invalidation
//! by tag, clearing, stats and health.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::breaker::Breaker;
use crate::config::CacheConfig;
use crate::key::Tag;
use crate::local::Local;
use crate::refresh::RefreshAhead;
use crate::replay::ReplayQueue;
use crate::single_flight::SingleFlight;
use crate::stats::{CacheMetrics, NsCounters, Stats};
use crate::store::{BoxFuture, Store};

/// What every handle on one cache (and each of its namespaces) shares.
struct CacheShared {
    store: Arc<dyn Store>,
    local: Option<Arc<Local>>,
    breaker: Breaker,
    metrics: CacheMetrics,
    namespaces: Mutex<BTreeMap<String, NsCounters>>,
    flights: Arc<SingleFlight>,
    refresh: RefreshAhead,
    replay: ReplayQueue,
    config: CacheConfig,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Drop for CacheShared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What [`Cache::health`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Whether the store answered a ping.
    pub store_reachable: bool,
    /// Whether the circuit breaker is open (calls skipped).
    pub circuit_open: bool,
    /// Whether the local tier is on and its invalidation feed live.
    pub local_tier_live: Option<bool>,
    /// Entries in the local tier.
    pub local_entries: u64,
    /// Invalidations waiting for Redis to come back.
    pub pending_invalidations: usize,
}

/// A tag-based cache on Redis or in memory. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_cache::Error> {
/// use std::time::Duration;
/// use tidewell_cache::{Cache, Key, Tag};
///
/// let cache = Cache::builder().url("memory://").build().await?; // or "redis://127.0.0.1:6379"
/// let users = cache.namespace("users")?;
/// let key = Key::new("user").part(7);
/// let tags = [Tag::new("user").part(7)];
///
/// let name: String = users
///     .get_or_load(&key, Duration::from_secs(60), &tags, || async {
///         Ok::<_, std::io::Error>("Ada".to_owned()) // the slow database call
///     })
///     .await?;
/// assert_eq!(name, "Ada");
/// assert_eq!(users.get::<String>(&key).await?, Some("Ada".to_owned()));
///
/// cache.invalidate_tags(&tags).await?; // one write, however many keys carry the tag
/// assert_eq!(users.get::<String>(&key).await?, None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    shared: Arc<CacheShared>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.shared.config.prefix)
            .field("local_tier", &self.shared.local.is_some())
            .field("fail_open", &self.shared.config.fail_open)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache over `store` (and `local`, its local tier), configured by `config`; `stop` ends
    /// its background tasks when the last handle is dropped.
    pub(crate) fn new(
        config: CacheConfig,
        store: Arc<dyn Store>,
        local: Option<Arc<Local>>,
        metrics: CacheMetrics,
        stop: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(CacheShared {
                store,
                local,
                breaker: Breaker::new(5, Duration::from_millis(500), Duration::from_secs(30)),
                metrics,
                namespaces: Mutex::new(BTreeMap::new()),
                flights: Arc::default(),
                refresh: RefreshAhead::new(config.refresh_ahead),
                replay: ReplayQueue::default(),
                config,
                stop,
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Invalidates `tags` in every namespace: one write per tag, whatever the number of keys.
    ///
    /// If Redis is down the invalidation is kept and replayed as soon as it is back (in fail-open
    /// mode this returns `Ok`).
    pub async fn invalidate_tags(&self, tags: &[Tag]) -> Result<(), Error> {
        let names = tags
            .iter()
            .map(|t| t.validate().map(|()| self.tag_key(t)))
            .collect::<Result<Vec<_>, _>>()?;
        self.invalidate_names(names, None).await
    }

    /// Deletes every entry of every namespace of this prefix (a scan: O(entries), for
    /// maintenance, not for the request path).
    pub async fn clear_all(&self) -> Result<(), Error> {
        let prefix = self.shared.config.entries_prefix();
        self.clear_prefix(prefix, None).await
    }

    /// Counters of every namespace used so far.
    pub fn stats(&self) -> Stats {
        Stats {
            namespaces: self
                .shared
                .namespaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, c)| (k.clone(), c.snapshot()))
                .collect(),
            invalidations: self.shared.metrics.invalidations(),
        }
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.shared.metrics
    }

    /// Pings the store (bypassing the circuit breaker) and reports the state of each part.
    pub async fn health(&self) -> Health {
        let s = &self.shared;
        let reachable = tokio::time::timeout(s.config.timeout, s.store.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        Health {
            store_reachable: reachable,
            circuit_open: s.breaker.is_open(),
            local_tier_live: s.local.as_ref().map(|l| l.is_live()),
            local_entries: s.local.as_ref().map_or(0, |l| l.len()),
            pending_invalidations: s.replay.len(),
        }
    }
}

/// What namespaces and loads use.
impl Cache {
    pub(crate) fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.shared.store
    }

    /// The local tier, if on.
    pub(crate) fn local(&self) -> Option<&Local> {
        self.shared.local.as_deref()
    }

    pub(crate) fn flights(&self) -> &Arc<SingleFlight> {
        &self.shared.flights
    }

    pub(crate) fn refresh_ahead(&self) -> &RefreshAhead {
        &self.shared.refresh
    }

    /// Runs `task` as one of the cache's tracked tasks.
    pub(crate) fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.tasks.spawn(task)
    }

    /// The counters of namespace `name`, made on first use.
    pub(crate) fn namespace_counters(&self, name: &str) -> NsCounters {
        self.shared
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_insert_with(|| self.shared.metrics.namespace(name))
            .clone()
    }

    /// The Redis key of `tag`'s version.
    pub(crate) fn tag_key(&self, tag: &Tag) -> String {
        self.shared.config.tag_key(tag.as_str())
    }

    /// Runs one store call through the breaker and the timeout, replaying pending invalidations
    /// first when some are waiting.
    pub(crate) async fn call<'a, T>(
        &'a self,
        ns: Option<&NsCounters>,
        op: BoxFuture<'a, Result<T, Error>>,
    ) -> Result<T, Error> {
        let s = &self.shared;
        let result = async {
            s.breaker.check()?;
            s.replay.replay(&*s.store, &s.config).await?;
            match tokio::time::timeout(s.config.timeout, op).await {
                Ok(r) => r,
                Err(_) => Err(Error::Redis {
                    operation: "call",
                    reason: format!("no answer within {:?}", s.config.timeout),
                }),
            }
        }
        .await;
        match &result {
            Ok(_) => s.breaker.success(),
            Err(Error::CircuitOpen { .. }) => {}
            Err(_) => s.breaker.failure(),
        }
        if result.is_err()
            && let Some(ns) = ns
        {
            ns.error.inc();
        }
        result
    }

    /// In fail-open mode `fallback` (the error logged), else the error.
    pub(crate) fn fail_open_or<T>(&self, error: Error, fallback: T) -> Result<T, Error> {
        if self.shared.config.fail_open {
            tracing::debug!(%error, "cache backend failed; continuing (fail-open)");
            Ok(fallback)
        } else {
            Err(error)
        }
    }

    /// Keeps entry keys whose delete failed, to delete them when the store is back.
    pub(crate) fn defer_deletes(&self, keys: Vec<String>) {
        self.shared.replay.defer(Vec::new(), keys);
    }

    /// Invalidates the tag keys `names` (local tier first, then the store); `ns` counts errors.
    pub(crate) async fn invalidate_names(
        &self,
        names: Vec<String>,
        ns: Option<&NsCounters>,
    ) -> Result<(), Error> {
        if let Some(local) = &self.shared.local {
            for n in &names {
                local.invalidate_tag(n);
            }
        }
        let ttl = self.shared.config.tag_version_ttl();
        let result = self
            .call(ns, self.shared.store.invalidate(&names, ttl))
            .await;
        match result {
            Ok(()) => {
                self.shared.metrics.count_invalidations(names.len() as u64);
                Ok(())
            }
            Err(e) => {
                self.shared.replay.defer(names, Vec::new());
                self.fail_open_or(e, ())
            }
        }
    }

    /// Deletes every entry whose key starts with `prefix`, with a longer bound than one call (a
    /// scan); on failure keeps a clear of everything for replay.
    pub(crate) async fn clear_prefix(
        &self,
        prefix: String,
        ns: Option<&NsCounters>,
    ) -> Result<(), Error> {
        let s = &self.shared;
        if let Some(local) = &s.local {
            local.flush();
        }
        let bound = s.config.timeout.saturating_mul(40);
        let result = match s.breaker.check() {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout(bound, s.store.clear(&prefix)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Redis {
                    operation: "clear",
                    reason: format!("no answer within {bound:?}"),
                }),
            },
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(ns) = ns {
                    ns.error.inc();
                }
                s.breaker.failure();
                s.replay.defer_clear_all();
                self.fail_open_or(e, ())
            }
        }
    }
}
