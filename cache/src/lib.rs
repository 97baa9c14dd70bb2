//! # tidewell-cache
//!
//! A tag-based cache on Redis, with an in-memory backend that behaves the same.
//!
//! - **Typed values** through serde ([`Codec::Json`] by default), per [`Namespace`], with [`Key`]
//!   and [`Tag`] builders so call sites never concatenate strings.
//! - **Invalidation by tag in one write per tag**, whatever the number of keys: each entry records
//!   the versions of its tags; invalidating writes a fresh version; a read checks the entry and its
//!   tags in one round trip (one `MGET`). Nothing grows with the number of invalidations: tag
//!   versions expire after twice the longest entry TTL.
//! - **No stale value survives an invalidation that raced its load**: `get_or_load` reads the tag
//!   versions before the loader runs and refuses to store a value whose tags moved on.
//! - **Stampede protection**: one loader per key per process (single flight), optionally one per
//!   key across processes (a Redis lock with a token and expiry; waiters back off, then load
//!   themselves after a bound).
//! - **Local tier** (moka) of decoded values in front of Redis, invalidated across instances over
//!   Redis pub/sub and flushed whenever that feed drops.
//! - **Failure mode**: every Redis call is bounded by a timeout, a circuit breaker stops calling a
//!   dead Redis, fail-open serves through the loader, and deletes and invalidations that failed are
//!   replayed when Redis is back.
//! - **Stats** per namespace ([`Cache::stats`], [`CacheMetrics`] for Prometheus).
//!
//! Backends by URL: `redis://…`, `redis-cluster://host:port,host:port`, `memory://`.
//!
//! Redis key layout, for prefix `P` and namespace `N` (every key carries the hash tag `{P}`, so one
//! cache lives in one Redis Cluster slot and one command may touch an entry and the tag keys it names;
//! give unrelated domains their own prefix to spread them over the cluster):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{P}:e:N:<key>` | string | `tw1 <expiry, Unix ms> <n> <tag key> <version>…` (each tag's version at write time), a newline, then the encoded value; expires with the entry TTL |
//! | `{P}:t:<tag>` | string | the tag's current version (absent = never invalidated); expires after 2 × max TTL |
//! | `{P}:l:<entry key>` | string | the cross-process loader lock (token, 10 s expiry) |
//! | channel `{P}:invalidations` | pub/sub | `t <tag key>` / `k <entry key>` for local tiers |
//!
//! See [`Cache`] for an example.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod builder;
mod cache;
mod codec;
mod config;
mod error;
#[cfg(feature = "redis")]
mod feed;
mod key;
mod load;
mod local;
mod lock;
mod memory_store;
mod namespace;
#[cfg(feature = "redis")]
mod recent;
#[cfg(feature = "redis")]
mod redis_entry;
#[cfg(feature = "redis")]
mod redis_ops;
#[cfg(feature = "redis")]
mod redis_store;
mod refresh;
mod replay;
mod single_flight;
mod stats;
mod store;

pub use builder::CacheBuilder;
pub use cache::{Cache, Health};
pub use codec::Codec;
pub use config::CacheConfig;
pub use error::Error;
pub use key::{Key, Tag};
pub use namespace::Namespace;
pub use stats::{CacheMetrics, NamespaceStats, Stats};

/// Re-exported so that users register metrics with the same `prometheus` version.
pub use prometheus;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
