//! The invalidation feed between instances: Redis pub/sub messages `<origin> t <tag key>`,
//! `<origin> k <key>` and `<origin> *` (flush), where `<origin>` names the sending cache instance
//! so it can skip its own. The Redis store publishes them in the same pipeline as the change they
//! announce, so they arrive after it.
//!
//! A listener task keeps one subscription per cache. While it is live the local tier is used;
//! when it drops (connection killed, Redis restarted) the tier is flushed and switched off, and
//! when it is back the tier is flushed again (messages sent in between were missed) and switched on.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tidewell_core::Backoff;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::local::Local;
use crate::redis_store::redact;

/// Starts the listener task; it ends when `stop` fires.
pub(crate) fn start(
    url: &str,
    channel: String,
    origin: String,
    local: Arc<Local>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let client = redis::Client::open(url).map_err(|e| Error::Connect {
        url: redact(url),
        reason: e.to_string(),
    })?;
    tokio::spawn(async move {
        let backoff = Backoff::builder()
            .min(Duration::from_millis(50))
            .max(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let mut schedule = backoff.schedule();
        loop {
            let subscribed = async {
                let mut pubsub =
                    tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
                        .await
                        .map_err(|_| "no answer within 5s".to_owned())?
                        .map_err(|e| e.to_string())?;
                pubsub
                    .subscribe(&channel)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(pubsub)
            };
            let pubsub = tokio::select! {
                () = stop.cancelled() => return,
                r = subscribed => r,
            };
            match pubsub {
                Ok(pubsub) => {
                    schedule.reset();
                    local.flush();
                    local.set_live(true);
                    tracing::debug!(channel, "cache invalidation feed live");
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            () = stop.cancelled() => {
                                local.set_live(false);
                                return;
                            }
                            m = messages.next() => m,
                        };
                        let Some(msg) = msg else { break };
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match text.split_once(' ') {
                            Some((from, _)) if from == origin => {}
                            Some((_, rest)) => match rest.split_once(' ') {
                                Some(("t", tag)) => local.invalidate_tag(tag),
                                Some(("k", key)) => local.remove(key),
                                _ => local.flush(),
                            },
                            None => local.flush(),
                        }
                    }
                    local.set_live(false);
                    local.flush();
                    tracing::warn!(
                        channel,
                        "cache invalidation feed dropped; local tier flushed and off until it is back"
                    );
                }
                Err(error) => {
                    let delay = schedule.next_delay().unwrap_or(backoff.max());
                    tracing::debug!(%error, ?delay, "cannot subscribe to the cache invalidation feed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    });
    Ok(())
}
