//! The single-Redis layout: one pub/sub channel for every room, kept subscribed by
//! `tidewell_core::pubsub`'s loop; every node keeps every room's history.

use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use crate::rooms::Rooms;

/// The subscription's listener: events into the rooms, histories forgotten when it drops.
pub(super) struct RoomFeed {
    pub(super) rooms: Weak<Rooms>,
    pub(super) ready: Option<oneshot::Sender<()>>,
    /// This server's id: its own presence messages are skipped.
    pub(super) me: Arc<str>,
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
        super::deliver(&rooms, payload, &self.me, true);
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
