use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong in the cache. Messages say what failed and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis could not be reached when the cache was built.
    #[error(
        "cannot connect to Redis at {url}: {reason}; is it running (redis-server --daemonize yes)?"
    )]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// What the client reported.
        reason: String,
    },

    /// A Redis call failed or timed out.
    #[error("redis {operation} failed: {reason}")]
    Redis {
        /// What was attempted.
        operation: &'static str,
        /// What went wrong.
        reason: String,
    },

    /// Redis failed repeatedly; calls are skipped until the circuit's cool-down passes.
    #[error(
        "redis is unavailable (circuit open after repeated failures); retrying in {retry_in:?}"
    )]
    CircuitOpen {
        /// How long until the next attempt.
        retry_in: Duration,
    },

    /// A key is empty, too long or holds characters that are not allowed.
    #[error("invalid cache key {key:?}: {reason}")]
    InvalidKey {
        /// The key (truncated to 64 characters).
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tag is empty, too long, reserved or holds characters that are not allowed.
    #[error("invalid cache tag {tag:?}: {reason}")]
    InvalidTag {
        /// The tag (truncated to 64 characters).
        tag: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An encoded value is larger than the configured limit.
    #[error(
        "value of {size} bytes exceeds the {limit}-byte limit (TIDEWELL_CACHE_MAX_VALUE_SIZE); cache something smaller"
    )]
    ValueTooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A TTL of zero or above the configured maximum.
    #[error(
        "ttl {ttl:?} is invalid: it must be above zero and at most {max:?} (TIDEWELL_CACHE_MAX_TTL)"
    )]
    InvalidTtl {
        /// The TTL asked for.
        ttl: Duration,
        /// The maximum.
        max: Duration,
    },

    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(String),

    /// The loader of `get_or_load` failed; nothing was cached.
    #[error("loader failed: {0}")]
    Loader(#[source] Arc<dyn std::error::Error + Send + Sync + 'static>),

    /// Configuration from the environment is invalid.
    #[error("{0}")]
    Config(String),
}

impl From<tidewell_core::Error> for Error {
    fn from(e: tidewell_core::Error) -> Self {
        Self::Config(e.to_string())
    }
}
