//! `RealtimeClient`: the Tidewell WebSocket protocol (docs/protocol.md) in the browser, with
//! reconnects (exponential backoff, full jitter), re-subscription with `since` so that missed
//! events are replayed, and de-duplication by event id.
//!
//! Frames are read with the browser's `JSON.parse` and written with `JSON.stringify`, not with
//! `tidewell-protocol`'s serde types: serde_json doubled the size of the `.wasm`. The frame
//! shapes here follow docs/protocol.md; the protocol crate gives the version, close codes and
//! room rule.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::{Rc, Weak};

use js_sys::Function;
use tidewell_protocol::{PROTOCOL_VERSION, close, is_valid_room};
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::{JsObject, Listeners, describe_js, js_error, number_option, object, once_fn};
use crate::message::{Field, Object as _};

/// A position in a room: the `since` of a subscribe.
#[derive(Clone, Debug)]
struct Since {
    epoch: String,
    offset: u64,
}
use crate::Error;

/// Event ids remembered for de-duplication.
const SEEN_IDS: usize = 1_024;

/// A WebSocket client of a Tidewell server.
///
/// ```js
/// const rt = new RealtimeClient("wss://example.com/ws", accessToken);
/// rt.onStatus((s) => console.log(s.status));
/// const off = rt.subscribe("payment:42", ({ event }) => render(event.payload));
/// ```
///
/// Rooms subscribed while offline are kept (up to `maxRooms`) and subscribed on the next
/// connection; every room is subscribed again after a reconnect with the last position seen, so
/// the server replays what was missed (or reports a `gap`). The client stops for good, without
/// reconnecting, when the server closes with 4001 (session revoked) or 4002 (protocol version).
#[wasm_bindgen]
pub struct RealtimeClient {
    inner: Rc<Rt>,
}

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

/// The client's state, shared with the socket's callbacks (which hold it weakly).
pub(crate) struct Rt {
    url: String,
    token: RefCell<String>,
    min_backoff: f64,
    max_backoff: f64,
    max_rooms: usize,
    socket: RefCell<Option<Socket>>,
    /// Rooms asked for, with the last position seen in each.
    rooms: RefCell<BTreeMap<String, Option<Since>>>,
    room_handlers: RefCell<HashMap<String, Rc<Listeners>>>,
    pub(crate) events: Listeners,
    pub(crate) status: Listeners,
    attempt: Cell<u32>,
    stopped: Cell<bool>,
    open: Cell<bool>,
    next_id: Cell<u64>,
    seen: RefCell<(VecDeque<String>, HashSet<String>)>,
    timer: Cell<Option<i32>>,
    this: RefCell<Weak<Rt>>,
}

#[wasm_bindgen]
impl RealtimeClient {
    /// Connects to `url` (`wss://host/ws`) with `token` (a JWT, sent as the WebSocket protocol
    /// `bearer.<token>` beside `tidewell.v1`: browsers cannot set headers).
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: String,
        token: String,
        options: Option<super::RealtimeOptionsArg>,
    ) -> Result<RealtimeClient, JsValue> {
        let inner =
            Rt::new(url, token, options.map(JsValue::from).as_ref()).map_err(|e| js_error(&e))?;
        inner.connect();
        Ok(RealtimeClient { inner })
    }

    /// Joins `room` (now, or on the next connection when offline) and calls `handler` with
    /// each of its events. The returned function removes the handler, and leaves the room when
    /// it was the last one.
    #[wasm_bindgen(unchecked_return_type = "Unsubscribe")]
    pub fn subscribe(
        &self,
        room: String,
        #[wasm_bindgen(unchecked_param_type = "(event: RealtimeEvent) => void")] handler: Function,
    ) -> Result<Function, JsValue> {
        self.inner
            .subscribe(room, handler)
            .map_err(|e| js_error(&e))
    }

    /// Calls `handler` with every event of every room, including the rooms the server joins by
    /// itself (`user:<id>`, `device:<id>`, `broadcast`, ...).
    #[wasm_bindgen(js_name = onEvent, unchecked_return_type = "Unsubscribe")]
    pub fn on_event(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: RealtimeEvent) => void")] handler: Function,
    ) -> Function {
        self.inner.add(|r| &r.events, handler)
    }

    /// Calls `handler` on each change of the connection's state.
    #[wasm_bindgen(js_name = onStatus, unchecked_return_type = "Unsubscribe")]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(status: RealtimeStatus) => void")]
        handler: Function,
    ) -> Function {
        self.inner.add(|r| &r.status, handler)
    }

    /// The token for the next connection (the current one keeps its own).
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: String) {
        *self.inner.token.borrow_mut() = token;
    }

    /// Whether the connection is open.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.inner.open.get()
    }

    /// Closes the connection for good.
    pub fn close(&self) {
        self.inner.stop(1000, "closed by the client");
    }
}

impl RealtimeClient {
    /// The shared state, for `DeviceSessionSync`.
    pub(crate) fn rt(&self) -> Rc<Rt> {
        Rc::clone(&self.inner)
    }

    /// A client, for `DeviceSessionSync`.
    pub(crate) fn open(
        url: String,
        token: String,
        options: Option<&JsValue>,
    ) -> Result<Self, Error> {
        let inner = Rt::new(url, token, options)?;
        inner.connect();
        Ok(Self { inner })
    }
}

impl Rt {
    fn new(url: String, token: String, options: Option<&JsValue>) -> Result<Rc<Self>, Error> {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(Error::InvalidArgument(format!(
                "the WebSocket URL must start with ws:// or wss://, got {url:?}"
            )));
        }
        let options = options.cloned().unwrap_or(JsValue::UNDEFINED);
        let min_backoff = number_option(&options, "minBackoffMs")?
            .unwrap_or(250.0)
            .max(1.0);
        let max_backoff = number_option(&options, "maxBackoffMs")?
            .unwrap_or(15_000.0)
            .max(min_backoff);
        // Truncation intended: a count.
        let max_rooms = number_option(&options, "maxRooms")?.unwrap_or(256.0) as usize;
        let rt = Rc::new(Self {
            url,
            token: RefCell::new(token),
            min_backoff,
            max_backoff,
            max_rooms,
            socket: RefCell::new(None),
            rooms: RefCell::new(BTreeMap::new()),
            room_handlers: RefCell::new(HashMap::new()),
            events: Listeners::default(),
            status: Listeners::default(),
            attempt: Cell::new(0),
            stopped: Cell::new(false),
            open: Cell::new(false),
            next_id: Cell::new(0),
            seen: RefCell::new((VecDeque::new(), HashSet::new())),
            timer: Cell::new(None),
            this: RefCell::new(Weak::new()),
        });
        *rt.this.borrow_mut() = Rc::downgrade(&rt);
        Ok(rt)
    }

    fn weak(&self) -> Weak<Rt> {
        self.this.borrow().clone()
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

    fn subscribe(&self, room: String, handler: Function) -> Result<Function, Error> {
        if !is_valid_room(&room) {
            return Err(Error::InvalidArgument(format!(
                "{room:?} is not a room name: 1 to 128 visible ASCII characters, e.g. \"payment:42\""
            )));
        }
        let new_room = !self.rooms.borrow().contains_key(&room);
        if new_room {
            if self.rooms.borrow().len() >= self.max_rooms {
                return Err(Error::InvalidArgument(format!(
                    "already in {} rooms (maxRooms); unsubscribe from one first",
                    self.max_rooms
                )));
            }
            self.rooms.borrow_mut().insert(room.clone(), None);
            if self.open.get() {
                self.send_subscribe(&room, None);
            }
        }
        let listeners = Rc::clone(
            self.room_handlers
                .borrow_mut()
                .entry(room.clone())
                .or_insert_with(|| Rc::new(Listeners::default())),
        );
        let id = listeners.add(handler);
        let weak = self.weak();
        Ok(once_fn(move || {
            listeners.remove(id);
            let Some(rt) = weak.upgrade() else { return };
            if listeners.is_empty() {
                rt.room_handlers.borrow_mut().remove(&room);
                rt.rooms.borrow_mut().remove(&room);
                if rt.open.get() {
                    let id = rt.request_id();
                    rt.send(&[
                        ("type", "unsubscribe".into()),
                        // Request ids stay far below 2^53.
                        ("id", JsValue::from_f64(id as f64)),
                        ("room", room.as_str().into()),
                    ]);
                }
            }
        }))
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

    fn emit_status(&self, fields: &[(&str, JsValue)]) {
        let status = object(fields);
        self.status.call(&[status], |e| {
            web_sys::console::error_2(
                &JsValue::from_str("tidewell realtime: onStatus handler threw:"),
                &e,
            );
        });
    }

    fn connect(&self) {
        if self.stopped.get() {
            return;
        }
        self.timer.set(None);
        let attempt = self.attempt.get();
        self.emit_status(&[("status", "connecting".into()), ("attempt", attempt.into())]);
        let protocols = js_sys::Array::of2(
            &JsValue::from_str("tidewell.v1"),
            &JsValue::from_str(&format!("bearer.{}", self.token.borrow())),
        );
        let ws = match WebSocket::new_with_str_sequence(&self.url, &protocols) {
            Ok(ws) => ws,
            Err(e) => {
                self.emit_status(&[
                    ("status", "error".into()),
                    ("code", "connect".into()),
                    ("message", describe_js(&e).into()),
                ]);
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
                rt.frame(&e.data());
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
        let rooms: Vec<(String, Option<Since>)> = self
            .rooms
            .borrow()
            .iter()
            .map(|(r, s)| (r.clone(), s.clone()))
            .collect();
        for (room, since) in rooms {
            self.send_subscribe(&room, since);
        }
    }

    // Long: one match over the server frame types the realtime client handles.
    fn frame(&self, data: &JsValue) {
        let Some(text) = data.as_string() else {
            return self.emit_status(&[
                ("status", "error".into()),
                ("code", "bad_frame".into()),
                (
                    "message",
                    "a binary frame (the protocol is text only)".into(),
                ),
            ]);
        };
        let bad = |message: String| {
            self.emit_status(&[
                ("status", "error".into()),
                ("code", "bad_frame".into()),
                ("message", message.into()),
            ]);
        };
        let frame = match js_sys::JSON::parse(&text) {
            Ok(v) if v.is_object() && !js_sys::Array::is_array(&v) => JsObject(v),
            Ok(_) => return bad("a frame that is not a JSON object".into()),
            Err(e) => {
                return bad(format!(
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
        match text_of("type").as_deref() {
            Some("welcome") => {
                // The connection is usable: the next drop starts the backoff from the bottom.
                self.attempt.set(0);
                self.emit_status(&[
                    ("status", "open".into()),
                    (
                        "connectionId",
                        text_of("connection_id").unwrap_or_default().into(),
                    ),
                ]);
            }
            Some("subscribed") => {
                let (Some(room), Some(epoch), Some(offset)) =
                    (text_of("room"), text_of("epoch"), uint("offset"))
                else {
                    return bad("a subscribed frame without room, epoch or offset".into());
                };
                let recovered = frame.raw("recovered").and_then(|v| v.as_bool());
                let mut rooms = self.rooms.borrow_mut();
                if let Some(since) = rooms.get_mut(&room)
                    && (since.is_none() || recovered == Some(false))
                {
                    *since = Some(Since { epoch, offset });
                }
                drop(rooms);
                if recovered == Some(false) {
                    self.emit_status(&[("status", "gap".into()), ("room", room.into())]);
                }
            }
            Some("event") => {
                let (Some(room), Some(epoch), Some(offset), Some(event)) = (
                    text_of("room"),
                    text_of("epoch"),
                    uint("offset"),
                    frame.raw("event").filter(JsValue::is_object),
                ) else {
                    return bad("an event frame without room, epoch, offset or event".into());
                };
                self.event(room, offset, epoch, event);
            }
            Some("error") => self.emit_status(&[
                ("status", "error".into()),
                ("code", text_of("code").unwrap_or_default().into()),
                ("message", text_of("message").unwrap_or_default().into()),
            ]),
            // ack, presence, and frame types of later protocol versions.
            _ => {}
        }
    }

    fn event(&self, room: String, offset: u64, epoch: String, parsed: JsValue) {
        if let Some(since) = self.rooms.borrow_mut().get_mut(&room) {
            *since = Some(Since { epoch, offset });
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
        let message = object(&[
            ("room", JsValue::from_str(&room)),
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
        if code == close::SESSION_REVOKED || code == close::UNSUPPORTED_PROTOCOL {
            self.stop(code, reason);
        } else {
            self.schedule_reconnect(code, reason);
        }
    }

    fn schedule_reconnect(&self, code: u16, reason: &str) {
        if self.stopped.get() {
            return;
        }
        let attempt = self.attempt.get();
        self.attempt.set(attempt.saturating_add(1));
        let ceiling = (self.min_backoff * 2f64.powi(attempt.min(30) as i32)).min(self.max_backoff);
        // Full jitter: spreads the reconnects of many clients after a server restart.
        let delay = (js_sys::Math::random() * ceiling).max(1.0);
        self.emit_status(&[
            ("status", "closed".into()),
            ("code", code.into()),
            ("reason", reason.into()),
            ("retryInMs", delay.round().into()),
        ]);
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

    /// Stops for good: no reconnect.
    pub(crate) fn stop(&self, code: u16, reason: &str) {
        if self.stopped.replace(true) {
            return;
        }
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
        self.emit_status(&[
            ("status", "stopped".into()),
            ("code", code.into()),
            ("reason", reason.into()),
        ]);
    }
}

fn tracing_free_warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(&format!("tidewell realtime: {message}")));
}

impl RealtimeClient {
    /// Another handle on the same client.
    pub(crate) fn from_rt(inner: Rc<Rt>) -> Self {
        Self { inner }
    }
}

impl std::fmt::Debug for RealtimeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeClient").finish_non_exhaustive()
    }
}
