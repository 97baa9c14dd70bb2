//! One Redis pub/sub subscription kept alive (feature `redis`): the loop that subscribes,
//! hands every message to a [`Listener`], notices a dropped connection, tells the listener
//! (messages published meanwhile are missed, so it must forget what it derived from them) and
//! subscribes again with [`Backoff`], until its stop token fires.
//!
//! The cache's invalidation feed and the WebSocket backplane both run on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), redis::RedisError> {
//! use tidewell_core::pubsub::{Listener, spawn};
//! use tokio_util::sync::CancellationToken;
//!
//! struct Print;
//! impl Listener for Print {
//!     fn message(&mut self, payload: &[u8]) {
//!         println!("{}", String::from_utf8_lossy(payload));
//!     }
//! }
//!
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let stop = CancellationToken::new();
//! let task = spawn(client, "news".into(), Print, stop.clone());
//! // ... later
//! stop.cancel();
//! let _ = task.await;
//! # Ok(()) }
//! ```

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::Backoff;

/// How long subscribing may take before it counts as failed and is retried.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a subscription's owner does with it. Called from the subscription's task, one call at a
/// time.
pub trait Listener: Send + 'static {
    /// The subscription is in place: the first time, and again after every [`dropped`](Self::dropped).
    fn live(&mut self) {}

    /// One message's payload, in the order Redis delivered them.
    fn message(&mut self, payload: &[u8]);

    /// The subscription dropped (connection lost, Redis restarted): messages published from now
    /// until the next [`live`](Self::live) are missed.
    fn dropped(&mut self) {}

    /// Subscribing failed; it is retried after `retry_in`.
    fn failed(&mut self, error: &str, retry_in: Duration) {
        tracing::debug!(error, ?retry_in, "cannot subscribe; retrying");
    }
}

/// Spawns the task that keeps `listener` subscribed to `channel` on the current tokio runtime.
/// It ends when `stop` fires (the listener is not told: its owner stopped it).
pub fn spawn(
    client: redis::Client,
    channel: String,
    mut listener: impl Listener,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let backoff = Backoff::builder()
            .min(Duration::from_millis(50))
            .max(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let mut schedule = backoff.schedule();
        loop {
            let subscribed = tokio::select! {
                () = stop.cancelled() => return,
                r = subscribe(&client, &channel) => r,
            };
            match subscribed {
                Ok(pubsub) => {
                    schedule.reset();
                    listener.live();
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            () = stop.cancelled() => return,
                            m = messages.next() => m,
                        };
                        let Some(msg) = msg else { break };
                        listener.message(msg.get_payload_bytes());
                    }
                    listener.dropped();
                }
                Err(error) => {
                    let delay = schedule.next_delay().unwrap_or(backoff.max());
                    listener.failed(&error, delay);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    })
}

async fn subscribe(client: &redis::Client, channel: &str) -> Result<redis::aio::PubSub, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, attempt).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {SUBSCRIBE_TIMEOUT:?}")),
    }
}
