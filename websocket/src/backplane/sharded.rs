//! The Redis Cluster layout. Each room's keys share the room's hash tag, so they live in one
//! slot with its sharded channel:
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>:ws:{<tag>}:<room>:o` | the last offset (`INCR`) |
//! | `<prefix>:ws:{<tag>}:<room>:m` | the epoch and the replication id of the master that set it |
//! | `<prefix>:ws:{<tag>}:<room>:h` | the last `history_len` events, for nodes that join later |
//! | `<prefix>:ws:{<tag>}:<room>:p` | presence: `<node id>\|<user>` to a connection count |
//! | channel `<prefix>:ws:{<tag>}:<room>` | `SPUBLISH`ed events |
//!
//! (`<tag>` is the room name with `{` and `}` replaced by `_`.) A node subscribes to a room's
//! channel while it has the room, and reads the room's state from Redis when the room appears
//! (warming, [`crate::rooms::warm`]). A publish on a master whose replication id differs from
//! the one stored with the epoch starts a new epoch: after a failover that lost acknowledged
//! writes, offsets could repeat, and a new epoch makes every client's recovery answer
//! `recovered: false` instead of replaying the wrong events.
//!
//! When the connection to a node drops (a master stopped, say), every room warms again: after
//! redis-rs has found the slot's new master, this node subscribes again and re-reads each
//! room's state, so members receive from Redis's history what the node missed.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tidewell_core::Backoff;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{KEY_TTL_SECS, REDIS_TIMEOUT};
use crate::Error;
use crate::rooms::Rooms;
use crate::rooms::warm::{Interest, Snapshot, Warm};

/// Publishes in a room's slot: a new epoch if there is none or the master changed, the next
/// offset, the event appended to the capped history, one sharded message.
pub(super) const PUBLISH: &str = r"
local info = redis.call('INFO', 'replication')
local replid = string.match(info, 'master_replid:(%w+)') or ''
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'replid')
local epoch = meta[1]
if (not epoch) or meta[2] ~= replid then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'replid', replid)
  redis.call('DEL', KEYS[3])
end
local off = redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[5]) > 0 then
  redis.call('RPUSH', KEYS[3], off .. '\n' .. string.format('%d', ms) .. '\n' .. ARGV[4])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
redis.call('SPUBLISH', KEYS[4], ARGV[1] .. '\n' .. off .. '\n' .. epoch .. '\n' .. ARGV[4])
return off
";

/// Reads a room's state (creating its epoch if it has none, so every node agrees on it):
/// epoch, offset, Redis's clock, history.
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  local info = redis.call('INFO', 'replication')
  local replid = string.match(info, 'master_replid:(%w+)') or ''
  epoch = ARGV[1]
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'replid', replid)
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
local off = redis.call('GET', KEYS[1]) or '0'
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {epoch, off, string.format('%d', ms), redis.call('LRANGE', KEYS[3], 0, -1)}
";

/// A room's keys and channel.
pub(super) struct Keys {
    pub(super) presence: String,
    pub(super) counter: String,
    pub(super) meta: String,
    pub(super) history: String,
    pub(super) channel: String,
}

/// The keys of `room`, all in the room's slot.
pub(super) fn keys(prefix: &str, room: &str) -> Keys {
    let tag: String = room
        .chars()
        .map(|c| if c == '{' || c == '}' { '_' } else { c })
        .collect();
    let channel = format!("{prefix}:ws:{{{tag}}}:{room}");
    Keys {
        presence: format!("{channel}:p"),
        counter: format!("{channel}:o"),
        meta: format!("{channel}:m"),
        history: format!("{channel}:h"),
        channel,
    }
}

/// This node's sharded subscriptions (their tasks end with the backplane's stop token).
pub(super) struct Shards;

impl Shards {
    /// Connects to the cluster with RESP3 pushes, and starts the task that feeds events into
    /// `rooms` and the one that keeps the subscriptions in step with them.
    pub(super) async fn start(
        url: &str,
        tls: &tidewell_core::tls::ClientTls,
        prefix: &str,
        rooms: &Arc<Rooms>,
        me: Arc<str>,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let conn =
            tidewell_core::redis_conn::open_cluster_with_pushes(url, REDIS_TIMEOUT, tls, push_tx)
                .await
                .map_err(|e| Error::Backplane(e.to_string()))?;
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        if !rooms.watch(interest_tx) {
            return Err(Error::BackplaneAttached);
        }
        tokio::spawn(feed(push_rx, Arc::downgrade(rooms), me, stop.clone()));
        tokio::spawn(subscriptions(
            conn,
            prefix.to_owned(),
            interest_rx,
            Arc::downgrade(rooms),
            stop,
        ));
        Ok(Self)
    }

    /// Makes sure `room` is on this node with Redis's state before anyone joins it: created
    /// warming if new (the subscriptions task subscribes and reads it), then waited for. If
    /// Redis does not answer in 5 s the caller joins anyway: the room answers recoveries with
    /// `recovered: false` and holds its events until the subscriptions task has caught up.
    pub(super) async fn warm(&self, rooms: &Weak<Rooms>, room: &str) {
        let Some(rooms) = rooms.upgrade() else {
            return;
        };
        if let Warm::Wait(mut done) = rooms.begin_warm(room) {
            drop(rooms);
            // ok to ignore: a room still warming after this answers `recovered: false`
            let _ = tokio::time::timeout(REDIS_TIMEOUT, done.wait_for(|d| *d)).await;
        }
    }
}

/// Reads `room`'s state from its slot.
async fn read_state(
    conn: &mut ClusterConnection,
    script: &redis::Script,
    prefix: &str,
    room: &str,
) -> Result<Snapshot, String> {
    let k = keys(prefix, room);
    let mut inv = script.prepare_invoke();
    inv.key(&k.counter)
        .key(&k.meta)
        .key(&k.history)
        .arg(uuid::Uuid::now_v7().simple().to_string())
        .arg(KEY_TTL_SECS);
    let call = inv.invoke_async::<(String, u64, u64, Vec<String>)>(conn);
    let (epoch, offset, now_ms, entries) = tokio::time::timeout(REDIS_TIMEOUT, call)
        .await
        .map_err(|_| format!("no answer in {REDIS_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let history = entries
        .into_iter()
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, '\n');
            let offset = parts.next()?.parse::<u64>().ok()?;
            let at_ms = parts.next()?.parse::<u64>().ok()?;
            let json = parts.next()?.to_owned();
            Some((
                offset,
                Duration::from_millis(now_ms.saturating_sub(at_ms)),
                json,
            ))
        })
        .collect();
    Ok(Snapshot {
        epoch,
        offset,
        history,
    })
}

/// Feeds sharded messages into the rooms; a dropped node connection warms every room again.
async fn feed(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    rooms: Weak<Rooms>,
    me: Arc<str>,
    stop: CancellationToken,
) {
    loop {
        let push = tokio::select! {
            () = stop.cancelled() => return,
            p = pushes.recv() => p,
        };
        let (Some(push), Some(rooms)) = (push, rooms.upgrade()) else {
            return;
        };
        match push.kind {
            PushKind::SMessage => {
                if let Some(Value::BulkString(payload)) = push.data.last() {
                    super::deliver(&rooms, payload, &me, false);
                }
            }
            PushKind::Disconnection => {
                let n = rooms.rewarm_all();
                tracing::warn!(
                    rooms = n,
                    "websocket backplane lost a Redis node; rooms re-read from Redis once it is back"
                );
                rooms.tell(Interest::Resync);
            }
            PushKind::SUnsubscribe => {
                // Also sent by a master that lost the slot (after a failover); the
                // subscriptions task tells it from an unsubscribe of its own.
                if let Some(Value::BulkString(channel)) = push.data.first() {
                    rooms.tell(Interest::Lost(
                        String::from_utf8_lossy(channel).into_owned(),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Keeps the node's sharded subscriptions in step with its rooms, in the order rooms are
/// created and forgotten: a new room is subscribed, then its state read and installed. After a
/// loss, subscribes to every room again and re-reads the state of every warming room, with
/// backoff until that works.
async fn subscriptions(
    mut conn: ClusterConnection,
    prefix: String,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    rooms: Weak<Rooms>,
    stop: CancellationToken,
) {
    let read = redis::Script::new(READ);
    let backoff = Backoff::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let mut schedule = backoff.schedule();
    // channel -> room
    let mut subscribed: HashMap<String, String> = HashMap::new();
    // channels this task unsubscribed from, whose confirmations are still to come back
    let mut unsubscribing: HashMap<String, usize> = HashMap::new();
    let mut resync: Option<Duration> = None;
    loop {
        let retry = async {
            match resync {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            () = stop.cancelled() => return,
            m = interest.recv() => match m {
                Some(m) => Some(m),
                None => return,
            },
            () = retry => None,
        };
        let Some(rooms) = rooms.upgrade() else { return };
        match next {
            Some(Interest::Want(room)) => {
                let generation = rooms.warm_generation();
                let channel = keys(&prefix, &room).channel;
                let ok = subscribe(&mut conn, &channel).await;
                subscribed.insert(channel, room.clone());
                let read = if ok {
                    read_state(&mut conn, &read, &prefix, &room).await
                } else {
                    Err("cannot subscribe".into())
                };
                match read {
                    Ok(snapshot) => rooms.finish_warm(&room, snapshot, generation),
                    Err(error) => {
                        tracing::warn!(%error, room, "cannot join a room's shard yet; retrying");
                        resync.get_or_insert(Duration::ZERO);
                    }
                }
            }
            Some(Interest::Drop(room)) => {
                let channel = keys(&prefix, &room).channel;
                subscribed.remove(&channel);
                *unsubscribing.entry(channel.clone()).or_default() += 1;
                let gone = tokio::time::timeout(REDIS_TIMEOUT, conn.sunsubscribe(&channel)).await;
                if !matches!(gone, Ok(Ok(()))) {
                    tracing::debug!(room, "sharded unsubscribe failed; its messages are ignored");
                }
            }
            Some(Interest::Lost(channel)) => {
                if let Some(n) = unsubscribing.get_mut(&channel) {
                    // the confirmation of an unsubscribe of ours
                    *n -= 1;
                    if *n == 0 {
                        unsubscribing.remove(&channel);
                    }
                } else if subscribed.contains_key(&channel) {
                    rooms.rewarm_all();
                    resync.get_or_insert(Duration::ZERO);
                }
            }
            Some(Interest::Resync) => {
                resync.get_or_insert(Duration::ZERO);
            }
            None => match catch_up(&mut conn, &read, &prefix, &subscribed, &rooms).await {
                Ok(()) => {
                    tracing::info!(
                        rooms = subscribed.len(),
                        "websocket backplane subscriptions restored"
                    );
                    resync = None;
                    schedule.reset();
                }
                Err(error) => {
                    let delay = schedule.next_delay().unwrap_or(backoff.max());
                    tracing::warn!(%error, ?delay, "websocket backplane cannot resubscribe yet; retrying");
                    resync = Some(delay);
                }
            },
        }
    }
}

/// Subscribes to every channel again, then reads the state of every warming room this task
/// has subscribed (the others are still queued as `Want`). Fails if another loss happened
/// meanwhile, so it runs again.
async fn catch_up(
    conn: &mut ClusterConnection,
    read: &redis::Script,
    prefix: &str,
    subscribed: &HashMap<String, String>,
    rooms: &Rooms,
) -> Result<(), String> {
    let generation = rooms.warm_generation();
    for channel in subscribed.keys() {
        if !subscribe(conn, channel).await {
            return Err(format!("cannot subscribe to {channel}"));
        }
    }
    for room in rooms.warming() {
        if !subscribed.contains_key(&keys(prefix, &room).channel) {
            continue;
        }
        let snapshot = read_state(conn, read, prefix, &room).await?;
        rooms.finish_warm(&room, snapshot, generation);
    }
    if rooms.warm_generation() == generation {
        Ok(())
    } else {
        Err("another Redis node connection was lost meanwhile".into())
    }
}

/// One `SSUBSCRIBE`, bounded by [`REDIS_TIMEOUT`]; whether it was confirmed.
async fn subscribe(conn: &mut ClusterConnection, channel: &str) -> bool {
    matches!(
        tokio::time::timeout(REDIS_TIMEOUT, conn.ssubscribe(channel)).await,
        Ok(Ok(()))
    )
}
