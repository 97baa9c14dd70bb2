//! The de-duplication guard on Redis, shared by every consumer process.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tidewell_core::tls::ClientTls;

use crate::Error;
use crate::backend::BoxFuture;
use crate::dedup::{Claim, Dedup};

/// Deletes the key only while it still holds a claim (never a completed mark).
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == 'claimed' then return redis.call('DEL', KEYS[1]) end return 0";

/// A de-duplication guard on Redis: one key per message id, `<prefix>:<id>`, holding `claimed`
/// (with the lease as expiry) while a handler runs and `done` (with the retention as expiry)
/// after it succeeded. Nothing grows without bound: every key expires.
///
/// ```no_run
/// # async fn demo() -> Result<(), tidewell_event_hub::Error> {
/// use std::time::Duration;
/// use tidewell_event_hub::{RedisDedup, Subscription};
/// let guard = RedisDedup::connect("redis://127.0.0.1:6379", "payments:dedup")
///     .await?
///     .retention(Duration::from_secs(7 * 24 * 3600));
/// let sub = Subscription::new("payments.events").dedup(guard);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisDedup {
    connection: MultiplexedConnection,
    prefix: String,
    lease: Duration,
    retention: Duration,
}

impl std::fmt::Debug for RedisDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDedup")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl RedisDedup {
    /// Connects to Redis at `url` (`redis://`, or `rediss://` over TLS with the system's roots);
    /// keys are `<prefix>:<message id>`. Claims last 60 s, completed marks 24 h.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, Error> {
        Self::connect_tls(url, prefix, &ClientTls::default()).await
    }

    /// [`connect`](Self::connect) to a `rediss://` URL with `tls`: a private CA, a client
    /// certificate for mutual TLS (see `tidewell_core::tls::ClientTls::from_source` for reading
    /// them from `TIDEWELL_<AREA>_TLS_*` variables).
    pub async fn connect_tls(
        url: &str,
        prefix: impl Into<String>,
        tls: &ClientTls,
    ) -> Result<Self, Error> {
        let client = tls
            .redis_client(url)
            .map_err(|e| Error::Dedup(e.to_string().into()))?;
        let connection = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| Error::Dedup("no answer from Redis within 10 s; is it running?".into()))?
        .map_err(|e| {
            let shown = tidewell_core::config::redact_url(url);
            Error::Dedup(
                tidewell_core::tls::explain(&shown, &e)
                    .unwrap_or_else(|| format!("cannot connect to Redis: {e}; is it running?"))
                    .into(),
            )
        })?;
        Ok(Self {
            connection,
            prefix: prefix.into(),
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
        })
    }

    /// How long a claim lasts if the consumer dies before completing or releasing it.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a processed id is remembered (longer than any redelivery can take).
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// `SET key claimed NX PX lease`: whether this call took the claim.
    async fn try_claim(&self, c: &mut MultiplexedConnection, key: &str) -> Result<bool, Error> {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg("claimed")
            .arg("NX")
            .arg("PX")
            .arg(millis(self.lease))
            .query_async(c)
            .await
            .map_err(store_error)?;
        Ok(set.is_some())
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.prefix)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn store_error(e: redis::RedisError) -> Error {
    Error::Dedup(e.into())
}

impl Dedup for RedisDedup {
    fn claim<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            let key = self.key(id);
            if self.try_claim(&mut c, &key).await? {
                return Ok(Claim::Claimed);
            }
            let current: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut c)
                .await
                .map_err(store_error)?;
            Ok(match current.as_deref() {
                Some("done") => Claim::Done,
                // Expired between the two commands: try once more.
                None if self.try_claim(&mut c, &key).await? => Claim::Claimed,
                // Held by another consumer (or taken again by one after the expiry).
                _ => Claim::InProgress,
            })
        })
    }

    fn complete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            redis::cmd("SET")
                .arg(self.key(id))
                .arg("done")
                .arg("PX")
                .arg(millis(self.retention))
                .query_async::<()>(&mut c)
                .await
                .map_err(store_error)
        })
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            redis::Script::new(RELEASE)
                .key(self.key(id))
                .invoke_async::<i64>(&mut c)
                .await
                .map(drop)
                .map_err(store_error)
        })
    }
}
