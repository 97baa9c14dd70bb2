//! A connection's outbound queue, bounded in bytes, with a policy per room when it is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::Overflow;

/// A frame ready to send; its bytes are shared by every connection it goes to.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) text: Utf8Bytes,
    /// The room, for coalescing.
    pub(crate) room: Option<std::sync::Arc<str>>,
}

/// What happened to a push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued after dropping or replacing this many older frames.
    Shed(u64),
    /// The queue overflowed under the disconnect policy: the connection must close.
    Overflowed,
    /// The connection is closing; nothing was queued.
    Closed,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    bytes: usize,
    closed: bool,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    limit: usize,
    pub(crate) notify: Notify,
    pub(crate) dropped: AtomicU64,
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            limit,
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `frame`; a frame that is never allowed to be shed (answers, errors) uses
    /// [`Overflow::DropOldest`] too, but sheds only room events.
    pub(crate) fn push(&self, frame: Frame, policy: Overflow) -> Pushed {
        let size = frame.text.len();
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.closed {
            return Pushed::Closed;
        }
        let mut shed = 0u64;
        if st.bytes + size > self.limit {
            match policy {
                Overflow::Disconnect => {
                    st.closed = true;
                    drop(st);
                    self.notify.notify_one();
                    return Pushed::Overflowed;
                }
                Overflow::CoalesceByRoom => {
                    if let Some(room) = &frame.room
                        && let Some(pos) = st
                            .frames
                            .iter()
                            .position(|f| f.room.as_deref() == Some(&**room))
                        && let Some(old) = st.frames.remove(pos)
                    {
                        st.bytes -= old.text.len();
                        shed += 1;
                    }
                }
                Overflow::DropOldest => {}
            }
            while st.bytes + size > self.limit {
                // Only room events are shed; answers to the client's requests stay.
                let Some(pos) = st.frames.iter().position(|f| f.room.is_some()) else {
                    break;
                };
                if let Some(old) = st.frames.remove(pos) {
                    st.bytes -= old.text.len();
                    shed += 1;
                }
            }
        }
        st.bytes += size;
        st.frames.push_back(frame);
        drop(st);
        self.notify.notify_one();
        if shed > 0 {
            self.dropped.fetch_add(shed, Ordering::Relaxed);
            Pushed::Shed(shed)
        } else {
            Pushed::Queued
        }
    }

    /// Takes everything queued; `None` once closed and empty.
    pub(crate) fn drain(&self, into: &mut Vec<Frame>) -> bool {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        into.extend(st.frames.drain(..));
        st.bytes = 0;
        !st.closed
    }

    pub(crate) fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.notify.notify_one();
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(room: Option<&str>, len: usize) -> Frame {
        Frame {
            text: Utf8Bytes::from("x".repeat(len)),
            room: room.map(Into::into),
        }
    }

    #[test]
    fn drop_oldest_keeps_answers_and_the_byte_bound() {
        let o = Outbox::new(100);
        assert_eq!(
            o.push(frame(None, 30), Overflow::DropOldest),
            Pushed::Queued
        );
        assert_eq!(
            o.push(frame(Some("a"), 40), Overflow::DropOldest),
            Pushed::Queued
        );
        assert_eq!(
            o.push(frame(Some("a"), 40), Overflow::DropOldest),
            Pushed::Shed(1)
        );
        assert!(o.queued_bytes() <= 100);
        let mut out = Vec::new();
        o.drain(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].room.is_none(), "the answer stayed");
        assert_eq!(o.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn coalesce_replaces_the_rooms_older_frame() {
        let o = Outbox::new(100);
        o.push(frame(Some("price:a"), 40), Overflow::CoalesceByRoom);
        o.push(frame(Some("price:b"), 40), Overflow::CoalesceByRoom);
        assert_eq!(
            o.push(frame(Some("price:a"), 40), Overflow::CoalesceByRoom),
            Pushed::Shed(1)
        );
        let mut out = Vec::new();
        o.drain(&mut out);
        let rooms: Vec<_> = out
            .iter()
            .map(|f| f.room.as_deref().unwrap().to_owned())
            .collect();
        assert_eq!(rooms, ["price:b", "price:a"]);
    }

    #[test]
    fn disconnect_policy_closes() {
        let o = Outbox::new(50);
        o.push(frame(Some("a"), 40), Overflow::Disconnect);
        assert_eq!(
            o.push(frame(Some("a"), 40), Overflow::Disconnect),
            Pushed::Overflowed
        );
        assert_eq!(
            o.push(frame(Some("a"), 1), Overflow::Disconnect),
            Pushed::Closed
        );
        let mut out = Vec::new();
        assert!(!o.drain(&mut out));
    }
}
