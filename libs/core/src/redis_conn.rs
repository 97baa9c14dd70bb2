//! A connection to Redis (feature `redis`): one self-healing connection manager to a single
//! server, or a Redis Cluster connection (`redis-cluster://host:port,host:port`,
//! `rediss-cluster://` over TLS), both bounded by a timeout. The cache's store and the proxy's
//! shared rate limits run on it.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;

use crate::Error;
use crate::config::redact_url;
use crate::tls::{ClientTls, explain};

/// A connection to a single Redis server (redis-rs's self-healing connection manager) or to a
/// Redis Cluster, chosen by the URL's scheme. It implements redis-rs's `ConnectionLike`, so
/// commands, pipelines and scripts run on either.
///
/// ```no_run
/// # async fn demo() -> Result<(), tidewell_core::Error> {
/// use std::time::Duration;
/// use tidewell_core::redis_conn::RedisConn;
/// use tidewell_core::tls::ClientTls;
///
/// let mut conn = RedisConn::open(
///     "redis-cluster://127.0.0.1:7001,127.0.0.1:7002",
///     Duration::from_millis(500),
///     &ClientTls::default(),
/// )
/// .await?;
/// let _: Option<String> = redis::cmd("GET").arg("key").query_async(&mut conn).await.ok().flatten();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnected by redis-rs's connection manager.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// Connects to `url` (`redis://`, `rediss://`, `redis-cluster://host:port,host:port` or
    /// `rediss-cluster://`), every call bounded by `timeout`; fails fast if Redis is
    /// unreachable ([`Error::RedisConnect`], a refused certificate explained). TLS URLs use
    /// `tls`; TLS files with a plaintext URL are refused ([`Error::Tls`]).
    pub async fn open(url: &str, timeout: Duration, tls: &ClientTls) -> Result<Self, Error> {
        let connect_error = |reason: String| Error::RedisConnect {
            url: redact_url(url),
            reason,
        };
        let failed = |e: redis::RedisError| {
            let host = url.split_once("://").map_or(url, |(_, rest)| rest);
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            connect_error(explain(host, &e).unwrap_or_else(|| e.to_string()))
        };
        if is_cluster_url(url) {
            let client = cluster_builder(url, tls)?
                .response_timeout(timeout)
                .connection_timeout(timeout.max(Duration::from_secs(1)))
                .build()
                .map_err(|e| connect_error(e.to_string()))?;
            return connect_cluster(url, &client, timeout)
                .await
                .map(Self::Cluster);
        }
        let client = tls.redis_client(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = tokio::time::timeout(
            timeout.max(Duration::from_secs(2)),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| connect_error("no answer in time".into()))?
        .map_err(failed)?;
        Ok(Self::Single(connection))
    }
}

impl redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether `url` names a Redis Cluster (`redis-cluster://` or `rediss-cluster://`).
pub fn is_cluster_url(url: &str) -> bool {
    url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://")
}

/// A cluster connection that receives the nodes' push messages (RESP3) on `pushes`: sharded
/// pub/sub messages, subscription confirmations and `Disconnection` notices. Its subscriptions
/// are renewed by redis-rs after a reconnect. Same URL and TLS rules as [`RedisConn::open`].
pub async fn open_cluster_with_pushes(
    url: &str,
    timeout: Duration,
    tls: &ClientTls,
    pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> Result<redis::cluster_async::ClusterConnection, Error> {
    if !is_cluster_url(url) {
        return Err(Error::RedisConnect {
            url: redact_url(url),
            reason: "not a Redis Cluster URL (redis-cluster://host:port,host:port)".into(),
        });
    }
    let client = cluster_builder(url, tls)?
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .response_timeout(timeout)
        .connection_timeout(timeout.max(Duration::from_secs(1)))
        .build()
        .map_err(|e| Error::RedisConnect {
            url: redact_url(url),
            reason: e.to_string(),
        })?;
    connect_cluster(url, &client, timeout).await
}

/// A builder for the cluster at `url`, with TLS when it is `rediss-cluster://`.
fn cluster_builder(
    url: &str,
    tls: &ClientTls,
) -> Result<redis::cluster::ClusterClientBuilder, Error> {
    let mut builder = redis::cluster::ClusterClientBuilder::new(cluster_nodes(url));
    if url.starts_with("rediss-cluster://") {
        crate::tls::install_ring();
        builder = builder.certs(tls.redis_certificates()?);
    } else if !tls.is_default() {
        return Err(Error::Tls {
            reason: "TLS files are set but the Redis URL is redis-cluster://; use rediss-cluster:// or unset them".into(),
        });
    }
    Ok(builder)
}

/// The first connection to a cluster, bounded by `timeout` (at least 2 s).
async fn connect_cluster(
    url: &str,
    client: &redis::cluster::ClusterClient,
    timeout: Duration,
) -> Result<redis::cluster_async::ClusterConnection, Error> {
    let connect_error = |reason: String| Error::RedisConnect {
        url: redact_url(url),
        reason,
    };
    tokio::time::timeout(
        timeout.max(Duration::from_secs(2)),
        client.get_async_connection(),
    )
    .await
    .map_err(|_| connect_error("no answer in time".into()))?
    .map_err(|e| {
        let host = url.split_once("://").map_or(url, |(_, rest)| rest);
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        connect_error(explain(host, &e).unwrap_or_else(|| e.to_string()))
    })
}

/// The nodes of a `redis-cluster://host:port,host:port` URL, as `redis://` URLs.
pub fn cluster_nodes(url: &str) -> Vec<String> {
    let scheme = if url.starts_with("rediss-cluster://") {
        "rediss"
    } else {
        "redis"
    };
    url.split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| format!("{scheme}://{n}"))
        .collect()
}
