//! The Redis store: one hash per entry (`v` = value, `t:<tag key>` = tag version), one string per
//! tag version, and Lua scripts so a read and its tag check are one round trip.
//!
//! Every key of one cache carries the hash tag `{<prefix>}`, so in Redis Cluster all of them live in
//! one slot and the scripts may touch the tag keys an entry names. Give unrelated domains their own
//! prefix to spread them over slots.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::Error;
use crate::store::{BoxFuture, Lookup, Read, Store};

/// KEYS[1] entry, KEYS[2..] tags whose current versions to report.
/// Returns {state, value or false, pttl, n, entry tag keys (n)..., versions of KEYS[2..]...} with
/// state 1 = hit, 2 = miss, 3 = stale.
const READ: &str = r"
local h = redis.call('HGETALL', KEYS[1])
local state = 2
local value = false
local tags = {}
if #h > 0 then
  state = 1
  for i = 1, #h, 2 do
    local f = h[i]
    if f == 'v' then
      value = h[i + 1]
    else
      local tag = string.sub(f, 3)
      if (redis.call('GET', tag) or '0') ~= h[i + 1] then
        state = 3
      end
      tags[#tags + 1] = tag
    end
  end
end
if state ~= 1 then
  value = false
  tags = {}
end
local pttl = -1
if state == 1 then pttl = redis.call('PTTL', KEYS[1]) end
local out = {state, value, pttl, #tags}
for i = 1, #tags do out[#out + 1] = tags[i] end
for i = 2, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) or '0' end
return out
";

/// KEYS[1] entry, KEYS[2..] tags; ARGV[1] ttl ms, ARGV[2] value, ARGV[3] 'given' or 'read',
/// ARGV[4..] the given versions. Returns 1 if written, 0 if a given version has moved on.
const WRITE: &str = r"
local fields = {'v', ARGV[2]}
for i = 2, #KEYS do
  local current = redis.call('GET', KEYS[i]) or '0'
  local version = current
  if ARGV[3] == 'given' then
    version = ARGV[i + 2]
    if version ~= current then return 0 end
  end
  fields[#fields + 1] = 't:' .. KEYS[i]
  fields[#fields + 1] = version
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

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
    read: Script,
    write: Script,
    unlock: Script,
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
            read: Script::new(READ),
            write: Script::new(WRITE),
            unlock: Script::new(UNLOCK),
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

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn parse_read(reply: Value) -> Result<Read, Error> {
    let bad = || Error::Redis {
        operation: "read",
        reason: "unexpected reply from the read script".into(),
    };
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let mut items = items.into_iter();
    let (Some(Value::Int(state)), Some(value), Some(Value::Int(pttl)), Some(Value::Int(n))) =
        (items.next(), items.next(), items.next(), items.next())
    else {
        return Err(bad());
    };
    let n = usize::try_from(n).map_err(|_| bad())?;
    let mut rest: Vec<String> = items
        .map(|v| text(&v).ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    if rest.len() < n {
        return Err(bad());
    }
    let versions = rest.split_off(n);
    let lookup = match (state, value) {
        (1, Value::BulkString(b)) => Lookup::Hit(Bytes::from(b)),
        (2, _) => Lookup::Miss,
        (3, _) => Lookup::Stale,
        _ => return Err(bad()),
    };
    let ttl_left = u64::try_from(pttl).ok().map(Duration::from_millis);
    Ok(Read {
        lookup,
        entry_tags: rest,
        versions,
        ttl_left,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Store for RedisStore {
    fn read<'a>(&'a self, key: &'a str, tags: &'a [String]) -> BoxFuture<'a, Result<Read, Error>> {
        Box::pin(async move {
            let mut c = self.connection.clone();
            let mut inv = self.read.key(key);
            for t in tags {
                inv.key(t);
            }
            let reply: Value = inv
                .invoke_async(&mut c)
                .await
                .map_err(redis_error("read"))?;
            parse_read(reply)
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
            inv.arg(millis(ttl)).arg(value);
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
