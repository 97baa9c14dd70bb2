//! Rooms across nodes over Redis: a publish takes its offset from Redis (one counter and one
//! epoch per room) and goes out over pub/sub; every node with the room, the publisher included,
//! appends it to its local history at that offset and fans it out to its local members. So
//! offsets and epochs are the same on every node and a client can recover on any of them.
//!
//! Two layouts, chosen by the URL:
//! - **single Redis** (`redis://`, `rediss://`): one channel carries every room; every node
//!   keeps every room's history ([`single`]).
//! - **Redis Cluster** (`redis-cluster://`, `rediss-cluster://`): each room's counter, epoch,
//!   history and sharded channel share the room's slot; a node subscribes (`SSUBSCRIBE`) only to
//!   the rooms it has and reads a room's state from Redis when the room appears there
//!   ([`sharded`]).
//!
//! Events a node did not see are never replayed as if complete: a dropped subscription or an
//! offset gap forgets the history (single) or re-reads it from Redis (cluster), so recovery over
//! a window the node missed answers `recovered: false` or replays Redis's history.

mod sharded;
mod single;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tidewell_core::Backoff;
use tidewell_core::redis_conn::RedisConn;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::WsConfig;
use crate::rooms::{Job, Rooms};

/// Counters and epochs live this long after a room's last event.
const KEY_TTL_SECS: u64 = 24 * 3600;

/// How many publishes may wait for Redis.
const PUBLISH_QUEUE: usize = 10_000;
/// How long one publish is retried before it is dropped.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long connecting, subscribing or one Redis call may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a node's presence entries count after its last heartbeat.
const NODE_ALIVE_SECS: u64 = 30;
/// How often a node says it is alive.
const NODE_HEARTBEAT: Duration = Duration::from_secs(10);

/// A server's link to the other nodes: a bounded publish queue and the tasks that serve it.
pub(crate) struct Backplane {
    queue: mpsc::Sender<Job>,
    publisher: Mutex<Option<JoinHandle<()>>>,
    /// The cluster layout's subscriptions; `None` on a single Redis.
    sharded: Option<sharded::Shards>,
    /// For presence listings.
    conn: RedisConn,
    layout: Arc<Layout>,
    /// This server's id among the nodes (its presence entries and heartbeat).
    id: Arc<str>,
}

impl Backplane {
    /// Connects (failing fast if Redis is unreachable) and starts the publisher and the
    /// subscription feeding `rooms`; both end when `stop` fires (the publisher once it has sent
    /// what was queued).
    pub(crate) async fn start(
        url: &str,
        config: &WsConfig,
        prefix: &str,
        rooms: &Arc<Rooms>,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        let tls = &config.backplane_tls;
        let shown = tidewell_core::config::redact_url(url);
        let id: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
        let (conn, layout, sharded) = if tidewell_core::redis_conn::is_cluster_url(url) {
            // The publisher's connection first: once the shards' tasks run, the rooms are told
            // of the backplane, so nothing after them may fail.
            let conn = RedisConn::open(url, REDIS_TIMEOUT, tls)
                .await
                .map_err(|e| Error::Backplane(e.to_string()))?;
            let shards =
                sharded::Shards::start(url, tls, prefix, rooms, Arc::clone(&id), stop.clone())
                    .await?;
            let layout = Layout::Sharded {
                prefix: prefix.to_owned(),
                history_len: config.history_len,
                history_ttl_ms: u64::try_from(config.history_ttl.as_millis()).unwrap_or(u64::MAX),
            };
            (conn, layout, Some(shards))
        } else {
            let client = tls
                .redis_client(url)
                .map_err(|e| Error::Config(format!("backplane: {e}")))?;
            // One plain attempt first: the connection manager retries a refused connection
            // until the timeout, which would hide why (a certificate refused, say).
            tokio::time::timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| Error::Backplane(format!("Redis at {shown} did not answer in 5 s")))?
                .map_err(|e| {
                    Error::Backplane(
                        tidewell_core::tls::explain(&shown, &e)
                            .unwrap_or_else(|| format!("Redis at {shown}: {e}")),
                    )
                })?;
            let conn = RedisConn::open(url, REDIS_TIMEOUT, tls)
                .await
                .map_err(|e| Error::Backplane(e.to_string()))?;
            let channel = format!("{prefix}:ws");
            let (ready_tx, ready_rx) = oneshot::channel();
            let listener = single::RoomFeed {
                rooms: Arc::downgrade(rooms),
                ready: Some(ready_tx),
                me: Arc::clone(&id),
            };
            tidewell_core::pubsub::spawn(client, channel.clone(), listener, stop.clone());
            // The first subscription is in place before the server is used.
            if tokio::time::timeout(REDIS_TIMEOUT, ready_rx)
                .await
                .map_or(true, |r| r.is_err())
            {
                stop.cancel();
                return Err(Error::Backplane(
                    "the subscription did not start in 5 s".into(),
                ));
            }
            let layout = Layout::Single {
                prefix: prefix.to_owned(),
                channel,
            };
            (conn, layout, None)
        };
        // Bounded: while Redis is down, publishes beyond this many waiting are refused
        // (`Error::Full`) instead of growing the queue.
        let (queue, rx) = mpsc::channel(PUBLISH_QUEUE);
        let layout = Arc::new(layout);
        let publisher = tokio::spawn(publisher(
            conn.clone(),
            Arc::clone(&layout),
            Arc::clone(&id),
            rx,
            stop.clone(),
        ));
        tokio::spawn(heartbeat(conn.clone(), layout.node_key(&id), stop));
        rooms.send_presence_to(queue.clone());
        Ok(Self {
            queue,
            publisher: Mutex::new(Some(publisher)),
            sharded,
            conn,
            layout,
            id,
        })
    }

    /// Queues an event for `room` (JSON text); publishes keep their order.
    pub(crate) fn publish(&self, room: &str, json: String) -> Result<(), Error> {
        self.queue
            .try_send(Job::Event {
                room: room.to_owned(),
                json,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Full("backplane's publish queue"),
                mpsc::error::TrySendError::Closed(_) => Error::Stopped("backplane publisher"),
            })
    }

    /// Who is in `room` on every node: user ids and their connection counts, sorted. Entries
    /// of a node that has not said it is alive for [`NODE_ALIVE_SECS`] (it stopped without
    /// leaving) are left out and removed.
    pub(crate) async fn presence(&self, room: &str) -> Result<Vec<(String, usize)>, Error> {
        let failed = |e: redis::RedisError| Error::Backplane(format!("presence of {room}: {e}"));
        let mut conn = self.conn.clone();
        let hash = self.layout.presence_key(room);
        let fields: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let mut alive: HashMap<&str, bool> = HashMap::new();
        alive.insert(&self.id, true);
        let mut users: HashMap<String, usize> = HashMap::new();
        let mut dead = Vec::new();
        for (field, count) in &fields {
            let Some((node, user)) = field.split_once('|') else {
                continue;
            };
            let live = match alive.get(node) {
                Some(l) => *l,
                None => {
                    let l: bool = redis::cmd("EXISTS")
                        .arg(self.layout.node_key(node))
                        .query_async(&mut conn)
                        .await
                        .map_err(failed)?;
                    alive.insert(node, l);
                    l
                }
            };
            if !live {
                dead.push(field.clone());
            } else if *count > 0 {
                *users.entry(user.to_owned()).or_default() += usize::try_from(*count).unwrap_or(0);
            }
        }
        if !dead.is_empty() {
            let () = redis::cmd("HDEL")
                .arg(&hash)
                .arg(&dead)
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
        }
        let mut v: Vec<_> = users.into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// On a Redis Cluster: makes sure this node is subscribed to each of `rooms` and holds its
    /// state from Redis before anyone joins it (a no-op for rooms it has, and on single Redis).
    pub(crate) async fn warm(&self, rooms: &Weak<Rooms>, names: &[String]) {
        if let Some(s) = &self.sharded {
            for name in names {
                s.warm(rooms, name).await;
            }
        }
    }

    /// Waits, until `deadline`, for the publisher to send what was queued and end (its stop
    /// token has fired).
    pub(crate) async fn stopped(&self, deadline: Instant) {
        let handle = self
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, handle).await.is_err() {
                tracing::warn!("the backplane's publisher did not finish in time; events dropped");
            }
        }
    }
}

/// Where a room's keys and channel are, and the script that publishes to it.
enum Layout {
    /// One Redis: `<prefix>:o:<room>`, `<prefix>:e:<room>`, one channel for all rooms.
    Single { prefix: String, channel: String },
    /// A Redis Cluster: every key of a room in the room's slot ([`sharded::keys`]).
    Sharded {
        prefix: String,
        history_len: usize,
        history_ttl_ms: u64,
    },
}

impl Layout {
    /// The hash of `room`'s members on every node: `<node id>|<user>` to a connection count.
    fn presence_key(&self, room: &str) -> String {
        match self {
            Self::Single { prefix, .. } => format!("{prefix}:p:{room}"),
            Self::Sharded { prefix, .. } => sharded::keys(prefix, room).presence,
        }
    }

    /// The key that says node `id` is alive.
    fn node_key(&self, id: &str) -> String {
        match self {
            Self::Single { prefix, .. } | Self::Sharded { prefix, .. } => {
                format!("{prefix}:node:{{{id}}}")
            }
        }
    }

    /// Counts `user` in or out of `room`'s presence hash and tells the other nodes.
    fn presence<'a>(
        &self,
        scripts: &'a Scripts,
        me: &str,
        room: &str,
        user: &str,
        joined: bool,
    ) -> redis::ScriptInvocation<'a> {
        let (channel, command) = match self {
            Self::Single { channel, .. } => (channel.clone(), "PUBLISH"),
            Self::Sharded { prefix, .. } => (sharded::keys(prefix, room).channel, "SPUBLISH"),
        };
        let mut inv = scripts.presence.prepare_invoke();
        inv.key(self.presence_key(room))
            .key(channel)
            .arg(format!("{me}|{user}"))
            .arg(if joined { 1 } else { -1 })
            .arg(KEY_TTL_SECS)
            .arg(presence_message(me, room, user, joined))
            .arg(command);
        inv
    }

    fn invocation<'a>(
        &self,
        scripts: &'a Scripts,
        room: &str,
        epoch: &str,
        json: &str,
    ) -> redis::ScriptInvocation<'a> {
        match self {
            Self::Single { prefix, channel } => {
                let mut inv = scripts.single.prepare_invoke();
                inv.key(format!("{prefix}:o:{room}"))
                    .key(format!("{prefix}:e:{room}"))
                    .key(channel)
                    .arg(room)
                    .arg(epoch)
                    .arg(KEY_TTL_SECS)
                    .arg(json);
                inv
            }
            Self::Sharded {
                prefix,
                history_len,
                history_ttl_ms,
            } => {
                let keys = sharded::keys(prefix, room);
                let mut inv = scripts.sharded.prepare_invoke();
                inv.key(keys.counter)
                    .key(keys.meta)
                    .key(keys.history)
                    .key(keys.channel)
                    .arg(room)
                    .arg(epoch)
                    .arg(KEY_TTL_SECS)
                    .arg(json)
                    .arg(*history_len)
                    .arg(*history_ttl_ms);
                inv
            }
        }
    }
}

/// The publish scripts, loaded once.
struct Scripts {
    single: redis::Script,
    sharded: redis::Script,
    presence: redis::Script,
}

/// Counts a connection in or out of a room's presence hash, then tells the other nodes (the
/// channel and the publish command, `PUBLISH` or `SPUBLISH`, from the caller).
const PRESENCE: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call(ARGV[5], KEYS[2], ARGV[4])
return n
";

/// A presence message starts with this byte (an event's starts with its room name, which is
/// visible ASCII).
const PRESENCE_MARK: char = '\u{1}';

/// `\u{1}node \n room \n 1|0 \n user` (the user id last: it may hold any character).
fn presence_message(me: &str, room: &str, user: &str, joined: bool) -> String {
    format!("{PRESENCE_MARK}{me}\n{room}\n{}\n{user}", u8::from(joined))
}

/// What a backplane message carries.
enum Message<'a> {
    Event {
        room: &'a str,
        offset: u64,
        epoch: &'a str,
        json: &'a str,
    },
    Presence {
        node: &'a str,
        room: &'a str,
        user: &'a str,
        joined: bool,
    },
}

/// Hands one backplane message to `rooms`; presence from this node itself (`me`) was already
/// shown to its members.
fn deliver(rooms: &Rooms, payload: &[u8], me: &str, create: bool) {
    match parse(payload) {
        Some(Message::Event {
            room,
            offset,
            epoch,
            json,
        }) => rooms.deliver_remote(room, offset, epoch, json, create),
        Some(Message::Presence {
            node,
            room,
            user,
            joined,
        }) if node != me => rooms.presence_remote(room, user, joined),
        _ => {}
    }
}

/// Publishes on one Redis: the room's next offset, its epoch (created if missing), one message
/// on the shared channel.
const PUBLISH: &str = r"
local off = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[3])
else
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', KEYS[3], ARGV[1] .. '\n' .. off .. '\n' .. epoch .. '\n' .. ARGV[4])
return off
";

/// Parses a backplane message: `room \n offset \n epoch \n event JSON`, or a presence one
/// ([`presence_message`]).
fn parse(payload: &[u8]) -> Option<Message<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(rest) = text.strip_prefix(PRESENCE_MARK) {
        let mut parts = rest.splitn(4, '\n');
        let (node, room, joined, user) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        return Some(Message::Presence {
            node,
            room,
            user,
            joined: joined == "1",
        });
    }
    let mut parts = text.splitn(4, '\n');
    let (room, offset, epoch, json) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(Message::Event {
        room,
        offset: offset.parse().ok()?,
        epoch,
        json,
    })
}

/// Says every [`NODE_HEARTBEAT`] that this node is alive (its presence entries count), until
/// `stop` fires; then takes it back.
async fn heartbeat(mut conn: RedisConn, key: String, stop: CancellationToken) {
    loop {
        let r: Result<(), _> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("EX")
            .arg(NODE_ALIVE_SECS)
            .query_async(&mut conn)
            .await;
        if let Err(error) = r {
            tracing::debug!(%error, "backplane heartbeat failed; retrying");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(NODE_HEARTBEAT) => {}
        }
    }
    // ok to ignore: the key expires by itself
    let _: Result<(), _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
}

/// Sends queued publishes in order until `stop` fires, then what is still queued. Each event is
/// retried for at most [`PUBLISH_RETRY_FOR`], then dropped (logged): the queue behind it stays
/// bounded in time as well as in length. Once stopping, the first event that cannot be sent
/// drops the rest, so shutdown is not held up by a Redis that is down.
async fn publisher(
    mut conn: RedisConn,
    layout: Arc<Layout>,
    me: Arc<str>,
    mut rx: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let scripts = Scripts {
        single: redis::Script::new(PUBLISH),
        sharded: redis::Script::new(sharded::PUBLISH),
        presence: redis::Script::new(PRESENCE),
    };
    let backoff = Backoff::builder()
        .min(Duration::from_millis(50))
        .max(Duration::from_secs(2))
        .max_elapsed(PUBLISH_RETRY_FOR)
        .build()
        .unwrap_or_default();
    let mut stopping = false;
    loop {
        let next = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                m = rx.recv() => m,
                () = stop.cancelled() => {
                    rx.close();
                    stopping = true;
                    continue;
                }
            }
        };
        let Some(job) = next else { return };
        let room = match &job {
            Job::Event { room, .. } | Job::Presence { room, .. } => room.clone(),
        };
        let mut schedule = backoff.schedule();
        loop {
            let r: Result<i64, _> = match &job {
                Job::Event { room, json } => {
                    let epoch = uuid::Uuid::now_v7().simple().to_string();
                    layout
                        .invocation(&scripts, room, &epoch, json)
                        .invoke_async(&mut conn)
                        .await
                }
                Job::Presence { room, user, joined } => {
                    layout
                        .presence(&scripts, &me, room, user, *joined)
                        .invoke_async(&mut conn)
                        .await
                }
            };
            let Err(error) = r else { break };
            match schedule.next_delay() {
                Some(delay) if !stopping => {
                    tracing::warn!(%error, room, "backplane publish failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                _ if stopping => {
                    tracing::error!(%error, room, dropped = rx.len() + 1, "backplane publish failed while stopping; events dropped");
                    return;
                }
                _ => {
                    tracing::error!(%error, room, "backplane publish failed; event dropped");
                    break;
                }
            }
        }
    }
}
