//! One tab's realtime client state: the WebSocket (when this tab holds one), the rooms this tab
//! asked for with their handlers, the last position seen in each room, and the frames of the
//! Tidewell protocol (docs/protocol.md). `RealtimeClient` (the JavaScript API) is a handle on it;
//! in the shared mode `shared` and `cross_tab` carry it between tabs.
//!
//! Frames are read with the browser's `JSON.parse` and written with `JSON.stringify`, not with
//! `tidewell-protocol`'s serde types: serde_json doubled the size of the `.wasm`. The frame
//! shapes here follow docs/protocol.md; the protocol crate gives the version, close codes and
//! room rule.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::{Rc, Weak};

use js_sys::Function;
use tidewell_protocol::{PROTOCOL_VERSION, close, is_valid_room};
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::shared::{Replay, Shared, Tab};
use super::{JsObject, Listeners, describe_js, number_option, object, once_fn};
use crate::Error;
use crate::interest::{Positions, Since};
use crate::message::{Field, Object as _};

/// Event ids remembered for de-duplication.
const SEEN_IDS: usize = 1_024;

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

/// The client's state, shared with the socket's callbacks (which hold it weakly).
pub(crate) struct Rt {
    url: String,
    pub(crate) token: RefCell<String>,
    /// When this tab got its token (milliseconds): the newest token of any tab wins.
    pub(crate) token_at: Cell<f64>,
    min_backoff: f64,
    max_backoff: f64,
    max_rooms: usize,
    socket: RefCell<Option<Socket>>,
    /// The rooms this tab asked for, with their handlers.
    pub(crate) room_handlers: RefCell<HashMap<String, Rc<Listeners>>>,
    /// The last position seen in each room.
    pub(crate) positions: RefCell<Positions>,
    /// The rooms the socket is subscribed to.
    pub(crate) joined: RefCell<Vec<String>>,
    /// Older positions other tabs asked to resume from, sent with the next subscribe.
    pub(crate) pending: RefCell<Positions>,
    pub(crate) events: Listeners,
    pub(crate) status: Listeners,
    pub(crate) attempt: Cell<u32>,
    pub(crate) stopped: Cell<bool>,
    pub(crate) open: Cell<bool>,
    next_id: Cell<u64>,
    seen: RefCell<(VecDeque<String>, HashSet<String>)>,
    timer: Cell<Option<i32>>,
    /// The shared mode's part; `None` with a connection of its own.
    pub(crate) shared: Option<Shared>,
    this: Weak<Rt>,
}

impl Rt {
    pub(crate) fn new(
        url: String,
        token: String,
        options: &JsValue,
        channel: Option<String>,
    ) -> Result<Rc<Self>, Error> {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(Error::InvalidArgument(format!(
                "the WebSocket URL must start with ws:// or wss://, got \"{url}\""
            )));
        }
        let min_backoff = number_option(options, "minBackoffMs")?
            .unwrap_or(250.0)
            .max(1.0);
        let max_backoff = number_option(options, "maxBackoffMs")?
            .unwrap_or(15_000.0)
            .max(min_backoff);
        // Truncation intended: a count.
        let max_rooms = number_option(options, "maxRooms")?.unwrap_or(256.0) as usize;
        let transport = match channel {
            Some(channel) => Some((channel, super::transport::Kind::choose("auto")?)),
            None => None,
        };
        let rt = Rc::new_cyclic(|this: &Weak<Rt>| Self {
            token: RefCell::new(token),
            token_at: Cell::new(super::now_ms()),
            min_backoff,
            max_backoff,
            max_rooms,
            socket: RefCell::new(None),
            room_handlers: RefCell::new(HashMap::new()),
            positions: RefCell::default(),
            joined: RefCell::new(Vec::new()),
            pending: RefCell::default(),
            events: Listeners::default(),
            status: Listeners::default(),
            attempt: Cell::new(0),
            stopped: Cell::new(false),
            open: Cell::new(false),
            next_id: Cell::new(0),
            seen: RefCell::new((VecDeque::new(), HashSet::new())),
            timer: Cell::new(None),
            shared: transport.map(|(channel, kind)| {
                let owner: Weak<dyn Tab> = this.clone();
                Shared::new(&channel, &url, kind, owner)
            }),
            url,
            this: this.clone(),
        });
        Ok(rt)
    }

    pub(crate) fn start(&self) -> Result<(), Error> {
        match &self.shared {
            None => {
                self.connect();
                Ok(())
            }
            Some(shared) => shared.start(),
        }
    }

    pub(crate) fn weak(&self) -> Weak<Rt> {
        self.this.clone()
    }

    /// Whether this tab holds the socket.
    pub(crate) fn holding(&self) -> bool {
        self.shared.as_ref().is_none_or(Shared::is_holder)
    }

    pub(crate) fn connected(&self) -> bool {
        match &self.shared {
            Some(s) if !s.is_holder() => s.holder_open(),
            _ => self.open.get(),
        }
    }

    pub(crate) fn add(&self, list: fn(&Rt) -> &Listeners, handler: Function) -> Function {
        let id = list(self).add(handler);
        let weak = self.weak();
        once_fn(move || {
            if let Some(rt) = weak.upgrade() {
                list(&rt).remove(id);
            }
        })
    }

    /// Takes `token` if it is newer than this tab's; with `tell`, every other tab learns it.
    pub(crate) fn set_token(&self, token: String, at: f64, tell: bool) {
        if at < self.token_at.get() {
            return;
        }
        self.token_at.set(at);
        if tell && let Some(shared) = &self.shared {
            shared.send_token(&token, at);
        }
        *self.token.borrow_mut() = token;
    }

    pub(crate) fn subscribe(
        &self,
        room: String,
        handler: Function,
        since: Option<Since>,
    ) -> Result<Function, Error> {
        if !is_valid_room(&room) {
            return Err(Error::InvalidArgument(format!(
                "\"{room}\" is not a room name: 1 to 128 visible ASCII characters, e.g. \"payment:42\""
            )));
        }
        let new_room = !self.room_handlers.borrow().contains_key(&room);
        if new_room && self.room_handlers.borrow().len() >= self.max_rooms {
            return Err(Error::InvalidArgument(format!(
                "already in {} rooms (maxRooms); unsubscribe from one first",
                self.max_rooms
            )));
        }
        let listeners = Rc::clone(
            self.room_handlers
                .borrow_mut()
                .entry(room.clone())
                .or_insert_with(|| Rc::new(Listeners::default())),
        );
        let id = listeners.add(handler);
        if new_room {
            let replay = since.inspect(|since| {
                // Replay from `since` unless this tab has seen further.
                let mut positions = self.positions.borrow_mut();
                if positions
                    .get(&room)
                    .is_none_or(|p| !p.covers(&since.epoch, since.offset))
                {
                    positions.insert(room.clone(), since.clone());
                }
            });
            self.rooms_changed(replay.map(|s| (room.clone(), s)));
        }
        let weak = self.weak();
        Ok(once_fn(move || {
            listeners.remove(id);
            let Some(rt) = weak.upgrade() else { return };
            if listeners.is_empty() {
                rt.room_handlers.borrow_mut().remove(&room);
                if !rt.holding() {
                    rt.positions.borrow_mut().remove(&room);
                }
                rt.rooms_changed(None);
            }
        }))
    }

    /// Shared mode: tells the holder this tab's rooms and positions (`replay`: the rooms to
    /// replay from this tab's positions).
    pub(crate) fn announce(&self, hello: bool, replay: Replay<'_>) {
        let Some(shared) = &self.shared else { return };
        let positions = self.positions.borrow();
        let mine: Vec<(String, Option<Since>)> = self
            .room_handlers
            .borrow()
            .keys()
            .map(|r| (r.clone(), positions.get(r).cloned()))
            .collect();
        drop(positions);
        shared.announce(&mine, hello, replay);
    }

    /// This tab's rooms changed (`replay`: a room joined with a position to replay from).
    fn rooms_changed(&self, replay: Option<(String, Since)>) {
        if self.holding() {
            if let Some((room, since)) = replay {
                self.pending.borrow_mut().insert(room, since);
            }
            self.reconcile();
        } else if self.shared.is_some() {
            let replay = match &replay {
                Some((room, _)) => Replay::One(room),
                None => Replay::None,
            };
            self.announce(false, replay);
        }
    }

    /// Holding the socket: subscribes the rooms some tab wants and the socket lacks (or that
    /// a tab asked to replay), and leaves those no tab wants.
    pub(crate) fn reconcile(&self) {
        if !self.open.get() {
            return;
        }
        let mut wanted: Vec<String> = self.room_handlers.borrow().keys().cloned().collect();
        if let Some(shared) = &self.shared {
            shared.interests.borrow().add_rooms(&mut wanted);
        }
        for room in &wanted {
            let replay = self.pending.borrow_mut().remove(room);
            if self.joined.borrow().contains(room) && replay.is_none() {
                continue;
            }
            let own = self.positions.borrow().get(room).cloned();
            let since = match (own, replay) {
                (Some(own), Some(asked)) => Some(own.earliest(asked)),
                (own, asked) => own.or(asked),
            };
            if !self.joined.borrow().contains(room) {
                self.joined.borrow_mut().push(room.clone());
            }
            self.send_subscribe(room, since);
        }
        let gone: Vec<String> = self
            .joined
            .borrow()
            .iter()
            .filter(|r| !wanted.contains(r))
            .cloned()
            .collect();
        for room in gone {
            self.joined.borrow_mut().retain(|r| *r != room);
            self.positions.borrow_mut().remove(&room);
            let id = self.request_id();
            self.send(&[
                ("type", "unsubscribe".into()),
                // Request ids stay far below 2^53.
                ("id", JsValue::from_f64(id as f64)),
                ("room", room.as_str().into()),
            ]);
        }
    }

    fn request_id(&self) -> u64 {
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        id
    }

    fn send_subscribe(&self, room: &str, since: Option<Since>) {
        let id = self.request_id();
        let mut frame = vec![
            ("type", JsValue::from_str("subscribe")),
            // Request ids stay far below 2^53.
            ("id", JsValue::from_f64(id as f64)),
            ("room", JsValue::from_str(room)),
        ];
        if let Some(since) = since {
            frame.push((
                "since",
                object(&[
                    ("epoch", JsValue::from_str(&since.epoch)),
                    // Offsets stay far below 2^53.
                    ("offset", JsValue::from_f64(since.offset as f64)),
                ]),
            ));
        }
        self.send(&frame);
    }

    fn send(&self, frame: &[(&str, JsValue)]) {
        let Some(text) = js_sys::JSON::stringify(&object(frame))
            .ok()
            .and_then(|t| t.as_string())
        else {
            return;
        };
        if let Some(s) = self.socket.borrow().as_ref()
            && s.ws.send_with_str(&text).is_err()
        {
            // The socket is closing; its close event reconnects and subscribes again.
            tracing_free_warn("send failed; the reconnect re-sends subscriptions");
        }
    }

    /// Tells this tab's `onStatus` handlers; with `share`, the holder tells the other tabs too.
    pub(crate) fn emit_status(&self, fields: &[(&str, JsValue)], share: bool) {
        let status = object(fields);
        if share && let Some(shared) = self.shared.as_ref().filter(|s| s.is_holder()) {
            shared.send_status(&status);
        }
        self.status.call(&[status], |e| {
            web_sys::console::error_2(
                &JsValue::from_str("tidewell realtime: onStatus handler threw:"),
                &e,
            );
        });
    }

    pub(crate) fn connect(&self) {
        if self.stopped.get() || !self.holding() {
            return;
        }
        self.timer.set(None);
        let attempt = self.attempt.get();
        self.emit_status(
            &[("status", "connecting".into()), ("attempt", attempt.into())],
            true,
        );
        let protocols = js_sys::Array::of2(
            &JsValue::from_str("tidewell.v1"),
            &JsValue::from_str(&format!("bearer.{}", self.token.borrow())),
        );
        let ws = match WebSocket::new_with_str_sequence(&self.url, &protocols) {
            Ok(ws) => ws,
            Err(e) => {
                self.emit_status(
                    &[
                        ("status", "error".into()),
                        ("code", "connect".into()),
                        ("message", describe_js(&e).into()),
                    ],
                    true,
                );
                self.schedule_reconnect(1006, "could not open the WebSocket");
                return;
            }
        };
        let weak = self.weak();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            if let Some(rt) = weak.upgrade() {
                rt.opened();
            }
        });
        let weak = self.weak();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(rt) = weak.upgrade() {
                match e.data().as_string() {
                    Some(text) => rt.frame(&text, None),
                    None => rt.bad("a binary frame (the protocol is text only)".into()),
                }
            }
        });
        let weak = self.weak();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            if let Some(rt) = weak.upgrade() {
                rt.closed(e.code(), &e.reason());
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *self.socket.borrow_mut() = Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
    }

    fn opened(&self) {
        self.open.set(true);
        self.send(&[
            ("type", "hello".into()),
            ("protocol", PROTOCOL_VERSION.into()),
        ]);
        self.joined.borrow_mut().clear();
        self.reconcile();
    }

    fn bad(&self, message: String) {
        self.emit_status(
            &[
                ("status", "error".into()),
                ("code", "bad_frame".into()),
                ("message", message.into()),
            ],
            true,
        );
    }

    /// One frame: from the socket (`relayed` is `None`), or relayed by the holding tab
    /// (`Some(true)` when it is an event of a room some tab asked for, `Some(false)` otherwise).
    pub(crate) fn frame(&self, text: &str, relayed: Option<bool>) {
        let frame = match js_sys::JSON::parse(text) {
            Ok(v) if v.is_object() && !js_sys::Array::is_array(&v) => JsObject(v),
            Ok(_) => return self.bad("a frame that is not a JSON object".into()),
            Err(e) => {
                return self.bad(format!(
                    "unreadable frame from the server: {}",
                    describe_js(&e)
                ));
            }
        };
        let text_of = |key: &str| match frame.field(key) {
            Field::Str(s) => Some(s),
            _ => None,
        };
        let uint = |key: &str| match frame.field(key) {
            Field::Uint(n) => Some(n),
            _ => None,
        };
        let kind = text_of("type");
        let room = text_of("room");
        if relayed.is_none()
            && let Some(shared) = self.shared.as_ref().filter(|s| s.is_holder())
        {
            let asked = kind.as_deref() == Some("event")
                && room
                    .as_ref()
                    .is_some_and(|r| self.joined.borrow().contains(r));
            shared.relay(text, asked);
        }
        let mine = room
            .as_ref()
            .is_some_and(|r| self.room_handlers.borrow().contains_key(r));
        match kind.as_deref() {
            Some("welcome") => {
                // The connection is usable: the next drop starts the backoff from the bottom.
                self.attempt.set(0);
                let connection = text_of("connection_id").unwrap_or_default();
                if let Some(shared) = &self.shared {
                    shared.set_open(Some(connection.clone()));
                }
                self.emit_status(
                    &[
                        ("status", "open".into()),
                        ("connectionId", connection.into()),
                    ],
                    false,
                );
            }
            Some("subscribed") => {
                let (Some(room), Some(epoch), Some(offset)) =
                    (room, text_of("epoch"), uint("offset"))
                else {
                    return self.bad("a subscribed frame without room, epoch or offset".into());
                };
                if !(mine || relayed.is_none()) {
                    return;
                }
                let recovered = frame.raw("recovered").and_then(|v| v.as_bool());
                let mut positions = self.positions.borrow_mut();
                let gap = match positions.get(&room) {
                    None => {
                        positions.insert(room.clone(), Since { epoch, offset });
                        false
                    }
                    // Not recovered and this tab had not seen up to the room's latest offset.
                    Some(p) if recovered == Some(false) && !p.covers(&epoch, offset) => {
                        positions.insert(room.clone(), Since { epoch, offset });
                        true
                    }
                    Some(_) => false,
                };
                drop(positions);
                if gap && mine {
                    self.emit_status(&[("status", "gap".into()), ("room", room.into())], false);
                }
            }
            Some("event") => {
                let (Some(room), Some(epoch), Some(offset), Some(event)) = (
                    room,
                    text_of("epoch"),
                    uint("offset"),
                    frame.raw("event").filter(JsValue::is_object),
                ) else {
                    return self.bad("an event frame without room, epoch, offset or event".into());
                };
                // A room another tab asked for: not this tab's business.
                if relayed == Some(true) && !mine {
                    return;
                }
                self.event(room, offset, epoch, event, mine);
            }
            Some("error") => self.emit_status(
                &[
                    ("status", "error".into()),
                    ("code", text_of("code").unwrap_or_default().into()),
                    ("message", text_of("message").unwrap_or_default().into()),
                ],
                false,
            ),
            // ack, presence, and frame types of later protocol versions.
            _ => {}
        }
    }

    fn event(&self, room: String, offset: u64, epoch: String, parsed: JsValue, mine: bool) {
        {
            let mut positions = self.positions.borrow_mut();
            if positions
                .get(&room)
                .is_some_and(|p| p.covers(&epoch, offset))
            {
                // Replayed after a reconnect or a hand-over: already delivered.
                return;
            }
            positions.insert(
                room.clone(),
                Since {
                    epoch: epoch.clone(),
                    offset,
                },
            );
        }
        let id = js_sys::Reflect::get(&parsed, &JsValue::from_str("id"))
            .ok()
            .and_then(|v| v.as_string());
        if let Some(id) = id {
            let mut seen = self.seen.borrow_mut();
            if seen.1.contains(&id) {
                return;
            }
            seen.0.push_back(id.clone());
            seen.1.insert(id);
            if seen.0.len() > SEEN_IDS
                && let Some(old) = seen.0.pop_front()
            {
                seen.1.remove(&old);
            }
        }
        // The holder also receives the rooms only other tabs asked for: they are theirs.
        if !mine && self.joined.borrow().contains(&room) {
            return;
        }
        let message = object(&[
            ("room", JsValue::from_str(&room)),
            ("epoch", JsValue::from_str(&epoch)),
            // Offsets stay far below 2^53 in practice.
            ("offset", JsValue::from_f64(offset as f64)),
            ("event", parsed),
        ]);
        let report = |e: JsValue| {
            web_sys::console::error_2(
                &JsValue::from_str("tidewell realtime: event handler threw:"),
                &e,
            );
        };
        let handlers = self.room_handlers.borrow().get(&room).cloned();
        if let Some(h) = handlers {
            h.call(std::slice::from_ref(&message), report);
        }
        self.events.call(&[message], report);
    }

    fn closed(&self, code: u16, reason: &str) {
        self.open.set(false);
        self.socket.borrow_mut().take();
        self.joined.borrow_mut().clear();
        if code == close::SESSION_REVOKED || code == close::UNSUPPORTED_PROTOCOL {
            self.stop(code, reason, true);
        } else {
            self.schedule_reconnect(code, reason);
        }
    }

    fn schedule_reconnect(&self, code: u16, reason: &str) {
        if self.stopped.get() || !self.holding() {
            return;
        }
        let attempt = self.attempt.get();
        self.attempt.set(attempt.saturating_add(1));
        let ceiling = (self.min_backoff * 2f64.powi(attempt.min(30) as i32)).min(self.max_backoff);
        // Full jitter: spreads the reconnects of many clients after a server restart.
        let delay = (js_sys::Math::random() * ceiling).max(1.0);
        self.emit_status(
            &[
                ("status", "closed".into()),
                ("code", code.into()),
                ("reason", reason.into()),
                ("retryInMs", delay.round().into()),
            ],
            true,
        );
        let weak = self.weak();
        let fire = Closure::once_into_js(move || {
            if let Some(rt) = weak.upgrade() {
                rt.connect();
            }
        });
        if let Some(w) = web_sys::window() {
            // Truncation intended: whole milliseconds.
            if let Ok(handle) = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                fire.unchecked_ref(),
                delay as i32,
            ) {
                self.timer.set(Some(handle));
            }
        }
    }

    /// Closes the socket without a status (the tab stops holding it, or stops).
    pub(crate) fn drop_socket(&self) {
        if let (Some(handle), Some(w)) = (self.timer.take(), web_sys::window()) {
            w.clear_timeout_with_handle(handle);
        }
        if let Some(s) = self.socket.borrow_mut().take() {
            s.ws.set_onclose(None);
            s.ws.set_onmessage(None);
            // ok to ignore: the socket may already be closed
            let _ =
                s.ws.close_with_code_and_reason(1000, "closed by the client");
        }
        self.open.set(false);
        self.joined.borrow_mut().clear();
    }

    /// Stops for good: no reconnect. With `share` (the server ended the session: 4001, 4002)
    /// the other tabs stop too; otherwise another tab takes the shared connection over.
    pub(crate) fn stop(&self, code: u16, reason: &str, share: bool) {
        if self.stopped.replace(true) {
            return;
        }
        self.drop_socket();
        let status = [
            ("status", "stopped".into()),
            ("code", code.into()),
            ("reason", reason.into()),
        ];
        self.emit_status(&status, share);
        if let Some(shared) = &self.shared {
            shared.leave(share);
        }
    }
}

fn tracing_free_warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(&format!("tidewell realtime: {message}")));
}
