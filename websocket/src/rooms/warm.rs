//! Rooms on a sharded backplane: a room's state (epoch, offset, recent history) lives in Redis
//! and is read into the node when the room first appears there, or again after the node's
//! subscription was lost. Until the read is done the room is *warming*: events that arrive are
//! held in order, joiners wait, and a recovery cannot be answered from it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};

use super::{Room, Rooms};

/// Events held by one warming room at most; older ones are dropped (the gap then forgets the
/// history, so no recovery claims to be complete across it).
const HELD_MAX: usize = 10_000;

/// What the sharded backplane is told, in the order rooms are created and forgotten.
pub(crate) enum Interest {
    /// A room was created on this node (warming): subscribe to it, read its state, finish it.
    Want(String),
    /// A room was forgotten on this node: unsubscribe.
    Drop(String),
    /// The subscription to some node was lost: subscribe to every room again and read the
    /// state of every warming room.
    Resync,
    /// Redis ended the subscription to this channel (its own unsubscribes included).
    Lost(String),
}

/// A warming room's waiting events and the signal its joiners wait on.
pub(crate) struct Warming {
    held: VecDeque<(u64, Arc<str>, Box<RawValue>)>,
    done: watch::Sender<bool>,
}

impl Warming {
    fn new() -> Self {
        Self {
            held: VecDeque::new(),
            done: watch::Sender::new(false),
        }
    }

    /// Holds an event until the room's state is read.
    pub(crate) fn hold(&mut self, offset: u64, epoch: &str, event: Box<RawValue>) {
        if self.held.len() >= HELD_MAX {
            self.held.pop_front();
        }
        self.held.push_back((offset, epoch.into(), event));
    }
}

/// A room's state as read from Redis.
pub(crate) struct Snapshot {
    /// The room's epoch.
    pub(crate) epoch: String,
    /// The room's last offset.
    pub(crate) offset: u64,
    /// Its recent events, oldest first: offset, age, event JSON.
    pub(crate) history: Vec<(u64, Duration, String)>,
}

/// What a caller about to join a room on a sharded backplane must do first.
pub(crate) enum Warm {
    /// The room's state is here: join.
    Ready,
    /// Its state is being read (by the backplane's subscriptions task): wait for `true`.
    Wait(watch::Receiver<bool>),
}

impl Rooms {
    /// Starts telling `interest` which rooms this node has (a sharded backplane).
    pub(crate) fn watch(&self, interest: mpsc::UnboundedSender<Interest>) -> bool {
        self.interest.set(interest).is_ok()
    }

    /// Tells the sharded backplane's subscriptions task something.
    pub(crate) fn tell(&self, what: Interest) {
        if let Some(tx) = self.interest.get() {
            // ok to ignore: the backplane has stopped
            let _ = tx.send(what);
        }
    }

    /// Creates `room` warming if this node does not have it (the backplane is told to
    /// subscribe and read its state); see [`Warm`].
    pub(crate) fn begin_warm(&self, room: &str) -> Warm {
        if self.interest.get().is_none() {
            return Warm::Ready;
        }
        let mut rooms = self.lock();
        let r = self.room_mut(&mut rooms, room);
        match &r.warming {
            None => Warm::Ready,
            Some(w) => Warm::Wait(w.done.subscribe()),
        }
    }

    /// `room` in `map`, created if missing: on a sharded backplane a new room is warming and
    /// the backplane is told, under the lock, so it hears of creations and sweeps in map order.
    pub(super) fn room_mut<'a>(
        &self,
        map: &'a mut std::collections::HashMap<String, Room>,
        room: &str,
    ) -> &'a mut Room {
        let created = !map.contains_key(room);
        let r = map.entry(room.to_owned()).or_insert_with(Room::new);
        if created && let Some(interest) = self.interest.get() {
            r.warming = Some(Warming::new());
            if interest.send(Interest::Want(room.to_owned())).is_err() {
                // The backplane has stopped: nothing will read the state.
                finish(r);
            }
        }
        r
    }

    /// Each time every room is put back into warming, this grows: a state read before it is
    /// not installed (the subscription it relied on may have been lost meanwhile).
    pub(crate) fn warm_generation(&self) -> u64 {
        self.warm_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Puts every room back into warming (the subscription to some Redis node was lost, so
    /// events were missed); returns how many rooms there are.
    pub(crate) fn rewarm_all(&self) -> usize {
        let mut rooms = self.lock();
        self.warm_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        for r in rooms.values_mut() {
            if r.warming.is_none() {
                r.warming = Some(Warming::new());
            }
        }
        rooms.len()
    }

    /// The rooms still warming.
    pub(crate) fn warming(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, r)| r.warming.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Ends `room`'s warming with the state read from Redis: its epoch, offset and history are
    /// Redis's; members already in it get the events they missed; then the held events are
    /// delivered in order (those already delivered are skipped by offset).
    pub(crate) fn finish_warm(&self, room: &str, snapshot: Snapshot, generation: u64) {
        let mut rooms = self.lock();
        if generation != self.warm_generation() {
            return; // read before a loss: the resync reads it again
        }
        let Some(r) = rooms.get_mut(room) else {
            return;
        };
        let Some(warming) = r.warming.take() else {
            return;
        };
        let now = Instant::now();
        let same_epoch = *r.epoch == *snapshot.epoch;
        let seen = r.offset;
        r.epoch = snapshot.epoch.into();
        r.offset = snapshot.offset;
        r.history.clear();
        let policy = self.config.overflow_for(room);
        for (offset, age, json) in snapshot.history {
            let Ok(event) = RawValue::from_string(json) else {
                continue;
            };
            let Some(text) = r.event_frame(room, offset, event) else {
                continue;
            };
            // Members (present when the room warms again) get what they missed: every event
            // of a new epoch, or those after the last one they saw.
            if !same_epoch || offset > seen {
                self.counters
                    .fan_out(r.members.values(), room, &text, policy);
            }
            r.history
                .push_back((offset, now.checked_sub(age).unwrap_or(now), text));
            while r.history.len() > self.config.history_len {
                r.history.pop_front();
            }
        }
        // The history must end at the offset, or it could be replayed across a gap.
        if r.history.back().is_some_and(|(o, _, _)| *o != r.offset) {
            r.history.clear();
        }
        for (offset, epoch, event) in warming.held {
            self.deliver_in_order(r, room, offset, &epoch, event);
        }
        r.touched = now;
        warming.done.send_replace(true);
    }
}

/// Ends a room's warming with what it has (nothing will read its state).
fn finish(r: &mut Room) {
    if let Some(w) = r.warming.take() {
        w.done.send_replace(true);
    }
}
