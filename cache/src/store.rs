//! The storage trait both backends implement, with Redis's semantics.
//!
//! Keys and tag keys arrive fully named (prefix, namespace). An entry holds its value and, for each
//! of its tags, the tag's version when the entry was written; it is valid only while every tag
//! still has that version. Invalidating a tag writes a fresh, never-repeated version to one key.

use std::time::Duration;

use bytes::Bytes;

use crate::Error;

/// futures-util's boxed, sendable future (one definition for the workspace).
pub(crate) use futures_util::future::BoxFuture;

/// The version of a tag that has never been invalidated (or whose version key expired).
pub(crate) const UNVERSIONED: &str = "0";

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A valid entry.
    Hit(Bytes),
    /// An entry whose tags were invalidated after it was written.
    Stale,
    /// No entry.
    Miss,
}

/// A read's result: what was found, the tag keys of a hit (for the local tier), and the current
/// versions of the tags the caller named (to write a fresh entry with after loading).
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) lookup: Lookup,
    /// On a hit, the entry's tag keys.
    pub(crate) entry_tags: Vec<String>,
    /// The current versions of the tags asked for, in order.
    pub(crate) versions: Vec<String>,
    /// On a hit, how long the entry has left to live.
    pub(crate) ttl_left: Option<Duration>,
}

pub(crate) trait Store: Send + Sync + 'static {
    /// Reads `key`, checks its tags, and returns the current versions of `tags` (one round trip).
    fn read<'a>(&'a self, key: &'a str, tags: &'a [String]) -> BoxFuture<'a, Result<Read, Error>>;

    /// Writes `value` under `key` with `tags`. With `versions`, the entry records those (taken
    /// before a load) and is never valid if any tag has moved on since: returns `false`. Without,
    /// it records the versions current when it is written. With `announce`, other instances'
    /// local tiers are told to drop the key (after the write, in the same round trip).
    fn write<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
        tags: &'a [String],
        versions: Option<&'a [String]>,
        announce: bool,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Deletes `key` (and tells other instances' local tiers); returns whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>>;

    /// Gives every tag a fresh version that lives `version_ttl` (and tells other instances'
    /// local tiers).
    fn invalidate<'a>(
        &'a self,
        tags: &'a [String],
        version_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Deletes every entry whose key starts with `prefix` (maintenance: a scan), then tells other
    /// instances' local tiers to flush.
    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// Takes the lock `key` with `token` for `ttl`; returns whether it was taken.
    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Releases the lock `key` if it still holds `token`.
    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// One round trip to the server.
    fn ping(&self) -> BoxFuture<'_, Result<(), Error>>;
}

/// A version no invalidation has used before.
pub(crate) fn fresh_version() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
