//! Rooms across nodes over Redis: a publish takes its offset from Redis (one counter and one
//! epoch per room) and goes out on one pub/sub channel; every node, the publisher included,
//! appends it to its local history at that offset and fans it out to its local members. So
//! offsets and epochs are the same on every node and a client can recover on any of them.
//!
//! A node whose subscription drops forgets every room's history (and any offset gap it sees
//! does the same for that room), so recovery over a window the node did not see answers
//! `recovered: false`, never a silent gap.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use tidewell_core::Backoff;
use tokio::sync::mpsc;

use crate::Error;
use crate::server::Inner;

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

pub(crate) struct Backplane {
    queue: mpsc::Sender<(String, String)>,
}

/// How many publishes may wait for Redis.
const PUBLISH_QUEUE: usize = 10_000;
/// How long one publish is retried before it is dropped.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(10);

impl Backplane {
    /// Connects (failing fast if Redis is unreachable) and starts the publisher and subscriber
    /// tasks for the server behind `inner`.
    pub(crate) async fn start(url: &str, prefix: &str, inner: Weak<Inner>) -> Result<Self, Error> {
        let client =
            redis::Client::open(url).map_err(|e| Error::Config(format!("backplane URL: {e}")))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new(client.clone()),
        )
        .await
        .map_err(|_| {
            Error::Backplane(format!(
                "Redis at {} did not answer in 5 s",
                tidewell_core::config::redact_url(url)
            ))
        })?
        .map_err(|e| {
            Error::Backplane(format!(
                "Redis at {}: {e}",
                tidewell_core::config::redact_url(url)
            ))
        })?;
        let channel = format!("{prefix}:ws");
        // Bounded: while Redis is down, publishes beyond this many waiting are refused
        // (`Error::Full`) instead of growing the queue.
        let (queue, rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(conn, prefix.to_owned(), channel.clone(), rx));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(subscriber(client, channel, inner, Some(ready_tx)));
        // The first subscription is in place before the server is used.
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .map_err(|_| Error::Backplane("the subscription did not start in 5 s".into()))?
            .map_err(|_| Error::Backplane("the subscription failed".into()))?;
        Ok(Self { queue })
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
}

async fn publisher(
    mut conn: ConnectionManager,
    prefix: String,
    channel: String,
    mut rx: mpsc::Receiver<(String, String)>,
) {
    let script = redis::Script::new(PUBLISH);
    // Each event is retried for at most PUBLISH_RETRY_FOR, then dropped (logged): the queue
    // behind it stays bounded in time as well as in length.
    let backoff = Backoff::builder()
        .min(Duration::from_millis(50))
        .max(Duration::from_secs(2))
        .max_elapsed(PUBLISH_RETRY_FOR)
        .build()
        .unwrap_or_default();
    while let Some((room, json)) = rx.recv().await {
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
            match r {
                Ok(_) => break,
                Err(error) => match schedule.next_delay() {
                    Some(delay) => {
                        tracing::warn!(%error, room, "backplane publish failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    _ => {
                        tracing::error!(%error, room, "backplane publish failed; event dropped");
                        break;
                    }
                },
            }
        }
    }
}

async fn subscriber(
    client: redis::Client,
    channel: String,
    inner: Weak<Inner>,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let backoff = Backoff::builder()
        .min(Duration::from_millis(50))
        .max(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut schedule = backoff.schedule();
    loop {
        let subscribed = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        match tokio::time::timeout(Duration::from_secs(5), subscribed).await {
            Ok(Ok(ps)) => {
                schedule.reset();
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                let mut messages = ps.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(inner) = inner.upgrade() else { return };
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let mut parts = text.splitn(4, '\n');
                    let (Some(room), Some(offset), Some(epoch), Some(json)) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let Ok(offset) = offset.parse::<u64>() else {
                        continue;
                    };
                    inner.deliver_remote(room, offset, epoch, json);
                }
                tracing::warn!(
                    "websocket backplane subscription dropped; histories forgotten until it is back"
                );
                match inner.upgrade() {
                    Some(i) => i.forget_histories(),
                    None => return,
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot subscribe to the backplane; retrying");
            }
            Err(_) => {
                tracing::debug!("backplane subscribe timed out; retrying");
            }
        }
        if inner.strong_count() == 0 {
            return;
        }
        let delay = schedule.next_delay().unwrap_or(backoff.max());
        tokio::time::sleep(delay).await;
    }
}
