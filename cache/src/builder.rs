//! [`CacheBuilder`]: options on top of [`CacheConfig`], then the store chosen by URL scheme and,
//! for Redis, the local tier with its invalidation feed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::cache::Cache;
use crate::codec::Codec;
use crate::config::CacheConfig;
use crate::local::Local;
use crate::memory_store::MemoryStore;
use crate::stats::CacheMetrics;
use crate::store::Store;

/// Builds a [`Cache`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_cache::Error> {
/// use std::time::Duration;
/// use tidewell_cache::Cache;
///
/// let cache = Cache::builder()
///     .url("memory://") // or "redis://127.0.0.1:6379"
///     .prefix("shop")
///     .timeout(Duration::from_millis(100))
///     .build()
///     .await?;
/// assert!(cache.health().await.store_reachable);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct CacheBuilder {
    config: CacheConfig,
    metrics: Option<CacheMetrics>,
}

impl Cache {
    /// A builder with the defaults of [`CacheConfig`].
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }
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

    /// TLS for a `rediss://` or `rediss-cluster://` URL: a CA file (instead of the system's
    /// roots), a client certificate and key for mutual TLS.
    #[must_use]
    pub fn tls(mut self, tls: tidewell_core::tls::ClientTls) -> Self {
        self.config.tls = tls;
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
        let config = self.config;
        config.check()?;
        let stop = CancellationToken::new();
        let (store, local) = connect(&config, &stop).await?;
        Ok(Cache::new(
            config,
            store,
            local,
            self.metrics.unwrap_or_default(),
            stop,
        ))
    }
}

/// The store `c.url` names and, for Redis with a local tier, that tier (its feed stops with
/// `stop`).
#[cfg_attr(
    not(feature = "redis"),
    expect(unused_variables, reason = "only Redis has a local tier to stop")
)]
async fn connect(
    c: &CacheConfig,
    stop: &CancellationToken,
) -> Result<(Arc<dyn Store>, Option<Arc<Local>>), Error> {
    let (scheme, rest) = c.url.split_once("://").unwrap_or(("", ""));
    match scheme {
        "memory" => {
            let name = rest.trim_end_matches('/');
            Ok((Arc::new(MemoryStore::named(name)), None))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster" => connect_redis(c, stop).await,
        other => Err(Error::Config(format!(
            "unsupported cache URL scheme {other:?}: use redis://, rediss://, redis-cluster://host:port,host:port, rediss-cluster:// (feature \"redis\") or memory://"
        ))),
    }
}

#[cfg(feature = "redis")]
async fn connect_redis(
    c: &CacheConfig,
    stop: &CancellationToken,
) -> Result<(Arc<dyn Store>, Option<Arc<Local>>), Error> {
    // Names this instance on the invalidation feed, so it skips its own messages (it applied
    // them before sending) instead of dropping entries it has just refilled.
    let origin = uuid::Uuid::now_v7().simple().to_string();
    let feed = crate::redis_store::Announce {
        channel: channel(&c.prefix),
        origin: origin.clone(),
    };
    let store = crate::redis_store::RedisStore::connect(&c.url, c.timeout, &c.tls, Some(feed))
        .await?
        .reporting_entry_tags(c.local_capacity > 0);
    let local = (c.local_capacity > 0).then(|| Local::new(c.local_capacity, c.local_ttl));
    if let Some(local) = &local {
        crate::feed::start(
            &pubsub_url(&c.url),
            &c.tls,
            channel(&c.prefix),
            origin,
            Arc::clone(local),
            stop.clone(),
        )?;
    }
    Ok((Arc::new(store), local))
}

/// Pub/sub needs one node: in a Redis Cluster, PUBLISH on any node reaches subscribers on all.
#[cfg(feature = "redis")]
fn pubsub_url(url: &str) -> String {
    if url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://") {
        tidewell_core::redis_conn::cluster_nodes(url)
            .into_iter()
            .next()
            .unwrap_or_default()
    } else {
        url.to_owned()
    }
}

/// The pub/sub channel of the local tiers' invalidation feed.
#[cfg(feature = "redis")]
fn channel(prefix: &str) -> String {
    format!("{{{prefix}}}:invalidations")
}
