//! The cache: namespaces over one store, with the local tier, single flight, fail-open and the
//! circuit breaker.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::Shared;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tidewell_core::cli::Var;
use tidewell_core::config::Env;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::breaker::Breaker;
use crate::codec::Codec;
use crate::key::{Key, MAX_NAME_LEN, Tag, joined};
use crate::local::Local;
use crate::memory_store::MemoryStore;
use crate::stats::{CacheMetrics, NsCounters, Stats};
use crate::store::{BoxFuture, Lookup, Read, Store};

/// How long a cross-process lock holder may take before its lock expires.
const LOCK_TTL: Duration = Duration::from_secs(10);
/// The most pending invalidations kept for replay while Redis is down; beyond it, everything is
/// invalidated on recovery.
const MAX_PENDING: usize = 10_000;

/// Configuration, from code or from the environment ([`CacheConfig::from_env`]).
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `TIDEWELL_CACHE_URL` | `redis://…`, `redis-cluster://h:p,h:p`, `memory://` (private) or `memory://<name>` (shared in the process) | `memory://` |
/// | `TIDEWELL_CACHE_PREFIX` | the key prefix (and Redis Cluster hash tag) | `tw` |
/// | `TIDEWELL_CACHE_TIMEOUT` | the bound on every Redis call | `250ms` |
/// | `TIDEWELL_CACHE_FAIL_OPEN` | serve through the loader when Redis fails | `true` |
/// | `TIDEWELL_CACHE_MAX_TTL` | the longest entry TTL | `24h` |
/// | `TIDEWELL_CACHE_MAX_VALUE_SIZE` | the largest encoded value | `1MiB` |
/// | `TIDEWELL_CACHE_MAX_KEY_LEN` | the longest key, in bytes | `512` |
/// | `TIDEWELL_CACHE_LOCAL_CAPACITY` | entries in the local tier (0: off) | `0` |
/// | `TIDEWELL_CACHE_LOCAL_TTL` | how long a local entry lives | `1s` |
/// | `TIDEWELL_CACHE_LOCK` | one loader per key across processes | `false` |
/// | `TIDEWELL_CACHE_REFRESH_AHEAD` | reload a hit in the background past this fraction of its TTL | off |
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The backend URL.
    pub url: String,
    /// The key prefix.
    pub prefix: String,
    /// The bound on every Redis call.
    pub timeout: Duration,
    /// Serve through the loader (and swallow write errors) when Redis fails.
    pub fail_open: bool,
    /// The longest entry TTL.
    pub max_ttl: Duration,
    /// The largest encoded value.
    pub max_value_size: usize,
    /// The longest key.
    pub max_key_len: usize,
    /// Entries in the local tier; 0 turns it off.
    pub local_capacity: u64,
    /// How long a local entry lives.
    pub local_ttl: Duration,
    /// One loader per key across processes (a Redis lock), not only per process.
    pub distributed_lock: bool,
    /// Early refresh: a `get_or_load` hit on an entry past this fraction of its TTL reloads it in
    /// the background (the caller gets the cached value at once). `None`: off.
    pub refresh_ahead: Option<f64>,
    /// How values are encoded.
    pub codec: Codec,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: "memory://".into(),
            prefix: "tw".into(),
            timeout: Duration::from_millis(250),
            fail_open: true,
            max_ttl: Duration::from_secs(24 * 3600),
            max_value_size: 1 << 20,
            max_key_len: MAX_NAME_LEN,
            local_capacity: 0,
            local_ttl: Duration::from_secs(1),
            distributed_lock: false,
            refresh_ahead: None,
            codec: Codec::Json,
        }
    }
}

impl CacheConfig {
    /// The environment variables [`from_env`](Self::from_env) reads, with their defaults (for a
    /// program's `--help`, see `tidewell_core::cli`).
    pub const VARS: &[Var] = &[
        Var::new(
            "TIDEWELL_CACHE_URL",
            "memory://",
            "the cache: redis://host:6379 or memory://",
        ),
        Var::new(
            "TIDEWELL_CACHE_PREFIX",
            "tw",
            "the prefix of every Redis key",
        ),
        Var::new(
            "TIDEWELL_CACHE_TIMEOUT",
            "250ms",
            "how long a Redis call may take",
        ),
        Var::new(
            "TIDEWELL_CACHE_FAIL_OPEN",
            "true",
            "serve from the source when Redis is down",
        ),
        Var::new("TIDEWELL_CACHE_MAX_TTL", "24h", "the longest entry TTL"),
        Var::new(
            "TIDEWELL_CACHE_MAX_VALUE_SIZE",
            "1MiB",
            "the largest encoded value",
        ),
        Var::new(
            "TIDEWELL_CACHE_MAX_KEY_LEN",
            "512",
            "the longest key, in bytes",
        ),
        Var::new(
            "TIDEWELL_CACHE_LOCAL_CAPACITY",
            "0",
            "entries in the in-process tier (0: off)",
        ),
        Var::new(
            "TIDEWELL_CACHE_LOCAL_TTL",
            "1s",
            "how long an in-process entry lives",
        ),
        Var::new(
            "TIDEWELL_CACHE_LOCK",
            "false",
            "one loader per key across processes",
        ),
        Var::new(
            "TIDEWELL_CACHE_REFRESH_AHEAD",
            "",
            "reload hits past this fraction of their TTL in the background (e.g. 0.8)",
        ),
    ];

    /// Reads the variables in the table above from the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_source(&Env::process())
    }

    /// Reads the variables from `env`.
    pub fn from_source(env: &Env) -> Result<Self, Error> {
        let d = Self::default();
        Ok(Self {
            url: env.string("TIDEWELL_CACHE_URL")?.unwrap_or(d.url),
            prefix: env.string("TIDEWELL_CACHE_PREFIX")?.unwrap_or(d.prefix),
            timeout: env.duration("TIDEWELL_CACHE_TIMEOUT")?.unwrap_or(d.timeout),
            fail_open: env.bool("TIDEWELL_CACHE_FAIL_OPEN")?.unwrap_or(d.fail_open),
            max_ttl: env.duration("TIDEWELL_CACHE_MAX_TTL")?.unwrap_or(d.max_ttl),
            max_value_size: env
                .byte_size("TIDEWELL_CACHE_MAX_VALUE_SIZE")?
                .map_or(d.max_value_size, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            max_key_len: env
                .parse("TIDEWELL_CACHE_MAX_KEY_LEN", "a number of bytes")?
                .unwrap_or(d.max_key_len),
            local_capacity: env
                .parse("TIDEWELL_CACHE_LOCAL_CAPACITY", "a number of entries")?
                .unwrap_or(d.local_capacity),
            local_ttl: env
                .duration("TIDEWELL_CACHE_LOCAL_TTL")?
                .unwrap_or(d.local_ttl),
            distributed_lock: env
                .bool("TIDEWELL_CACHE_LOCK")?
                .unwrap_or(d.distributed_lock),
            refresh_ahead: env.parse(
                "TIDEWELL_CACHE_REFRESH_AHEAD",
                "a fraction between 0 and 1, e.g. 0.8",
            )?,
            codec: d.codec,
        })
    }
}

/// Builds a [`Cache`].
#[derive(Debug, Default)]
pub struct CacheBuilder {
    config: CacheConfig,
    metrics: Option<CacheMetrics>,
}

impl CacheBuilder {
    /// Uses `config` (e.g. from [`CacheConfig::from_env`]).
    #[must_use]
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// `redis://…` for Redis, `redis-cluster://host:port,host:port` for a Redis Cluster,
    /// `memory://` for a private in-process store, `memory://<name>` for one shared by every cache
    /// of the process that names it.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// The key prefix, also the Redis Cluster hash tag of every key (default `tw`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// The bound on every Redis call (default 250 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// When Redis fails: serve through the loader and swallow write errors (`true`, default), or
    /// return the errors (`false`). Either way errors are counted and invalidations replayed.
    #[must_use]
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.config.fail_open = fail_open;
        self
    }

    /// The longest entry TTL (default 24 h); tag versions live twice as long.
    #[must_use]
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.config.max_ttl = ttl;
        self
    }

    /// The largest encoded value (default 1 MiB).
    #[must_use]
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.config.max_value_size = bytes;
        self
    }

    /// The longest key in bytes (default 512).
    #[must_use]
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.config.max_key_len = bytes;
        self
    }

    /// A local tier of `capacity` decoded values living `ttl` in front of Redis, invalidated over
    /// Redis pub/sub. Off by default; ignored for `memory://`.
    #[must_use]
    pub fn local_tier(mut self, capacity: u64, ttl: Duration) -> Self {
        self.config.local_capacity = capacity;
        self.config.local_ttl = ttl;
        self
    }

    /// One loader per key across processes: the first takes a Redis lock, the others wait for its
    /// value (and load themselves if it takes too long).
    #[must_use]
    pub fn distributed_lock(mut self, on: bool) -> Self {
        self.config.distributed_lock = on;
        self
    }

    /// Early refresh: a `get_or_load` hit on an entry that has lived more than `fraction` of its
    /// TTL (e.g. 0.8) returns at once and reloads the entry in the background, so hot keys never
    /// expire under load. The reload records tag versions like any load: an invalidation during it
    /// keeps the reloaded value out.
    #[must_use]
    pub fn refresh_ahead(mut self, fraction: f64) -> Self {
        self.config.refresh_ahead = Some(fraction);
        self
    }

    /// The value encoding (default JSON).
    #[must_use]
    pub fn codec(mut self, codec: Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// Records into `metrics` (e.g. ones already registered with a registry).
    #[must_use]
    pub fn metrics(mut self, metrics: CacheMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Connects (failing fast if Redis is unreachable) and starts the local tier's invalidation
    /// feed.
    pub async fn build(self) -> Result<Cache, Error> {
        let c = self.config;
        if let Some(f) = c.refresh_ahead
            && !(f > 0.0 && f < 1.0)
        {
            return Err(Error::Config(format!(
                "refresh_ahead {f} must be between 0 and 1 (exclusive)"
            )));
        }
        let prefix_ok = !c.prefix.is_empty()
            && c.prefix.len() <= 64
            && c.prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !prefix_ok {
            return Err(Error::Config(format!(
                "cache prefix {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                c.prefix
            )));
        }
        let scheme = c.url.split_once("://").map_or("", |(s, _)| s);
        let stop = CancellationToken::new();
        // Names this instance on the invalidation feed, so it skips its own messages (it applied
        // them before sending) instead of dropping entries it has just refilled.
        #[cfg(feature = "redis")]
        let origin = uuid::Uuid::now_v7().simple().to_string();
        let (store, local): (Arc<dyn Store>, Option<Arc<Local>>) = match scheme {
            "memory" => {
                let name = c
                    .url
                    .split_once("://")
                    .map_or("", |(_, n)| n)
                    .trim_end_matches('/');
                (Arc::new(MemoryStore::named(name)), None)
            }
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis-cluster" => {
                let feed = crate::redis_store::Announce {
                    channel: channel(&c.prefix),
                    origin: origin.clone(),
                };
                let store = crate::redis_store::RedisStore::connect(&c.url, c.timeout, Some(feed))
                    .await?
                    .reporting_entry_tags(c.local_capacity > 0);
                let local =
                    (c.local_capacity > 0).then(|| Local::new(c.local_capacity, c.local_ttl));
                if let Some(local) = &local {
                    crate::feed::start(
                        &pubsub_url(&c.url),
                        channel(&c.prefix),
                        origin.clone(),
                        Arc::clone(local),
                        stop.clone(),
                    )?;
                }
                (Arc::new(store), local)
            }
            other => {
                return Err(Error::Config(format!(
                    "unsupported cache URL scheme {other:?}: use redis://, redis-cluster://host:port,host:port (feature \"redis\") or memory://"
                )));
            }
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                store,
                local,
                breaker: Breaker::new(5, Duration::from_millis(500), Duration::from_secs(30)),
                metrics: self.metrics.unwrap_or_default(),
                namespaces: Mutex::new(BTreeMap::new()),
                flights: Mutex::new(HashMap::new()),
                refreshing: Mutex::new(std::collections::HashSet::new()),
                pending: Mutex::new(Pending::default()),
                has_pending: AtomicBool::new(false),
                flights_done: AtomicU64::new(0),
                config: c,
                stop,
                tasks: TaskTracker::new(),
            }),
        })
    }
}

/// Pub/sub needs one node: in a Redis Cluster, PUBLISH on any node reaches subscribers on all.
#[cfg(feature = "redis")]
fn pubsub_url(url: &str) -> String {
    if url.starts_with("redis-cluster://") {
        crate::redis_store::cluster_nodes(url)
            .into_iter()
            .next()
            .unwrap_or_default()
    } else {
        url.to_owned()
    }
}

pub(crate) fn channel(prefix: &str) -> String {
    format!("{{{prefix}}}:invalidations")
}

type Flight = Shared<BoxFuture<'static, Result<Bytes, Error>>>;

#[derive(Default)]
struct Pending {
    tags: Vec<String>,
    keys: Vec<String>,
    overflow: bool,
}

struct Inner {
    store: Arc<dyn Store>,
    local: Option<Arc<Local>>,
    breaker: Breaker,
    metrics: CacheMetrics,
    namespaces: Mutex<BTreeMap<String, NsCounters>>,
    flights: Mutex<HashMap<String, Flight>>,
    /// Keys being reloaded early in the background.
    refreshing: Mutex<std::collections::HashSet<String>>,
    pending: Mutex<Pending>,
    /// Whether `pending` holds anything (checked on every call without the lock).
    has_pending: AtomicBool,
    /// Flights ended so far (a caller's read that started before one ended may be outdated).
    flights_done: AtomicU64,
    config: CacheConfig,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Drop for Inner {
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
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.inner.config.prefix)
            .field("local_tier", &self.inner.local.is_some())
            .field("fail_open", &self.inner.config.fail_open)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A builder with the defaults of [`CacheConfig`].
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// A handle on namespace `name` (letters, digits, `-`, `_`, `.`).
    pub fn namespace(&self, name: &str) -> Result<Namespace, Error> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(Error::Config(format!(
                "namespace {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        let counters = self
            .inner
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_insert_with(|| self.inner.metrics.namespace(name))
            .clone();
        let p = &self.inner.config.prefix;
        Ok(Namespace {
            ns: Arc::new(NsInner {
                cache: self.clone(),
                entry_prefix: format!("{{{p}}}:e:{name}:"),
                counters,
                name: name.into(),
            }),
        })
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
        let prefix = format!("{{{}}}:e:", self.inner.config.prefix);
        self.clear_prefix(prefix, None).await
    }

    async fn clear_prefix(&self, prefix: String, ns: Option<&NsCounters>) -> Result<(), Error> {
        if let Some(local) = &self.inner.local {
            local.flush();
        }
        let bound = self.inner.config.timeout.saturating_mul(40);
        let result = match self.inner.breaker.check() {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout(bound, self.inner.store.clear(&prefix)).await {
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
                self.inner.breaker.failure();
                self.defer_clear_all();
                self.fail_open_or(e, ())
            }
        }
    }

    fn tag_key(&self, tag: &Tag) -> String {
        joined(&["{", &self.inner.config.prefix, "}:t:", tag.as_str()])
    }

    async fn invalidate_names(
        &self,
        names: Vec<String>,
        ns: Option<&NsCounters>,
    ) -> Result<(), Error> {
        if let Some(local) = &self.inner.local {
            for n in &names {
                local.invalidate_tag(n);
            }
        }
        let ttl = self.inner.config.max_ttl.saturating_mul(2);
        let result = self
            .call(ns, self.inner.store.invalidate(&names, ttl))
            .await;
        match result {
            Ok(()) => {
                self.inner.metrics.invalidations.inc_by(names.len() as u64);
                Ok(())
            }
            Err(e) => {
                self.defer(names, Vec::new());
                self.fail_open_or(e, ())
            }
        }
    }

    /// Counters of every namespace used so far.
    pub fn stats(&self) -> Stats {
        Stats {
            namespaces: self
                .inner
                .namespaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, c)| (k.clone(), c.snapshot()))
                .collect(),
            invalidations: self.inner.metrics.invalidations.get(),
        }
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// Pings the store (bypassing the circuit breaker) and reports the state of each part.
    pub async fn health(&self) -> Health {
        let reachable = tokio::time::timeout(self.inner.config.timeout, self.inner.store.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        Health {
            store_reachable: reachable,
            circuit_open: self.inner.breaker.is_open(),
            local_tier_live: self.inner.local.as_ref().map(|l| l.is_live()),
            local_entries: self.inner.local.as_ref().map_or(0, |l| l.len()),
            pending_invalidations: {
                let p = self
                    .inner
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                p.tags.len() + p.keys.len()
            },
        }
    }

    /// Runs one store call through the breaker and the timeout, replaying pending invalidations
    /// first when some are waiting.
    async fn call<'a, T>(
        &'a self,
        ns: Option<&NsCounters>,
        op: BoxFuture<'a, Result<T, Error>>,
    ) -> Result<T, Error> {
        let result = async {
            self.inner.breaker.check()?;
            self.replay().await?;
            match tokio::time::timeout(self.inner.config.timeout, op).await {
                Ok(r) => r,
                Err(_) => Err(Error::Redis {
                    operation: "call",
                    reason: format!("no answer within {:?}", self.inner.config.timeout),
                }),
            }
        }
        .await;
        match &result {
            Ok(_) => self.inner.breaker.success(),
            Err(Error::CircuitOpen { .. }) => {}
            Err(_) => self.inner.breaker.failure(),
        }
        if result.is_err()
            && let Some(ns) = ns
        {
            ns.error.inc();
        }
        result
    }

    fn defer_clear_all(&self) {
        let mut p = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *p = Pending {
            overflow: true,
            ..Pending::default()
        };
        self.inner.has_pending.store(true, Ordering::Release);
    }

    fn defer(&self, tags: Vec<String>, keys: Vec<String>) {
        let mut p = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if p.overflow {
            return;
        }
        p.tags.extend(tags);
        p.keys.extend(keys);
        self.inner.has_pending.store(true, Ordering::Release);
        if p.tags.len() + p.keys.len() > MAX_PENDING {
            tracing::warn!(
                "too many invalidations waiting for redis; everything will be invalidated on recovery"
            );
            *p = Pending {
                overflow: true,
                ..Pending::default()
            };
        }
    }

    /// Applies invalidations and deletes that failed while Redis was unreachable.
    async fn replay(&self) -> Result<(), Error> {
        if !self.inner.has_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let pending = {
            let mut p = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if p.tags.is_empty() && p.keys.is_empty() && !p.overflow {
                return Ok(());
            }
            self.inner.has_pending.store(false, Ordering::Release);
            std::mem::take(&mut *p)
        };
        let tags = pending.tags.clone();
        let ttl = self.inner.config.max_ttl.saturating_mul(2);
        let everything = format!("{{{}}}:e:", self.inner.config.prefix);
        let outcome = async {
            if pending.overflow {
                self.inner.store.clear(&everything).await?;
            }
            if !tags.is_empty() {
                self.inner.store.invalidate(&tags, ttl).await?;
            }
            for k in &pending.keys {
                self.inner.store.delete(k).await?;
            }
            Ok::<(), Error>(())
        };
        match tokio::time::timeout(self.inner.config.timeout.saturating_mul(4), outcome).await {
            Ok(Ok(())) => {
                tracing::info!(
                    tags = tags.len(),
                    keys = pending.keys.len(),
                    "replayed invalidations after redis recovered"
                );
                Ok(())
            }
            other => {
                let mut p = self
                    .inner
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                p.tags.extend(pending.tags);
                p.keys.extend(pending.keys);
                p.overflow |= pending.overflow;
                self.inner.has_pending.store(true, Ordering::Release);
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

    fn fail_open_or<T>(&self, error: Error, fallback: T) -> Result<T, Error> {
        if self.inner.config.fail_open {
            tracing::debug!(%error, "cache backend failed; continuing (fail-open)");
            Ok(fallback)
        } else {
            Err(error)
        }
    }
}

/// One namespace of a [`Cache`]: keys are per namespace, tags are shared by all namespaces.
/// Cheap to clone (one reference count).
#[derive(Clone)]
pub struct Namespace {
    ns: Arc<NsInner>,
}

struct NsInner {
    cache: Cache,
    name: Arc<str>,
    entry_prefix: String,
    counters: NsCounters,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.ns.name)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    fn entry_key(&self, key: &Key) -> Result<String, Error> {
        key.validate(self.ns.cache.inner.config.max_key_len)?;
        Ok(joined(&[&self.ns.entry_prefix, key.as_str()]))
    }

    fn tag_names(&self, tags: &[Tag]) -> Result<Vec<String>, Error> {
        let mut names = Vec::with_capacity(tags.len() + 2);
        for t in tags {
            t.validate()?;
            names.push(self.ns.cache.tag_key(t));
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    fn check_ttl(&self, ttl: Duration) -> Result<(), Error> {
        let max = self.ns.cache.inner.config.max_ttl;
        if ttl.is_zero() || ttl > max {
            return Err(Error::InvalidTtl { ttl, max });
        }
        Ok(())
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, Error> {
        let bytes = self.ns.cache.inner.config.codec.encode(value)?;
        let limit = self.ns.cache.inner.config.max_value_size;
        if bytes.len() > limit {
            return Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.ns.name
    }

    /// The value under `key`, if present, valid (no tag invalidated since it was written) and
    /// still decodable as `T` (a value of an older schema reads as a counted miss).
    pub async fn get<T>(&self, key: &Key) -> Result<Option<T>, Error>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let full = self.entry_key(key)?;
        let codec = self.ns.cache.inner.config.codec;
        if let Some(hit) = self.local_get(&full, codec) {
            return Ok(Some(hit));
        }
        let mark = self.ns.cache.inner.local.as_ref().map(|l| l.mark());
        match self
            .ns
            .cache
            .call(
                Some(&self.ns.counters),
                self.ns.cache.inner.store.read(&full, &[]),
            )
            .await
        {
            Ok(read) => Ok(self.accept(&full, read, mark)),
            Err(e) => self.ns.cache.fail_open_or(e, None),
        }
    }

    fn local_get<T>(&self, full: &str, codec: Codec) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let entry = self.ns.cache.inner.local.as_ref()?.get(full)?;
        let value = entry.value(|b| codec.decode::<T>(b))?;
        self.ns.counters.local_hit.inc();
        Some(value)
    }

    /// Counts a read and decodes a hit (filling the local tier).
    fn accept<T>(&self, full: &str, read: Read, mark: Option<u64>) -> Option<T>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        match read.lookup {
            Lookup::Hit(bytes) => match self.ns.cache.inner.config.codec.decode::<T>(&bytes) {
                Some(v) => {
                    self.ns.counters.hit.inc();
                    if let (Some(local), Some(mark)) = (&self.ns.cache.inner.local, mark) {
                        local.insert(full, bytes, &read.entry_tags, mark);
                    }
                    Some(v)
                }
                None => {
                    self.ns.counters.undecodable.inc();
                    None
                }
            },
            Lookup::Stale => {
                self.ns.counters.stale.inc();
                None
            }
            Lookup::Miss => {
                self.ns.counters.miss.inc();
                None
            }
        }
    }

    /// Stores `value` under `key` for `ttl`, tagged with `tags`.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        ttl: Duration,
        tags: &[Tag],
    ) -> Result<(), Error> {
        let full = self.entry_key(key)?;
        self.check_ttl(ttl)?;
        let names = self.tag_names(tags)?;
        let bytes = self.encode(value)?;
        if let Some(local) = &self.ns.cache.inner.local {
            local.remove(&full);
        }
        let written = self
            .ns
            .cache
            .call(
                Some(&self.ns.counters),
                self.ns
                    .cache
                    .inner
                    .store
                    .write(&full, &bytes, ttl, &names, None, true),
            )
            .await;
        match written {
            Ok(_) => {
                self.ns.counters.set.inc();
                Ok(())
            }
            Err(e) => {
                // The old value may still be there: make sure it goes when Redis is back.
                self.ns.cache.defer(Vec::new(), vec![full]);
                self.ns.cache.fail_open_or(e, ())
            }
        }
    }

    /// Deletes `key`; returns whether it was there. If Redis is down, the delete is replayed as
    /// soon as it is back.
    pub async fn delete(&self, key: &Key) -> Result<bool, Error> {
        let full = self.entry_key(key)?;
        if let Some(local) = &self.ns.cache.inner.local {
            local.remove(&full);
        }
        match self
            .ns
            .cache
            .call(
                Some(&self.ns.counters),
                self.ns.cache.inner.store.delete(&full),
            )
            .await
        {
            Ok(existed) => {
                self.ns.counters.delete.inc();
                Ok(existed)
            }
            Err(e) => {
                self.ns.cache.defer(Vec::new(), vec![full]);
                self.ns.cache.fail_open_or(e, false)
            }
        }
    }

    /// Invalidates `tags` (in every namespace, like [`Cache::invalidate_tags`]).
    pub async fn invalidate_tags(&self, tags: &[Tag]) -> Result<(), Error> {
        let names = tags
            .iter()
            .map(|t| t.validate().map(|()| self.ns.cache.tag_key(t)))
            .collect::<Result<Vec<_>, _>>()?;
        self.ns
            .cache
            .invalidate_names(names, Some(&self.ns.counters))
            .await
    }

    /// Deletes every entry of this namespace (a scan: O(entries), for maintenance; use tags to
    /// invalidate on the request path).
    pub async fn clear(&self) -> Result<(), Error> {
        self.ns
            .cache
            .clear_prefix(self.ns.entry_prefix.clone(), Some(&self.ns.counters))
            .await
    }

    /// The value under `key`, or the loader's value, stored for `ttl` with `tags`.
    ///
    /// - One loader per key per process: concurrent callers wait for the first one's value.
    /// - With [`CacheBuilder::distributed_lock`], one per key across processes.
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
        let codec = self.ns.cache.inner.config.codec;
        if let Some(hit) = self.local_get(&full, codec) {
            return Ok(hit);
        }
        // The read runs in the caller's task: a hit costs no flight bookkeeping and one decode.
        let inner = &self.ns.cache.inner;
        let mark = inner.local.as_ref().map(|l| l.mark());
        let flights_before = inner.flights_done.load(Ordering::Acquire);
        let read = match self
            .ns
            .cache
            .call(Some(&self.ns.counters), inner.store.read(&full, &names))
            .await
        {
            Ok(mut read) => {
                if matches!(read.lookup, Lookup::Hit(_)) {
                    let due = self.refresh_due(ttl, read.ttl_left);
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
                } else {
                    PreRead::Miss(read)
                }
            }
            Err(e) if !inner.config.fail_open => return Err(e),
            Err(_) => PreRead::Failed,
        };
        let flight = {
            let mut flights = inner.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&full) {
                // Another caller's load is running: wait for its value. Its miss is counted
                // once, by the caller that started it, as before reads left the flight.
                Some(f) => f.clone(),
                None => {
                    // The versions this load records: this read's, unless a flight ended since
                    // it started (its value may be written after this read: the flight reads
                    // again rather than load twice); none when Redis failed (serve, don't store).
                    let versions = match read {
                        PreRead::Failed => Some(None),
                        _ if inner.flights_done.load(Ordering::Acquire) != flights_before => None,
                        PreRead::Miss(mut read) => {
                            let versions = std::mem::take(&mut read.versions);
                            self.accept::<T>(&full, read, mark);
                            Some(Some(versions))
                        }
                        PreRead::Counted(versions) => Some(Some(versions)),
                    };
                    // The load runs as its own task, so it completes (and caches) even if every
                    // caller waiting for it is cancelled.
                    let f: Flight = self
                        .clone()
                        .fly::<T, F, Fut, E>(full.clone(), ttl, names, versions, loader)
                        .shared();
                    flights.insert(full.clone(), f.clone());
                    f
                }
            }
        };
        let bytes = flight.await?;
        codec
            .decode::<T>(&bytes)
            .ok_or_else(|| Error::Encode("a loaded value did not decode as the same type".into()))
    }

    /// The single flight of one key: with `read` (the versions the caller's read found, or
    /// `Some(None)` when Redis failed) it loads at once; without, it reads first and returns a hit
    /// if a load that just ended wrote one. Removes itself from the flights when done (or when
    /// every caller gave up before a load started).
    fn fly<T, F, Fut, E>(
        self,
        full: String,
        ttl: Duration,
        names: Vec<String>,
        read: Option<Option<Vec<String>>>,
        loader: F,
    ) -> BoxFuture<'static, Result<Bytes, Error>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        Box::pin(async move {
            let done = FlightDone {
                cache: self.ns.cache.clone(),
                key: full,
            };
            let full = done.key.as_str();
            let inner = &self.ns.cache.inner;
            let mark = inner.local.as_ref().map(|l| l.mark());
            let versions = match read {
                Some(versions) => versions,
                None => match self
                    .ns
                    .cache
                    .call(Some(&self.ns.counters), inner.store.read(full, &names))
                    .await
                {
                    Ok(read) => {
                        if let Lookup::Hit(bytes) = &read.lookup
                            && inner.config.codec.decode::<T>(bytes).is_some()
                        {
                            let bytes = bytes.clone();
                            let due = self.refresh_due(ttl, read.ttl_left);
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
                        Some(versions)
                    }
                    Err(e) => {
                        if !inner.config.fail_open {
                            return Err(e);
                        }
                        None
                    }
                },
            };
            let tasks = inner.tasks.clone();
            let task = tasks.spawn(async move {
                let full = done.key.as_str();
                let result = self
                    .load::<T, F, Fut, E>(full, ttl, &names, versions, loader)
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
    /// value with the tag versions read before it ran (`None`: Redis failed, serve only).
    async fn load<T, F, Fut, E>(
        &self,
        full: &str,
        ttl: Duration,
        names: &[String],
        versions: Option<Vec<String>>,
        loader: F,
    ) -> Result<Bytes, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let inner = &self.ns.cache.inner;
        let lock = if inner.config.distributed_lock && versions.is_some() {
            self.acquire_or_wait::<T>(full, names).await
        } else {
            LockOutcome::Unlocked
        };
        let token = match lock {
            LockOutcome::Value(bytes) => return Ok(bytes),
            LockOutcome::Held(token) => Some(token),
            LockOutcome::Unlocked => None,
        };

        self.ns.counters.load.inc();
        let loaded = loader().await.map_err(|e| Error::Loader(Arc::new(e)));
        let result = match loaded {
            Ok(value) => {
                let bytes = self.encode(&value)?;
                if let Some(versions) = versions {
                    match self
                        .ns
                        .cache
                        .call(
                            Some(&self.ns.counters),
                            inner
                                .store
                                .write(full, &bytes, ttl, names, Some(&versions), false),
                        )
                        .await
                    {
                        Ok(true) => self.ns.counters.set.inc(),
                        Ok(false) => self.ns.counters.skipped.inc(),
                        Err(e) if !inner.config.fail_open => return Err(e),
                        Err(_) => {}
                    }
                }
                Ok(Bytes::from(bytes))
            }
            Err(e) => Err(e),
        };
        if let Some(token) = token {
            let lock_key = self.lock_key(full);
            // ok to ignore: the lock expires by itself
            let _ = self
                .ns
                .cache
                .call(None, inner.store.unlock(&lock_key, &token))
                .await;
        }
        result
    }

    /// Whether a hit with `left` to live is due an early refresh (`CacheBuilder::refresh_ahead`).
    fn refresh_due(&self, ttl: Duration, left: Option<Duration>) -> bool {
        match (self.ns.cache.inner.config.refresh_ahead, left) {
            (Some(f), Some(left)) => left < ttl.mul_f64(1.0 - f),
            _ => false,
        }
    }

    /// Reloads `full` in a tracked background task, once at a time per key.
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
        let inner = &self.ns.cache.inner;
        if !inner
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(full.clone())
        {
            return;
        }
        let ns = self.clone();
        inner.tasks.spawn(async move {
            ns.ns.counters.load.inc();
            match loader().await {
                Ok(value) => match ns.encode(&value) {
                    Ok(bytes) => {
                        let write = ns.ns.cache.inner.store.write(&full, &bytes, ttl, &names, Some(&versions), true);
                        match ns.ns.cache.call(Some(&ns.ns.counters), write).await {
                            Ok(true) => {
                                ns.ns.counters.set.inc();
                                if let Some(local) = &ns.ns.cache.inner.local {
                                    local.remove(&full);
                                }
                            }
                            Ok(false) => ns.ns.counters.skipped.inc(),
                            Err(error) => tracing::debug!(%error, key = %full, "early refresh not stored"),
                        }
                    }
                    Err(error) => tracing::warn!(%error, key = %full, "early refresh: cannot encode"),
                },
                Err(error) => tracing::warn!(%error, key = %full, "early refresh: loader failed; the cached value stays until it expires"),
            }
            ns.ns.cache.inner.refreshing.lock().unwrap_or_else(PoisonError::into_inner).remove(&full);
        });
    }

    fn lock_key(&self, full: &str) -> String {
        format!("{{{}}}:l:{full}", self.ns.cache.inner.config.prefix)
    }

    /// Takes the cross-process lock, or waits (with backoff) for the holder's value; after
    /// [`LOCK_TTL`] without one, loads without the lock.
    async fn acquire_or_wait<T>(&self, full: &str, names: &[String]) -> LockOutcome
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let inner = &self.ns.cache.inner;
        let lock_key = self.lock_key(full);
        let token = crate::store::fresh_version();
        match self
            .ns
            .cache
            .call(
                Some(&self.ns.counters),
                inner.store.lock(&lock_key, &token, LOCK_TTL),
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
            if let Ok(read) = self
                .ns
                .cache
                .call(Some(&self.ns.counters), inner.store.read(full, names))
                .await
                && let Lookup::Hit(bytes) = read.lookup
                && inner.config.codec.decode::<T>(&bytes).is_some()
            {
                self.ns.counters.hit.inc();
                return LockOutcome::Value(bytes);
            }
        }
        tracing::warn!(
            key = full,
            "lock holder took too long; loading without the lock"
        );
        LockOutcome::Unlocked
    }
}

/// Removes a key's flight when dropped: when the flight ends, or when every caller gave up on it.
struct FlightDone {
    cache: Cache,
    key: String,
}

impl Drop for FlightDone {
    fn drop(&mut self) {
        let inner = &self.cache.inner;
        let mut flights = inner.flights.lock().unwrap_or_else(PoisonError::into_inner);
        flights.remove(&self.key);
        // Under the lock: a caller that finds no flight for the key also sees it counted.
        inner.flights_done.fetch_add(1, Ordering::Release);
    }
}

/// What a `get_or_load` caller's own read found, when it was not a hit to return.
enum PreRead {
    /// No valid entry (not counted yet).
    Miss(Read),
    /// A hit that did not decode (counted); the versions it read.
    Counted(Vec<String>),
    /// Redis failed (counted), in fail-open mode.
    Failed,
}

enum LockOutcome {
    Held(String),
    Value(Bytes),
    Unlocked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("cache.rs"), CacheConfig::VARS);
    }
}
