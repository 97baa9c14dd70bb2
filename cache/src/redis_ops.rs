//! The Redis commands of the cache's store, apart from what it decides: `MGET` built and its
//! reply read, errors named, commands sent side by side when a cache's keys spread over a
//! Redis Cluster's slots (no pipeline may span two slots there), and a clear that scans every
//! master.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::Value;
use tidewell_core::redis_conn::RedisConn as Conn;

use crate::Error;
use crate::store::UNVERSIONED;

pub(crate) fn redis_error(operation: &'static str) -> impl FnOnce(redis::RedisError) -> Error {
    move |e| Error::Redis {
        operation,
        reason: e.to_string(),
    }
}

/// `MGET` of `keys`, its buffers sized once (`redis::cmd` grows them argument by argument).
pub(crate) fn mget<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> redis::Cmd {
    let (count, bytes) = keys.clone().fold((0, 0), |(n, b), k| (n + 1, b + k.len()));
    let mut cmd = redis::Cmd::with_capacity(count + 1, bytes + 4);
    cmd.arg("MGET");
    for k in keys {
        cmd.arg(k);
    }
    cmd
}

/// Tag versions as `MGET` returns them: an absent key is a tag never invalidated.
pub(crate) fn or_unversioned(current: Vec<Option<String>>) -> Vec<String> {
    current
        .into_iter()
        .map(|v| v.unwrap_or_else(|| UNVERSIONED.to_owned()))
        .collect()
}

pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn unexpected(operation: &'static str, what: &str) -> Error {
    Error::Redis {
        operation,
        reason: format!("unexpected reply to MGET: {what}"),
    }
}

/// One `MGET` reply: the entry (if any) and the current version of each fetched tag.
pub(crate) type MgetReply = (Option<Bytes>, Vec<Option<Vec<u8>>>);

pub(crate) fn split_reply(reply: Value) -> Result<MgetReply, Error> {
    let Value::Array(items) = reply else {
        return Err(unexpected("read", "not an array"));
    };
    let mut items = items.into_iter();
    let entry = match items.next() {
        Some(Value::BulkString(b)) => Some(Bytes::from(b)),
        Some(Value::Nil) => None,
        _ => return Err(unexpected("read", "no entry")),
    };
    let versions = items
        .map(|v| match v {
            Value::BulkString(b) => Ok(Some(b)),
            Value::Nil => Ok(None),
            _ => Err(unexpected("read", "a tag version is not a string")),
        })
        .collect::<Result<_, _>>()?;
    Ok((entry, versions))
}

/// Deletes every key starting with `prefix` on every master of the cluster: a SCAN per master
/// (asked by address), each batch unlinked (redis-rs splits a multi-key `UNLINK` by slot).
pub(crate) async fn clear_every_master(
    mut cluster: redis::cluster_async::ClusterConnection,
    prefix: &str,
) -> Result<(), Error> {
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut cluster)
        .await
        .map_err(redis_error("clear"))?;
    // `<id> <ip:port@cport[,hostname]> <flags> ...`: the masters that are up.
    let masters: Vec<(String, u16)> = nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let addr = fields.next()?;
            let flags = fields.next()?;
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            let (host, port) = addr.split(['@', ',']).next()?.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect();
    for (host, port) in masters {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port,
        });
        let mut cursor = "0".to_owned();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(&cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000);
            let reply = cluster
                .route_command(scan, route.clone())
                .await
                .map_err(redis_error("clear"))?;
            let (next, keys): (String, Vec<String>) =
                redis::from_redis_value(reply).map_err(|e| Error::Redis {
                    operation: "clear",
                    reason: e.to_string(),
                })?;
            if !keys.is_empty() {
                let () = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut cluster)
                    .await
                    .map_err(redis_error("clear"))?;
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Sends `pipe`'s commands: as one pipeline, or one by one side by side when sharded (the
/// commands of a cluster pipeline must share a slot).
pub(crate) async fn send_all(
    connection: &Conn,
    sharded: bool,
    pipe: redis::Pipeline,
    operation: &'static str,
) -> Result<(), Error> {
    if sharded {
        let sends = pipe.cmd_iter().map(|cmd| {
            let mut c = connection.clone();
            async move {
                cmd.query_async::<Value>(&mut c)
                    .await
                    .map(drop)
                    .map_err(redis_error(operation))
            }
        });
        futures_util::future::try_join_all(sends).await?;
        return Ok(());
    }
    let mut c = connection.clone();
    pipe.query_async::<()>(&mut c)
        .await
        .map_err(redis_error(operation))
}
