//! Rate limits shared by every node of a proxy, over Redis (feature `redis`): the same GCRA as
//! the local limiter (a theoretical arrival time per route and client IP), kept in Redis and
//! advanced by one script call per request, so a client that spreads its requests over N nodes
//! gets the limit once, not N times. Redis's clock decides, so the nodes' clocks need not agree.
//!
//! While Redis does not answer, each node falls back to its own local limit (fail open to the
//! per-node limit, never to no limit), and says so in the log at most every 10 seconds.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidewell_core::redis_conn::RedisConn;
use tidewell_core::tls::ClientTls;

use crate::Error;
use crate::config::RateLimit;

/// GCRA in microseconds on Redis's clock. KEYS[1]: the client's key; ARGV[1]: microseconds per
/// request; ARGV[2]: the burst. Answers 0 (admitted) or the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then return math.ceil(allow_at - now) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

/// How long one check may wait for Redis before the local limit decides.
const CHECK_TIMEOUT: Duration = Duration::from_millis(250);

/// Rate limits kept in Redis, shared by every proxy that uses the same Redis and prefix (attach
/// with [`Proxy::share_limits`](crate::Proxy::share_limits)).
///
/// ```no_run
/// # async fn demo() -> Result<(), tidewell_proxy::Error> {
/// use tidewell_core::tls::ClientTls;
/// use tidewell_proxy::{Proxy, ProxyConfig, Route, SharedLimits};
///
/// let proxy = Proxy::new(
///     ProxyConfig::new().route(Route::new("/api", &["http://127.0.0.1:8081"])?.rate_limit(10.0, 20)),
/// )?;
/// let shared = SharedLimits::connect("redis://127.0.0.1:6379", "gateway", &ClientTls::default()).await?;
/// proxy.share_limits(shared)?; // every node with the same Redis and prefix shares each client's budget
/// # Ok(()) }
/// ```
pub struct SharedLimits {
    conn: RedisConn,
    prefix: String,
    script: redis::Script,
    /// When the fallback was last logged (milliseconds since `started`).
    last_warning: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Connects to the Redis at `url` (`redis://`, `rediss://`, `redis-cluster://host:port,...`
    /// or `rediss-cluster://`; TLS settings from `tls`). Keys are `<prefix>:rl:<route>:<ip>`,
    /// each expiring once its client's budget is full again. Fails fast if Redis is unreachable.
    pub async fn connect(url: &str, prefix: &str, tls: &ClientTls) -> Result<Self, Error> {
        let conn = RedisConn::open(url, CHECK_TIMEOUT, tls)
            .await
            .map_err(|e| Error::Config(format!("shared rate limits: {e}")))?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            script: redis::Script::new(GCRA),
            last_warning: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Takes one request of `ip`'s budget on `route` (its host and prefix): `Ok(None)` admitted,
    /// `Ok(Some(wait))` refused until `wait` has passed, `Err` when Redis did not answer.
    pub(crate) async fn check(
        &self,
        route: &str,
        ip: IpAddr,
        limit: RateLimit,
    ) -> Result<Option<Duration>, redis::RedisError> {
        let interval = (1_000_000.0 / limit.per_second).clamp(1.0, 3.2e13);
        let key = format!("{}:rl:{route}:{ip}", self.prefix);
        let mut conn = self.conn.clone();
        let wait: u64 = self
            .script
            .key(key)
            .arg(format!("{interval:.0}"))
            .arg(limit.burst)
            .invoke_async(&mut conn)
            .await?;
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }

    /// Logs that Redis failed and the local limit decided, at most every 10 seconds.
    pub(crate) fn warn_fallback(&self, error: &redis::RedisError) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, "shared rate limits: Redis did not answer; each node applies its own limit meanwhile");
        }
    }
}
