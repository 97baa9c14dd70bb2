//! The Redis store: one string per entry (a header naming the entry's tags and the version each
//! had when it was written, then the value), one string per tag version. A read is one `MGET` of
//! the entry and its tags' current versions; a write is a Lua script, so recording the versions
//! and storing the entry are one atomic step.
//!
//! Every key of one cache carries the hash tag `{<prefix>}`, so in Redis Cluster all of them live in
//! one slot and one `MGET` or script may touch the tag keys an entry names. Give unrelated domains
//! their own prefix to spread them over slots.
//!
//! Entry format (version 1): `tw1 <expires-at ms> <n> <tag key> <version> … \n<value>`. Keys, tags
//! and versions hold no whitespace (the builders refuse it), so spaces separate them. A key that
//! does not hold this format (an entry of the older hash layout, or a foreign value) reads as a
//! miss and is replaced by the next write.
//!
//! Why not a script for reads too: a Lua call costs Redis several times what a plain command does,
//! so with many callers the script, not the network, bounded the read rate (a third of raw `GET`s
//! at 32 tasks). `MGET` of the entry and its tags is one command, atomic like the script. The
//! tags to fetch along come from the caller (`get_or_load` names them) or from [`Hints`]; if the
//! entry turns out to record a tag that was not fetched, the read fetches again with it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::Error;
use crate::hints::Hints;
use crate::store::{BoxFuture, Lookup, Read, Store, UNVERSIONED};

/// KEYS[1] entry, KEYS[2..] tags; ARGV[1] ttl ms, ARGV[2] value, ARGV[3] expiry (Unix ms),
/// ARGV[4] 'given' or 'read', ARGV[5..] the given versions. Returns 1 if written, 0 if a given
/// version has moved on.
const WRITE: &str = r"
local parts = {'tw1', ARGV[3], tostring(#KEYS - 1)}
if #KEYS > 1 then
  local current = redis.call('MGET', unpack(KEYS, 2))
  for i = 2, #KEYS do
    local version = current[i - 1] or '0'
    if ARGV[4] == 'given' then
      if ARGV[i + 3] ~= version then return 0 end
    end
    parts[#parts + 1] = KEYS[i]
    parts[#parts + 1] = version
  end
end
redis.call('SET', KEYS[1], table.concat(parts, ' ') .. '\n' .. ARGV[2], 'PX', ARGV[1])
return 1
";

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

/// A single server (self-healing manager) or a Redis Cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
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

/// The nodes of a `redis-cluster://host:port,host:port` URL, as `redis://` URLs.
pub(crate) fn cluster_nodes(url: &str) -> Vec<String> {
    url.split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| format!("redis://{n}"))
        .collect()
}

pub(crate) struct RedisStore {
    connection: Conn,
    clear_batch: Script,
    write: Script,
    unlock: Script,
    hints: Hints,
}

impl RedisStore {
    pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<Self, Error> {
        let connect_error = |reason: String| Error::Connect {
            url: redact(url),
            reason,
        };
        if url.starts_with("redis-cluster://") {
            let nodes = cluster_nodes(url);
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .response_timeout(timeout)
                .connection_timeout(timeout.max(Duration::from_secs(1)))
                .build()
                .map_err(|e| connect_error(e.to_string()))?;
            let connection = tokio::time::timeout(
                timeout.max(Duration::from_secs(2)),
                client.get_async_connection(),
            )
            .await
            .map_err(|_| connect_error("no answer in time".into()))?
            .map_err(|e| connect_error(e.to_string()))?;
            return Ok(Self::with(Conn::Cluster(connection)));
        }
        let client = redis::Client::open(url).map_err(|e| connect_error(e.to_string()))?;
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
        .map_err(|e| connect_error(e.to_string()))?;
        Ok(Self::with(Conn::Single(connection)))
    }

    fn with(connection: Conn) -> Self {
        Self {
            connection,
            clear_batch: Script::new(CLEAR_BATCH),
            write: Script::new(WRITE),
            unlock: Script::new(UNLOCK),
            hints: Hints::new(),
        }
    }
}

pub(crate) use tidewell_core::config::redact_url as redact;

fn redis_error(operation: &'static str) -> impl FnOnce(redis::RedisError) -> Error {
    move |e| Error::Redis {
        operation,
        reason: e.to_string(),
    }
}

/// An entry as stored: the value and the tag versions it recorded.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    expires_at_ms: u64,
    tags: Vec<(&'a str, &'a str)>,
    value: Bytes,
}

/// Parses an entry (see the module docs); `None` if `raw` is not one.
fn parse_entry(raw: &Bytes) -> Option<Entry<'_>> {
    let newline = raw.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(raw.get(..newline)?).ok()?;
    let mut words = header.split(' ');
    if words.next()? != "tw1" {
        return None;
    }
    let expires_at_ms = words.next()?.parse().ok()?;
    let n: usize = words.next()?.parse().ok()?;
    // Bounded by the header's own length, so a corrupt count cannot ask for a huge allocation.
    let mut tags = Vec::with_capacity(n.min(header.len() / 4));
    for _ in 0..n {
        tags.push((words.next()?, words.next()?));
    }
    if words.next().is_some() {
        return None;
    }
    Some(Entry {
        expires_at_ms,
        tags,
        value: raw.slice(newline + 1..),
    })
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unexpected(what: &str) -> Error {
    Error::Redis {
        operation: "read",
        reason: format!("unexpected reply to MGET: {what}"),
    }
}

/// One `MGET` reply: the entry (if any) and the current version of each fetched tag.
type MgetReply = (Option<Bytes>, Vec<Option<Vec<u8>>>);

fn split_reply(reply: Value) -> Result<MgetReply, Error> {
    let Value::Array(items) = reply else {
        return Err(unexpected("not an array"));
    };
    let mut items = items.into_iter();
    let entry = match items.next() {
        Some(Value::BulkString(b)) => Some(Bytes::from(b)),
        Some(Value::Nil) => None,
        _ => return Err(unexpected("no entry")),
    };
    let versions = items
        .map(|v| match v {
            Value::BulkString(b) => Ok(Some(b)),
            Value::Nil => Ok(None),
            _ => Err(unexpected("a tag version is not a string")),
        })
        .collect::<Result<_, _>>()?;
    Ok((entry, versions))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Store for RedisStore {
    fn read<'a>(&'a self, key: &'a str, tags: &'a [String]) -> BoxFuture<'a, Result<Read, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            // A read that names no tags fetches the ones this key had when last seen.
            let hint = if tags.is_empty() {
                self.hints.get(key)
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
                let mut mget = redis::cmd("MGET");
                mget.arg(key).arg(&names);
                let reply: Value = mget
                    .query_async(&mut c)
                    .await
                    .map_err(redis_error("read"))?;
                let (raw, current) = split_reply(reply)?;
                if current.len() != names.len() {
                    return Err(unexpected("wrong number of values"));
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
                if tags.is_empty() {
                    let entry_tags: Vec<&str> = entry.tags.iter().map(|(t, _)| *t).collect();
                    self.hints.put(key, &entry_tags);
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
                return Ok(Read {
                    lookup: Lookup::Hit(entry.value.clone()),
                    entry_tags: entry.tags.iter().map(|(t, _)| (*t).to_owned()).collect(),
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
                current
                    .into_iter()
                    .map(|v| v.unwrap_or_else(|| UNVERSIONED.to_owned()))
                    .collect()
            };
            Ok(Read {
                lookup: Lookup::Stale,
                entry_tags: Vec::new(),
                versions,
                ttl_left: None,
            })
        })
    }

    fn write<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
        tags: &'a [String],
        versions: Option<&'a [String]>,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            let mut inv = self.write.key(key);
            for t in tags {
                inv.key(t);
            }
            let expires_at = unix_ms(SystemTime::now()).saturating_add(millis(ttl));
            inv.arg(millis(ttl)).arg(value).arg(expires_at);
            match versions {
                Some(v) => {
                    inv.arg("given");
                    for version in v {
                        inv.arg(version);
                    }
                }
                None => {
                    inv.arg("read");
                }
            }
            let written: i64 = inv
                .invoke_async(&mut c)
                .await
                .map_err(redis_error("write"))?;
            if written == 1 {
                self.hints.put(key, tags);
            }
            Ok(written == 1)
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
            Ok(n > 0)
        })
    }

    fn invalidate<'a>(
        &'a self,
        tags: &'a [String],
        version_ttl: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            let mut pipe = redis::pipe();
            for t in tags {
                pipe.cmd("SET")
                    .arg(t)
                    .arg(crate::store::fresh_version())
                    .arg("PX")
                    .arg(millis(version_ttl))
                    .ignore();
            }
            pipe.query_async::<()>(&mut c)
                .await
                .map_err(redis_error("invalidate"))
        })
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            // One script call per SCAN batch, routed (by KEYS[1]) to the node of the cache's slot.
            // Prefixes hold no glob characters (prefix and namespace names are restricted).
            let mut c = self.connection.clone();
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
                    return Ok(());
                }
            }
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

    /// An entry as the write script builds it.
    fn format_entry(expires_at_ms: u64, tags: &[(&str, &str)], value: &[u8]) -> Bytes {
        let mut header = format!("tw1 {expires_at_ms} {}", tags.len());
        for (t, v) in tags {
            header.push_str(&format!(" {t} {v}"));
        }
        header.push('\n');
        let mut out = header.into_bytes();
        out.extend_from_slice(value);
        Bytes::from(out)
    }

    #[test]
    fn entries_parse_back() {
        let raw = format_entry(
            1_700_000_000_000,
            &[("{tw}:t:user:7", "0"), ("{tw}:t:all", "0195f0a1b2c3")],
            b"j{\"a\":\"x y\\nz\"}",
        );
        let entry = parse_entry(&raw).unwrap();
        assert_eq!(entry.expires_at_ms, 1_700_000_000_000);
        assert_eq!(
            entry.tags,
            [("{tw}:t:user:7", "0"), ("{tw}:t:all", "0195f0a1b2c3")]
        );
        assert_eq!(&entry.value[..], b"j{\"a\":\"x y\\nz\"}");

        let untagged = format_entry(5, &[], b"");
        let entry = parse_entry(&untagged).unwrap();
        assert!(entry.tags.is_empty());
        assert!(entry.value.is_empty());
        // A value may hold newlines of its own: only the first one ends the header.
        let raw = format_entry(5, &[("t", "1")], b"a\nb\n");
        assert_eq!(&parse_entry(&raw).unwrap().value[..], b"a\nb\n");
    }

    #[test]
    fn anything_else_is_not_an_entry() {
        for raw in [
            &b""[..],
            b"plain value",
            b"tw1 5 1 t\nv",              // a tag without its version
            b"tw1 5 2 t 1\nv",            // fewer tags than counted
            b"tw1 5 0 t 1\nv",            // more words than counted
            b"tw2 5 0\nv",                // another format version
            b"tw1 x 0\nv",                // expiry not a number
            b"tw1 5 99999999999999999\n", // a count that would be a huge allocation
            b"tw1 5 0",                   // no end of header
            b"tw1 5 1 \xff 1\nv",         // not UTF-8
        ] {
            assert_eq!(parse_entry(&Bytes::copy_from_slice(raw)), None, "{raw:?}");
        }
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
