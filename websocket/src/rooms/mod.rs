//! Rooms: their members, their history ring (offset and epoch), joining with recovery,
//! leaving with presence, publishing, and forgetting idle rooms.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::value::RawValue;
use tidewell_auth::Claims;
use tidewell_protocol::{ServerFrame, Since, codes, is_valid_room};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::{Overflow, WsConfig};
use crate::fanout::{FanOutCounters, encode};
use crate::outbox::Frame;
use crate::registry::Conn;

#[cfg(feature = "redis")]
pub(crate) mod warm;

/// What this node sends to the others through the backplane's publisher, in order.
#[cfg(feature = "redis")]
pub(crate) enum Job {
    /// An event (JSON text) for a room.
    Event { room: String, json: String },
    /// A connection of `user` joined or left a presence room on this node.
    Presence {
        room: String,
        user: String,
        joined: bool,
    },
}

struct Room {
    members: HashMap<u64, Arc<Conn>>,
    epoch: Arc<str>,
    offset: u64,
    history: VecDeque<(u64, Instant, Utf8Bytes)>,
    touched: Instant,
    /// While the room's state is read from a sharded backplane: events that arrive meanwhile
    /// wait here, and joiners wait for the read to finish.
    #[cfg(feature = "redis")]
    warming: Option<warm::Warming>,
}

impl Room {
    fn new() -> Self {
        Self {
            members: HashMap::new(),
            epoch: uuid::Uuid::now_v7().simple().to_string().into(),
            offset: 0,
            history: VecDeque::new(),
            touched: Instant::now(),
            #[cfg(feature = "redis")]
            warming: None,
        }
    }

    /// The `event` frame of `event` at `offset` in this room (its epoch), encoded once.
    fn event_frame(&self, room: &str, offset: u64, event: Box<RawValue>) -> Option<Utf8Bytes> {
        encode(&ServerFrame::Event {
            room: room.to_owned(),
            offset,
            epoch: self.epoch.to_string(),
            event,
        })
    }

    /// Whether the room's state is still being read from the backplane (it cannot answer a
    /// recovery yet).
    fn is_warming(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.warming.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// The history after `since`, if it still holds every offset after it (not evicted, not
    /// expired): `(recovered, frames to replay)`.
    fn recover(&self, since: Option<Since>, config: &WsConfig) -> (Option<bool>, Vec<Utf8Bytes>) {
        let now = Instant::now();
        match since {
            None => (None, Vec::new()),
            Some(_) if self.is_warming() => (Some(false), Vec::new()),
            Some(s) if *s.epoch != *self.epoch || s.offset > self.offset => {
                (Some(false), Vec::new())
            }
            Some(s) if s.offset == self.offset => (Some(true), Vec::new()),
            Some(s) => {
                let oldest_kept = self
                    .history
                    .iter()
                    .find(|(_, at, _)| now.duration_since(*at) <= config.history_ttl)
                    .map(|(o, _, _)| *o);
                match oldest_kept {
                    Some(o) if o <= s.offset + 1 => (
                        Some(true),
                        self.history
                            .iter()
                            .filter(|(o, _, _)| *o > s.offset)
                            .map(|(_, _, t)| t.clone())
                            .collect(),
                    ),
                    _ => (Some(false), Vec::new()),
                }
            }
        }
    }
}

/// Every room of this node.
pub(crate) struct Rooms {
    config: Arc<WsConfig>,
    map: Mutex<HashMap<String, Room>>,
    pub(crate) counters: FanOutCounters,
    /// A sharded backplane's subscriptions: told, in map order, of every room created and
    /// forgotten.
    #[cfg(feature = "redis")]
    interest: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<warm::Interest>>,
    /// See [`Rooms::warm_generation`].
    #[cfg(feature = "redis")]
    warm_generation: std::sync::atomic::AtomicU64,
    /// The backplane's publish queue, for presence changes (sent under the map lock, so in
    /// order).
    #[cfg(feature = "redis")]
    presence_out: std::sync::OnceLock<tokio::sync::mpsc::Sender<Job>>,
}

impl Rooms {
    pub(crate) fn new(config: Arc<WsConfig>) -> Self {
        Self {
            config,
            map: Mutex::new(HashMap::new()),
            counters: FanOutCounters::default(),
            #[cfg(feature = "redis")]
            interest: std::sync::OnceLock::new(),
            #[cfg(feature = "redis")]
            warm_generation: std::sync::atomic::AtomicU64::new(0),
            #[cfg(feature = "redis")]
            presence_out: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `room`, created if missing (warming, and the backplane told, on a sharded backplane:
    /// whoever creates a room, it gets subscribed and its state read).
    fn entry<'a>(&self, map: &'a mut HashMap<String, Room>, room: &str) -> &'a mut Room {
        #[cfg(feature = "redis")]
        return self.room_mut(map, room);
        #[cfg(not(feature = "redis"))]
        map.entry(room.to_owned()).or_insert_with(Room::new)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Publishes `event` on this node at the room's next offset.
    pub(crate) fn publish(&self, room: &str, event: Box<RawValue>) {
        let mut rooms = self.lock();
        let r = self.entry(&mut rooms, room);
        let offset = r.offset + 1;
        self.append_and_fan_out(r, room, offset, event);
    }

    /// An event from the backplane, with the offset and epoch Redis gave it. A sharded
    /// backplane (`create: false`) delivers only to rooms this node has.
    #[cfg(feature = "redis")]
    pub(crate) fn deliver_remote(
        &self,
        room: &str,
        offset: u64,
        epoch: &str,
        json: &str,
        create: bool,
    ) {
        let Ok(event) = RawValue::from_string(json.to_owned()) else {
            return;
        };
        let mut rooms = self.lock();
        let r = match rooms.get_mut(room) {
            Some(r) => r,
            None if create => self.entry(&mut rooms, room),
            None => return,
        };
        if let Some(w) = &mut r.warming {
            w.hold(offset, epoch, event);
            return;
        }
        self.deliver_in_order(r, room, offset, epoch, event);
    }

    /// Appends a backplane event unless it was seen; a new epoch or a gap forgets the history
    /// (never replay across events this node did not see).
    #[cfg(feature = "redis")]
    fn deliver_in_order(
        &self,
        r: &mut Room,
        room: &str,
        offset: u64,
        epoch: &str,
        event: Box<RawValue>,
    ) {
        if *r.epoch != *epoch {
            r.epoch = epoch.into();
            r.history.clear();
        } else if offset <= r.offset {
            return; // already seen
        } else if offset != r.offset + 1 {
            r.history.clear();
        }
        self.append_and_fan_out(r, room, offset, event);
    }

    /// Forgets every room's history and gives it a new epoch of this node's (the backplane
    /// subscription dropped: events were missed, so no recovery may claim to be complete until
    /// events with Redis's epoch arrive again).
    #[cfg(feature = "redis")]
    pub(crate) fn forget_histories(&self) {
        for r in self.lock().values_mut() {
            r.history.clear();
            r.epoch = uuid::Uuid::now_v7().simple().to_string().into();
        }
    }

    /// Records `event` at `offset` in the room's history (offset and epoch already decided) and
    /// queues its frame, encoded once, to every member.
    fn append_and_fan_out(&self, r: &mut Room, room: &str, offset: u64, event: Box<RawValue>) {
        r.offset = offset;
        r.touched = Instant::now();
        let Some(text) = r.event_frame(room, offset, event) else {
            return;
        };
        r.history.push_back((offset, Instant::now(), text.clone()));
        while r.history.len() > self.config.history_len {
            r.history.pop_front();
        }
        let policy = self.config.overflow_for(room);
        self.counters
            .fan_out(r.members.values(), room, &text, policy);
    }

    /// Puts a new connection in its own rooms (no presence, no answer).
    pub(crate) fn join_own(&self, conn: &Arc<Conn>, own: &[String]) {
        let mut rooms = self.lock();
        for r in own {
            self.entry(&mut rooms, r)
                .members
                .insert(conn.key, Arc::clone(conn));
        }
        drop(rooms);
        conn.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(own.iter().cloned());
    }

    /// Joins `room` (which the server's checks answered with `allowed`), answering `subscribed`
    /// and replaying what `since` missed, atomically with respect to publishes in the room.
    pub(crate) fn subscribe(
        &self,
        conn: &Arc<Conn>,
        id: Option<u64>,
        room: &str,
        since: Option<Since>,
        allowed: bool,
    ) {
        if !is_valid_room(room) {
            return conn.error(
                id,
                codes::BAD_ROOM,
                "room names are 1 to 128 visible ASCII characters",
            );
        }
        if !allowed {
            return conn.error(id, codes::FORBIDDEN, "you may not join this room");
        }
        {
            let mut joined = conn.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if !joined.contains(room) {
                if joined.len() >= self.config.max_rooms {
                    drop(joined);
                    return conn.error(id, codes::TOO_MANY_ROOMS, "leave a room first");
                }
                joined.insert(room.to_owned());
            }
        }
        let policy = self.config.overflow_for(room);
        let mut rooms = self.lock();
        let r = self.entry(&mut rooms, room);
        let (recovered, replay) = r.recover(since, &self.config);
        conn.answer(&ServerFrame::Subscribed {
            id,
            room: room.to_owned(),
            epoch: r.epoch.to_string(),
            offset: r.offset,
            recovered,
        });
        let room_name: Arc<str> = room.into();
        for text in replay {
            self.counters.deliver(
                conn,
                Frame {
                    text,
                    room: Some(Arc::clone(&room_name)),
                },
                policy,
            );
        }
        if !r.members.contains_key(&conn.key) && self.config.presence_for(room) {
            self.presence(r, room, &conn.info.user, true); // to the others
        }
        r.members.insert(conn.key, Arc::clone(conn));
    }

    /// Leaves `room` on the client's request, answering `ack` when the frame had an id.
    pub(crate) fn unsubscribe(&self, conn: &Arc<Conn>, id: Option<u64>, room: &str) {
        let was_in = conn
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(room);
        if was_in {
            self.leave(conn, room);
        }
        if let Some(id) = id {
            conn.answer(&ServerFrame::Ack { id });
        }
    }

    /// Takes `conn` out of every room it is in.
    pub(crate) fn leave_all(&self, conn: &Arc<Conn>) {
        let rooms: Vec<String> = conn
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for r in rooms {
            self.leave(conn, &r);
        }
    }

    fn leave(&self, conn: &Conn, room: &str) {
        let mut rooms = self.lock();
        if let Some(r) = rooms.get_mut(room)
            && r.members.remove(&conn.key).is_some()
        {
            r.touched = Instant::now();
            if self.config.presence_for(room) {
                self.presence(r, room, &conn.info.user, false);
            }
        }
    }

    fn presence(&self, r: &Room, room: &str, user: &str, joined: bool) {
        #[cfg(feature = "redis")]
        if let Some(out) = self.presence_out.get() {
            let job = Job::Presence {
                room: room.to_owned(),
                user: user.to_owned(),
                joined,
            };
            if out.try_send(job).is_err() {
                tracing::warn!(
                    room,
                    "backplane queue full: a presence change is not shared with the other nodes"
                );
            }
        }
        self.show_presence(r, room, user, joined);
    }

    /// Sends a presence frame to `room`'s members on this node.
    fn show_presence(&self, r: &Room, room: &str, user: &str, joined: bool) {
        let frame = ServerFrame::Presence {
            room: room.to_owned(),
            user: user.to_owned(),
            joined,
        };
        if let Some(text) = encode(&frame) {
            self.counters
                .fan_out(r.members.values(), room, &text, Overflow::DropOldest);
        }
    }

    /// Shares this node's presence changes through the backplane's queue.
    #[cfg(feature = "redis")]
    pub(crate) fn send_presence_to(&self, queue: tokio::sync::mpsc::Sender<Job>) {
        // ok to ignore: one backplane per server (checked by the server)
        let _ = self.presence_out.set(queue);
    }

    /// A presence change on another node: shown to this node's members of `room`.
    #[cfg(feature = "redis")]
    pub(crate) fn presence_remote(&self, room: &str, user: &str, joined: bool) {
        if !self.config.presence_for(room) {
            return;
        }
        if let Some(r) = self.lock().get(room) {
            self.show_presence(r, room, user, joined);
        }
    }

    /// Who is in `room`: user ids and their connection counts, sorted.
    pub(crate) fn presence_of(&self, room: &str) -> Vec<(String, usize)> {
        let mut users: HashMap<String, usize> = HashMap::new();
        if let Some(r) = self.lock().get(room) {
            for c in r.members.values() {
                *users.entry(c.info.user.clone()).or_default() += 1;
            }
        }
        let mut v: Vec<_> = users.into_iter().collect();
        v.sort();
        v
    }

    /// Forgets rooms with no members whose history has expired (a sharded backplane is told,
    /// in order with the rooms it is told were created).
    pub(crate) fn sweep(&self) {
        let ttl = self.config.history_ttl;
        let now = Instant::now();
        let mut rooms = self.lock();
        rooms.retain(|name, r| {
            let keep =
                !r.members.is_empty() || r.is_warming() || now.duration_since(r.touched) < ttl;
            #[cfg(feature = "redis")]
            if !keep && let Some(tx) = self.interest.get() {
                // ok to ignore: the backplane has stopped
                let _ = tx.send(warm::Interest::Drop(name.clone()));
            }
            #[cfg(not(feature = "redis"))]
            let _ = name;
            keep
        });
    }
}

/// The rooms a token joins by itself: `user:<sub>`, `role:<r>` for its roles, `device:<did>`
/// and `broadcast`.
pub(crate) fn own_rooms(claims: &Claims) -> Vec<String> {
    let mut rooms = vec![format!("user:{}", claims.sub)];
    rooms.extend(claims.roles.iter().map(|r| format!("role:{r}")));
    if let Some(d) = &claims.did {
        rooms.push(format!("device:{d}"));
    }
    rooms.push("broadcast".to_owned());
    rooms.retain(|r| is_valid_room(r));
    rooms
}
