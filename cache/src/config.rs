//! The cache's configuration, from code or from the environment.

use std::time::Duration;

use tidewell_core::cli::Var;
use tidewell_core::config::Env;
use tidewell_core::tls::ClientTls;

use crate::Error;
use crate::codec::Codec;
use crate::key::{MAX_NAME_LEN, is_plain_name};

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
/// | `TIDEWELL_CACHE_TLS_CA_FILE` | PEM CA certificates trusted for `rediss://` instead of the system's roots | unset |
/// | `TIDEWELL_CACHE_TLS_CERT_FILE` | PEM client certificate, for Redis servers that require mutual TLS | unset |
/// | `TIDEWELL_CACHE_TLS_KEY_FILE` | PEM private key of the client certificate | unset |
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
    /// TLS for `rediss://` and `rediss-cluster://` URLs: a CA file, a client certificate.
    pub tls: ClientTls,
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
            tls: ClientTls::default(),
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
        Var::new(
            "TIDEWELL_CACHE_TLS_CA_FILE",
            "",
            "PEM CA certificates trusted for rediss:// instead of the system's roots",
        ),
        Var::new(
            "TIDEWELL_CACHE_TLS_CERT_FILE",
            "",
            "PEM client certificate, for mutual TLS",
        ),
        Var::new(
            "TIDEWELL_CACHE_TLS_KEY_FILE",
            "",
            "PEM private key of the client certificate",
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
            tls: ClientTls::from_source(env, "TIDEWELL_CACHE")?,
        })
    }

    /// Refuses what no cache can be built with: a refresh-ahead fraction outside (0, 1), a
    /// prefix that is not a plain name.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if let Some(f) = self.refresh_ahead
            && !(f > 0.0 && f < 1.0)
        {
            return Err(Error::Config(format!(
                "refresh_ahead {f} must be between 0 and 1 (exclusive)"
            )));
        }
        if !is_plain_name(&self.prefix) {
            return Err(Error::Config(format!(
                "cache prefix {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                self.prefix
            )));
        }
        Ok(())
    }

    /// Whether the keys spread over the slots of a Redis Cluster (a cluster URL): each entry,
    /// tag version and lock has a hash tag of its own (`P:e:ns:{key}`, `P:t:{tag}`), so a cache
    /// uses every master. Elsewhere every key carries the prefix as its hash tag (`{P}:e:ns:key`).
    pub(crate) fn sharded(&self) -> bool {
        self.url.starts_with("redis-cluster://") || self.url.starts_with("rediss-cluster://")
    }

    /// The start of every entry key of this cache (`{P}:e:`, sharded `P:e:`).
    pub(crate) fn entries_prefix(&self) -> String {
        if self.sharded() {
            format!("{}:e:", self.prefix)
        } else {
            format!("{{{}}}:e:", self.prefix)
        }
    }

    /// The store key of the version of tag `tag` (`{P}:t:tag`, sharded `P:t:{tag}`).
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        if self.sharded() {
            crate::key::joined(&[&self.prefix, ":t:{", tag, "}"])
        } else {
            crate::key::joined(&["{", &self.prefix, "}:t:", tag])
        }
    }

    /// The store key of the lock of the entry `entry` (in the entry's slot when sharded).
    pub(crate) fn lock_key(&self, entry: &str) -> String {
        if self.sharded() {
            format!("{}:l:{entry}", self.prefix)
        } else {
            format!("{{{}}}:l:{entry}", self.prefix)
        }
    }

    /// How long a tag version lives: twice the longest entry TTL, so it outlives every entry
    /// that recorded it.
    pub(crate) fn tag_version_ttl(&self) -> Duration {
        self.max_ttl.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_lists_what_from_env_reads() {
        tidewell_testkit::assert_vars_listed(include_str!("config.rs"), CacheConfig::VARS);
    }
}
