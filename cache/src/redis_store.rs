//! The Redis store: one string per entry (a header naming the entry's tags and the version each
//! had when it was written, then the value), one string per tag version. A read is one `MGET` of
//! the entry and its tags' current versions; a write is a `SET` of the entry with the versions it
//! records and an `MGET` of those tags in the same round trip (see below).
//!
//! Every key of one cache carries the hash tag `{<prefix>}`, so in Redis Cluster all of them live in
//! one slot and one `MGET` may touch the tag keys an entry names. Give unrelated domains
//! their own prefix to spread them over slots.
//!
//! The entry format is `redis_entry`'s; the connection (single server or cluster) is
//! `tidewell_core::redis_conn`'s.
//!
//! Why not scripts: a Lua call costs Redis several times what a plain command does, so with many
//! callers the script, not the network, bounded the rate (reads at a third of raw `GET`s with 32
//! tasks, writes at a quarter of raw `SET`s). A read is `MGET` of the entry and its tags, atomic
//! like a script; the tags to fetch come from the caller (`get_or_load` names them) or from what
//! this process last saw on the key, and if the entry records a tag that was not fetched, the
//! read fetches again with it. A write is `SET` of the entry with the versions it records, then
//! `MGET` of those tags in the same round trip: if a version is not the one recorded, the entry
//! is stale already (never served), and a plain `set` writes again with the versions it just
//! read; a write after a load (given versions) reports that its tags moved on. The versions a
//! plain `set` records first are the ones this process last saw ([`Recent`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::{Script, Value};

use crate::Error;
use crate::recent::{Recent, same_names};
use crate::redis_entry::{format_entry, parse_entry};
use crate::redis_ops::{
    clear_every_master, mget, millis, or_unversioned, redis_error, send_all, split_reply,
    unexpected, unix_ms,
};
use crate::store::{BoxFuture, Lookup, Read, Store, UNVERSIONED};
use tidewell_core::redis_conn::RedisConn as Conn;

/// KEYS[1] entry, KEYS[2..] tags; ARGV[1] ttl ms, ARGV[2] value, ARGV[3] expiry (Unix ms).
/// Writes the entry with the tags' current versions, atomically: what a plain `set` falls back to
/// when its tags keep being invalidated between its attempts.
const WRITE: &str = r"
local parts = {'tw1', ARGV[3], tostring(#KEYS - 1)}
if #KEYS > 1 then
  local current = redis.call('MGET', unpack(KEYS, 2))
  for i = 2, #KEYS do
    parts[#parts + 1] = KEYS[i]
    parts[#parts + 1] = current[i - 1] or '0'
  end
end
redis.call('SET', KEYS[1], table.concat(parts, ' ') .. '\n' .. ARGV[2], 'PX', ARGV[1])
return 1
";

/// A plain `set` writes again with the versions it read back; after this many attempts (its tags
/// are being invalidated that fast) it uses the atomic script.
const WRITE_ROUNDS: usize = 2;

/// A read fetches again when the entry names tags it did not fetch; after this many rounds (the
/// entry keeps being rewritten with other tags) it reports the entry as stale, which is safe.
const READ_ROUNDS: usize = 3;

const UNLOCK: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// KEYS[1] any key of the cache's slot (routes the script there); ARGV[1] cursor, ARGV[2] pattern.
/// Deletes one SCAN batch of matching keys; returns the next cursor ('0' when done).
const CLEAR_BATCH: &str = r"
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000)
if #r[2] > 0 then redis.call('UNLINK', unpack(r[2])) end
return r[1]
";

/// Where the store announces its changes to other instances' local tiers (see `feed`).
pub(crate) struct Announce {
    /// The pub/sub channel.
    pub(crate) channel: String,
    /// This cache instance's id, which starts every message (so it skips its own).
    pub(crate) origin: String,
}

impl Announce {
    /// Adds the message `<origin> <what...>` to `pipe`, after the change it announces.
    fn add(&self, pipe: &mut redis::Pipeline, what: &[&str]) {
        let mut message =
            Vec::with_capacity(self.origin.len() + 1 + what.iter().map(|w| w.len()).sum::<usize>());
        message.extend_from_slice(self.origin.as_bytes());
        message.push(b' ');
        for w in what {
            message.extend_from_slice(w.as_bytes());
        }
        pipe.cmd("PUBLISH").arg(&self.channel).arg(message).ignore();
    }

    /// Announces a change of `key` on its own (where it cannot ride in the change's pipeline).
    async fn send_key(&self, c: &mut Conn, key: &str) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        self.add(&mut pipe, &["k ", key]);
        pipe.query_async::<()>(c)
            .await
            .map_err(redis_error("write"))
    }
}

pub(crate) struct RedisStore {
    connection: Conn,
    announce: Option<Announce>,
    clear_batch: Script,
    write: Script,
    unlock: Script,
    /// Entry key -> the tag keys it had when last read or written here.
    entry_tags: Recent<Arc<[String]>>,
    /// Tag key -> the version it had when last seen here.
    versions: Recent<Arc<str>>,
    /// Whether reads report a hit's tags (only a local tier needs them).
    report_entry_tags: bool,
    /// Keys spread over a Redis Cluster's slots (`CacheConfig::sharded`): no pipeline or script
    /// may span two keys, so writes send their commands side by side and clears scan every
    /// master.
    sharded: bool,
}

impl RedisStore {
    pub(crate) async fn connect(
        url: &str,
        timeout: Duration,
        tls: &tidewell_core::tls::ClientTls,
        announce: Option<Announce>,
    ) -> Result<Self, Error> {
        let connection = Conn::open(url, timeout, tls).await.map_err(|e| match e {
            tidewell_core::Error::RedisConnect { url, reason } => Error::Connect { url, reason },
            other => Error::from(other),
        })?;
        let sharded = url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://");
        Ok(Self::with(connection, announce, sharded))
    }

    fn with(connection: Conn, announce: Option<Announce>, sharded: bool) -> Self {
        Self {
            connection,
            announce,
            clear_batch: Script::new(CLEAR_BATCH),
            write: Script::new(WRITE),
            unlock: Script::new(UNLOCK),
            entry_tags: Recent::new(),
            versions: Recent::new(),
            report_entry_tags: true,
            sharded,
        }
    }
}

impl RedisStore {
    /// Writes the entry with its tags' current versions in one script call.
    async fn write_atomic(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        expires_at: u64,
        tags: &[String],
    ) -> Result<(), Error> {
        let mut c = self.connection.clone();
        let mut inv = self.write.key(key);
        for t in tags {
            inv.key(t);
        }
        inv.arg(ttl_ms).arg(value).arg(expires_at);
        inv.invoke_async::<i64>(&mut c)
            .await
            .map(drop)
            .map_err(redis_error("write"))
    }
}

impl RedisStore {
    /// Sends `set` (the entry) and reads the current versions of `tags` (and announces `key` to
    /// the other local tiers): in one pipeline on one slot, side by side when sharded.
    async fn set_and_read_versions(
        &self,
        set: redis::Cmd,
        tags: &[String],
        announce: Option<&Announce>,
        key: &str,
    ) -> Result<Vec<String>, Error> {
        let mut c = self.connection.clone();
        if self.sharded {
            let mut c2 = self.connection.clone();
            let write = async {
                let () = set
                    .query_async(&mut c)
                    .await
                    .map_err(redis_error("write"))?;
                if let Some(a) = announce {
                    a.send_key(&mut c, key).await?;
                }
                Ok::<_, Error>(())
            };
            let read = async {
                if tags.is_empty() {
                    return Ok(Vec::new());
                }
                let current: Vec<Option<String>> = mget(tags.iter().map(String::as_str))
                    .query_async(&mut c2)
                    .await
                    .map_err(redis_error("write"))?;
                Ok(or_unversioned(current))
            };
            let ((), current) = futures_util::try_join!(write, read)?;
            return Ok(current);
        }
        let mut pipe = redis::Pipeline::with_capacity(3);
        pipe.add_command(set).ignore();
        if !tags.is_empty() {
            pipe.add_command(mget(tags.iter().map(String::as_str)));
        }
        if let Some(a) = announce {
            a.add(&mut pipe, &["k ", key]);
        }
        if tags.is_empty() {
            let () = pipe
                .query_async(&mut c)
                .await
                .map_err(redis_error("write"))?;
            Ok(Vec::new())
        } else {
            let (current,): (Vec<Option<String>>,) = pipe
                .query_async(&mut c)
                .await
                .map_err(redis_error("write"))?;
            Ok(or_unversioned(current))
        }
    }

    /// Whether reads report a hit's tags (default on; a cache without a local tier turns it off).
    pub(crate) fn reporting_entry_tags(mut self, report: bool) -> Self {
        self.report_entry_tags = report;
        self
    }
}

impl Store for RedisStore {
    // Long because each round's closures share the names fetched and the reply; split, every part
    // would take them all.
    fn read<'a>(&'a self, key: &'a str, tags: &'a [String]) -> BoxFuture<'a, Result<Read, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            // A read that names no tags fetches the ones this key had when last seen.
            let hint = if tags.is_empty() {
                self.entry_tags.get(key)
            } else {
                None
            };
            let mut learned: Vec<String> = Vec::new();
            for _ in 0..READ_ROUNDS {
                let names: Vec<&str> = tags
                    .iter()
                    .chain(hint.iter().flat_map(|h| h.iter()))
                    .chain(&learned)
                    .map(String::as_str)
                    .collect();
                let reply: Value = mget(std::iter::once(key).chain(names.iter().copied()))
                    .query_async(&mut c)
                    .await
                    .map_err(redis_error("read"))?;
                let (raw, current) = split_reply(reply)?;
                if current.len() != names.len() {
                    return Err(unexpected("read", "wrong number of values"));
                }
                let version_of = |tag: &str| {
                    let i = names.iter().position(|n| *n == tag)?;
                    Some(current.get(i)?.as_deref().unwrap_or(UNVERSIONED.as_bytes()))
                };
                let asked = || {
                    tags.iter()
                        .map(|t| {
                            String::from_utf8_lossy(version_of(t).unwrap_or_default()).into_owned()
                        })
                        .collect()
                };
                let entry = match raw.as_ref().map(|r| (r, parse_entry(r))) {
                    None => None,
                    Some((_, Some(entry))) => Some(entry),
                    Some((r, None)) => {
                        tracing::debug!(key, bytes = r.len(), "not a cache entry; read as a miss");
                        None
                    }
                };
                let Some(entry) = entry else {
                    return Ok(Read {
                        lookup: Lookup::Miss,
                        entry_tags: Vec::new(),
                        versions: asked(),
                        ttl_left: None,
                    });
                };
                let mut unfetched = Vec::new();
                let mut stale = false;
                for (tag, recorded) in &entry.tags {
                    match version_of(tag) {
                        Some(now) => stale |= now != recorded.as_bytes(),
                        None => unfetched.push((*tag).to_owned()),
                    }
                }
                let hinted = |known: &[String]| {
                    known.len() == entry.tags.len()
                        && known.iter().zip(&entry.tags).all(|(a, (b, _))| a == b)
                };
                if tags.is_empty() && !hint.as_deref().is_some_and(hinted) {
                    self.entry_tags.put(
                        key,
                        |known| hinted(known),
                        || entry.tags.iter().map(|(t, _)| (*t).to_owned()).collect(),
                    );
                }
                if !stale && !unfetched.is_empty() {
                    learned.extend(unfetched);
                    continue;
                }
                if stale {
                    return Ok(Read {
                        lookup: Lookup::Stale,
                        entry_tags: Vec::new(),
                        versions: asked(),
                        ttl_left: None,
                    });
                }
                let left = entry
                    .expires_at_ms
                    .saturating_sub(unix_ms(SystemTime::now()));
                let entry_tags = if self.report_entry_tags {
                    entry.tags.iter().map(|(t, _)| (*t).to_owned()).collect()
                } else {
                    Vec::new()
                };
                return Ok(Read {
                    lookup: Lookup::Hit(entry.value.clone()),
                    entry_tags,
                    versions: asked(),
                    ttl_left: Some(Duration::from_millis(left)),
                });
            }
            // The entry kept naming tags the last fetch did not have: it is being rewritten right
            // now. Reporting it stale is safe; the versions asked for still come from Redis.
            let versions = if tags.is_empty() {
                Vec::new()
            } else {
                let current: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(tags)
                    .query_async(&mut c)
                    .await
                    .map_err(redis_error("read"))?;
                or_unversioned(current)
            };
            Ok(Read {
                lookup: Lookup::Stale,
                entry_tags: Vec::new(),
                versions,
                ttl_left: None,
            })
        })
    }

    // Long because the optimistic rounds and the atomic fallback share the versions seen and the
    // announcement; together they read as one retry loop.
    fn write<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
        tags: &'a [String],
        versions: Option<&'a [String]>,
        announce: bool,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            let ttl_ms = millis(ttl);
            let expires_at = unix_ms(SystemTime::now()).saturating_add(ttl_ms);
            let announce = self.announce.as_ref().filter(|_| announce);
            let remember_tags = || {
                self.entry_tags
                    .put(key, |known| same_names(known, tags), || tags.into());
            };
            // The versions to record: the given ones (read before a load), else the last seen.
            let mut seen: Vec<Arc<str>> = match versions {
                Some(_) => Vec::new(),
                None => tags
                    .iter()
                    .map(|t| {
                        self.versions
                            .get(t)
                            .unwrap_or_else(|| Arc::from(UNVERSIONED))
                    })
                    .collect(),
            };
            for _ in 0..WRITE_ROUNDS {
                let recorded: Vec<&str> = match versions {
                    Some(given) => given.iter().map(String::as_str).collect(),
                    None => seen.iter().map(|v| &**v).collect(),
                };
                let entry = format_entry(expires_at, tags, &recorded, value);
                let mut set = redis::Cmd::with_capacity(5, key.len() + entry.len() + 32);
                set.arg("SET").arg(key).arg(entry).arg("PX").arg(ttl_ms);
                let current = self.set_and_read_versions(set, tags, announce, key).await?;
                if current.len() != tags.len() {
                    return Err(unexpected("write", "wrong number of values"));
                }
                for (t, v) in tags.iter().zip(&current) {
                    self.versions
                        .put(t, |known| **known == **v, || Arc::from(v.as_str()));
                }
                if recorded.iter().zip(&current).all(|(r, c)| *r == c.as_str()) {
                    remember_tags();
                    return Ok(true);
                }
                if versions.is_some() {
                    // A tag moved on during the load: the entry just written is stale already.
                    return Ok(false);
                }
                seen = current.iter().map(|v| Arc::from(v.as_str())).collect();
            }
            if self.sharded {
                // No script spans a cluster's slots: the entry last written records versions
                // that moved on, so it is never served (a miss until the next write).
                return Ok(false);
            }
            self.write_atomic(key, value, ttl_ms, expires_at, tags)
                .await?;
            if let Some(a) = announce {
                a.send_key(&mut c, key).await?;
            }
            remember_tags();
            Ok(true)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            let n: i64 = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut c)
                .await
                .map_err(redis_error("delete"))?;
            if let Some(a) = &self.announce {
                let mut pipe = redis::pipe();
                a.add(&mut pipe, &["k ", key]);
                send_all(&self.connection, self.sharded, pipe, "delete").await?;
            }
            Ok(n > 0)
        })
    }

    fn invalidate<'a>(
        &'a self,
        tags: &'a [String],
        version_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            let fresh: Vec<String> = tags.iter().map(|_| crate::store::fresh_version()).collect();
            for (t, v) in tags.iter().zip(&fresh) {
                pipe.cmd("SET")
                    .arg(t)
                    .arg(v)
                    .arg("PX")
                    .arg(millis(version_ttl))
                    .ignore();
            }
            if let Some(a) = &self.announce {
                for t in tags {
                    a.add(&mut pipe, &["t ", t]);
                }
            }
            send_all(&self.connection, self.sharded, pipe, "invalidate").await?;
            for (t, v) in tags.iter().zip(&fresh) {
                self.versions.put(t, |_| false, || Arc::from(v.as_str()));
            }
            Ok(())
        })
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            if let Conn::Cluster(cluster) = &self.connection
                && self.sharded
            {
                clear_every_master(cluster.clone(), prefix).await?;
                if let Some(a) = &self.announce {
                    let mut pipe = redis::pipe();
                    a.add(&mut pipe, &["*"]);
                    send_all(&self.connection, self.sharded, pipe, "clear").await?;
                }
                return Ok(());
            }
            // One script call per SCAN batch, routed (by KEYS[1]) to the node of the cache's slot.
            // Prefixes hold no glob characters (prefix and namespace names are restricted).
            let mut cursor = "0".to_owned();
            loop {
                cursor = self
                    .clear_batch
                    .key(prefix)
                    .arg(&cursor)
                    .arg(format!("{prefix}*"))
                    .invoke_async(&mut c)
                    .await
                    .map_err(redis_error("clear"))?;
                if cursor == "0" {
                    break;
                }
            }
            if let Some(a) = &self.announce {
                let mut pipe = redis::pipe();
                a.add(&mut pipe, &["*"]);
                pipe.query_async::<()>(&mut c)
                    .await
                    .map_err(redis_error("clear"))?;
            }
            Ok(())
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut c)
                .await
                .map_err(redis_error("lock"))?;
            Ok(set.is_some())
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            self.unlock
                .key(key)
                .arg(token)
                .invoke_async::<i64>(&mut c)
                .await
                .map(drop)
                .map_err(redis_error("unlock"))
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .map(drop)
                .map_err(redis_error("ping"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script a plain `set` falls back to records the current versions, like the fast path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_atomic_write_records_current_versions() {
        let redis = tidewell_testkit::TestRedis::connect().await;
        let store = RedisStore::connect(
            redis.url(),
            Duration::from_secs(2),
            &Default::default(),
            None,
        )
        .await
        .unwrap();
        let p = redis.prefix();
        let (key, tags) = (
            format!("{{{p}}}:e:n:k"),
            vec![format!("{{{p}}}:t:a"), format!("{{{p}}}:t:b")],
        );
        store
            .invalidate(std::slice::from_ref(&tags[1]), Duration::from_secs(60))
            .await
            .unwrap();
        let expires_at = unix_ms(SystemTime::now()) + 60_000;
        store
            .write_atomic(&key, b"jvalue", 60_000, expires_at, &tags)
            .await
            .unwrap();
        let read = store.read(&key, &tags).await.unwrap();
        assert_eq!(
            read.lookup,
            Lookup::Hit(bytes::Bytes::from_static(b"jvalue"))
        );
        assert_eq!(read.versions[0], UNVERSIONED);
        assert_ne!(read.versions[1], UNVERSIONED);
        assert!(read.ttl_left.unwrap() > Duration::from_secs(50));
        store
            .invalidate(std::slice::from_ref(&tags[0]), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.read(&key, &[]).await.unwrap().lookup, Lookup::Stale);
        let mut c = redis.connection();
        let () = redis::cmd("DEL")
            .arg(&key)
            .arg(&tags)
            .query_async(&mut c)
            .await
            .unwrap();
    }

    #[test]
    fn mget_replies_split_or_fail_clearly() {
        let reply = Value::Array(vec![
            Value::BulkString(b"e".to_vec()),
            Value::Nil,
            Value::BulkString(b"v".to_vec()),
        ]);
        let (entry, versions) = split_reply(reply).unwrap();
        assert_eq!(entry.as_deref(), Some(&b"e"[..]));
        assert_eq!(versions, [None, Some(b"v".to_vec())]);
        assert!(split_reply(Value::Int(1)).is_err());
        assert!(split_reply(Value::Array(vec![])).is_err());
        assert!(split_reply(Value::Array(vec![Value::Nil, Value::Int(3)])).is_err());
    }
}
