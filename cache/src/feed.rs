//! The invalidation feed between instances: Redis pub/sub messages `<origin> t <tag key>`,
//! `<origin> k <key>` and `<origin> *` (flush), where `<origin>` names the sending cache instance
//! so it can skip its own. The Redis store publishes them in the same pipeline as the change they
//! announce, so they arrive after it.
//!
//! One subscription per cache, kept by `tidewell_core::pubsub`'s loop. While it is live the local
//! tier is used; when it drops (connection killed, Redis restarted) the tier is flushed and
//! switched off, and when it is back the tier is flushed again (messages sent in between were
//! missed) and switched on.

use std::sync::Arc;
use std::time::Duration;

use tidewell_core::config::redact_url as redact;
use tidewell_core::pubsub::Listener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::local::Local;

/// Starts the listener task; it ends when `stop` fires.
pub(crate) fn start(
    url: &str,
    tls: &tidewell_core::tls::ClientTls,
    channel: String,
    origin: String,
    local: Arc<Local>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let client = tls.redis_client(url).map_err(|e| Error::Connect {
        url: redact(url),
        reason: e.to_string(),
    })?;
    let feed = Feed {
        channel: channel.clone(),
        origin,
        local,
    };
    tidewell_core::pubsub::spawn(client, channel, feed, stop);
    Ok(())
}

/// Applies the feed's messages to the local tier. The tier is off until the subscription is
/// live, and off again once the task ends (the cache stopped) and drops this.
struct Feed {
    channel: String,
    origin: String,
    local: Arc<Local>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.local.set_live(false);
    }
}

impl Listener for Feed {
    fn live(&mut self) {
        self.local.flush();
        self.local.set_live(true);
        tracing::debug!(channel = %self.channel, "cache invalidation feed live");
    }

    fn message(&mut self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        match text.split_once(' ') {
            Some((from, _)) if from == self.origin => {}
            Some((_, rest)) => match rest.split_once(' ') {
                Some(("t", tag)) => self.local.invalidate_tag(tag),
                Some(("k", key)) => self.local.remove(key),
                _ => self.local.flush(),
            },
            None => self.local.flush(),
        }
    }

    fn dropped(&mut self) {
        self.local.set_live(false);
        self.local.flush();
        tracing::warn!(
            channel = %self.channel,
            "cache invalidation feed dropped; local tier flushed and off until it is back"
        );
    }

    fn failed(&mut self, error: &str, retry_in: Duration) {
        tracing::debug!(
            error,
            ?retry_in,
            "cannot subscribe to the cache invalidation feed; retrying"
        );
    }
}
