//! Rooms across nodes over Redis: a publish takes its offset from Redis (one counter and one
//! epoch per room) and goes out on one pub/sub channel; every node, the publisher included,
//! appends it to its local history at that offset and fans it out to its local members. So
//! offsets and epochs are the same on every node and a client can recover on any of them.
//!
//! A node whose subscription drops forgets every room's history (and any offset gap it sees
//! does the same for that room), so recovery over a window the node did not see answers
//! `recovered: false`, never a silent gap. The subscription is `tidewell_core::pubsub`'s loop.

use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tidewell_core::Backoff;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::rooms::Rooms;

/// Counters and epochs live this long after a room's last event.
const KEY_TTL_SECS: u64 = 24 * 3600;

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

/// How many publishes may wait for Redis.
const PUBLISH_QUEUE: usize = 10_000;
/// How long one publish is retried before it is dropped.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(10);

/// A server's link to the other nodes: a bounded publish queue and the tasks that serve it.
pub(crate) struct Backplane {
    queue: mpsc::Sender<(String, String)>,
    publisher: Mutex<Option<JoinHandle<()>>>,
}

impl Backplane {
    /// Connects (failing fast if Redis is unreachable) and starts the publisher and the
    /// subscription feeding `rooms`; both end when `stop` fires (the publisher once it has sent
    /// what was queued).
    pub(crate) async fn start(
        url: &str,
        tls: &tidewell_core::tls::ClientTls,
        prefix: &str,
        rooms: Weak<Rooms>,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        let client = tls
            .redis_client(url)
            .map_err(|e| Error::Config(format!("backplane: {e}")))?;
        let shown = tidewell_core::config::redact_url(url);
        let no_answer = || Error::Backplane(format!("Redis at {shown} did not answer in 5 s"));
        let refused = |e: redis::RedisError| {
            Error::Backplane(
                tidewell_core::tls::explain(&shown, &e)
                    .unwrap_or_else(|| format!("Redis at {shown}: {e}")),
            )
        };
        // One plain attempt first: the connection manager retries a refused connection until
        // the timeout, which would hide why (a certificate refused, say).
        tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| no_answer())?
        .map_err(refused)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new(client.clone()),
        )
        .await
        .map_err(|_| no_answer())?
        .map_err(refused)?;
        let channel = format!("{prefix}:ws");
        let (ready_tx, ready_rx) = oneshot::channel();
        let listener = RoomFeed {
            rooms,
            ready: Some(ready_tx),
        };
        tidewell_core::pubsub::spawn(client, channel.clone(), listener, stop.clone());
        // The first subscription is in place before the server is used.
        if tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .map_or(true, |r| r.is_err())
        {
            stop.cancel();
            return Err(Error::Backplane(
                "the subscription did not start in 5 s".into(),
            ));
        }
        // Bounded: while Redis is down, publishes beyond this many waiting are refused
        // (`Error::Full`) instead of growing the queue.
        let (queue, rx) = mpsc::channel(PUBLISH_QUEUE);
        let publisher = tokio::spawn(publisher(conn, prefix.to_owned(), channel, rx, stop));
        Ok(Self {
            queue,
            publisher: Mutex::new(Some(publisher)),
        })
    }

    /// Queues an event for `room` (JSON text); publishes keep their order.
    pub(crate) fn publish(&self, room: &str, json: String) -> Result<(), Error> {
        self.queue
            .try_send((room.to_owned(), json))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Full("backplane's publish queue"),
                mpsc::error::TrySendError::Closed(_) => Error::Stopped("backplane publisher"),
            })
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

/// The subscription's listener: events into the rooms, histories forgotten when it drops.
struct RoomFeed {
    rooms: Weak<Rooms>,
    ready: Option<oneshot::Sender<()>>,
}

impl tidewell_core::pubsub::Listener for RoomFeed {
    fn live(&mut self) {
        if let Some(r) = self.ready.take() {
            // ok to ignore: `start` gave up waiting
            let _ = r.send(());
        }
    }

    fn message(&mut self, payload: &[u8]) {
        let Some(rooms) = self.rooms.upgrade() else {
            return;
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut parts = text.splitn(4, '\n');
        let (Some(room), Some(offset), Some(epoch), Some(json)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Ok(offset) = offset.parse::<u64>() else {
            return;
        };
        rooms.deliver_remote(room, offset, epoch, json);
    }

    fn dropped(&mut self) {
        tracing::warn!(
            "websocket backplane subscription dropped; histories forgotten until it is back"
        );
        if let Some(rooms) = self.rooms.upgrade() {
            rooms.forget_histories();
        }
    }
}

/// Sends queued publishes in order until `stop` fires, then what is still queued. Each event is
/// retried for at most [`PUBLISH_RETRY_FOR`], then dropped (logged): the queue behind it stays
/// bounded in time as well as in length. Once stopping, the first event that cannot be sent
/// drops the rest, so shutdown is not held up by a Redis that is down.
async fn publisher(
    mut conn: ConnectionManager,
    prefix: String,
    channel: String,
    mut rx: mpsc::Receiver<(String, String)>,
    stop: CancellationToken,
) {
    let script = redis::Script::new(PUBLISH);
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
        let Some((room, json)) = next else { return };
        let mut schedule = backoff.schedule();
        loop {
            let epoch = uuid::Uuid::now_v7().simple().to_string();
            let r: Result<u64, _> = script
                .key(format!("{prefix}:o:{room}"))
                .key(format!("{prefix}:e:{room}"))
                .key(&channel)
                .arg(&room)
                .arg(&epoch)
                .arg(KEY_TTL_SECS)
                .arg(&json)
                .invoke_async(&mut conn)
                .await;
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
