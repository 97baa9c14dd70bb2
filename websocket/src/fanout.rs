//! Fan-out: a frame, encoded once, queued to many connections under a room's overflow policy,
//! and the counters of what happened to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tidewell_protocol::ServerFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::Overflow;
use crate::outbox::{Frame, Pushed};
use crate::registry::Conn;

/// What fan-out did, for [`WsStats`](crate::WsStats).
#[derive(Default)]
pub(crate) struct FanOutCounters {
    pub(crate) delivered: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
}

impl FanOutCounters {
    /// Queues `text` (a frame of `room`) to every connection of `to` under `policy`.
    pub(crate) fn fan_out<'a>(
        &self,
        to: impl IntoIterator<Item = &'a Arc<Conn>>,
        room: &str,
        text: &Utf8Bytes,
        policy: Overflow,
    ) {
        let room: Arc<str> = room.into();
        for conn in to {
            self.deliver(
                conn,
                Frame {
                    text: text.clone(),
                    room: Some(Arc::clone(&room)),
                },
                policy,
            );
        }
    }

    /// Queues one frame to one connection; a connection that overflows under the disconnect
    /// policy is closed as a slow consumer.
    pub(crate) fn deliver(&self, conn: &Conn, frame: Frame, policy: Overflow) {
        match conn.outbox.push(frame, policy) {
            Pushed::Queued => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Pushed::Shed(n) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.shed.fetch_add(n, Ordering::Relaxed);
            }
            Pushed::Overflowed => {
                self.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                conn.end(tidewell_protocol::close::SLOW_CONSUMER, "slow consumer");
                // Stop now: the writer may be blocked on a client that does not read.
                conn.stop.cancel();
            }
            Pushed::Closed => {}
        }
    }
}

/// `frame` as JSON text, shared by every connection it is queued to.
pub(crate) fn encode(frame: &ServerFrame) -> Option<Utf8Bytes> {
    match serde_json::to_string(frame) {
        Ok(text) => Some(Utf8Bytes::from(text)),
        Err(error) => {
            tracing::warn!(%error, "cannot encode a server frame");
            None
        }
    }
}
