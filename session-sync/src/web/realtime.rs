//! `RealtimeClient`: the Tidewell WebSocket protocol (docs/protocol.md) in the browser, with
//! reconnects (exponential backoff, full jitter), re-subscription with `since` so that missed
//! events are replayed, and de-duplication by room offset and event id.
//!
//! The state behind it is `client`'s; in the shared mode (`shared`, `cross_tab`) one tab holds
//! the socket for every tab of the browser.

use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::client::Rt;
use super::{JsObject, js_error};
use crate::Error;
use crate::interest::Since;
use crate::message::{Field, Object as _};

/// A WebSocket client of a Tidewell server.
///
/// ```js
/// const rt = new RealtimeClient("wss://example.com/ws", accessToken, { shared: true });
/// rt.onStatus((s) => console.log(s.status));
/// const off = rt.subscribe("payment:42", ({ event }) => render(event.payload));
/// ```
///
/// Rooms subscribed while offline are kept (up to `maxRooms`) and subscribed on the next
/// connection; every room is subscribed again after a reconnect with the last position seen, so
/// the server replays what was missed (or reports a `gap`). The client stops for good, without
/// reconnecting, when the server closes with 4001 (session revoked) or 4002 (protocol version).
///
/// With `shared: true` the tabs of the browser (same origin, `channel` and URL) share one
/// WebSocket: one tab holds it, the others subscribe and receive through it, and another takes it
/// over when the holder closes; each tab's API works as with its own connection.
#[wasm_bindgen]
pub struct RealtimeClient {
    inner: Rc<Rt>,
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
        Self::open(url, token, options.map(JsValue::from).as_ref(), None).map_err(|e| js_error(&e))
    }

    /// Joins `room` (now, or on the next connection when offline) and calls `handler` with
    /// each of its events. The returned function removes the handler, and leaves the room when
    /// it was the last one. `options.since` (a position from an earlier event) replays what
    /// followed it when this tab joins the room.
    #[wasm_bindgen(unchecked_return_type = "Unsubscribe")]
    pub fn subscribe(
        &self,
        room: String,
        #[wasm_bindgen(unchecked_param_type = "(event: RealtimeEvent) => void")] handler: Function,
        options: Option<super::SubscribeOptionsArg>,
    ) -> Result<Function, JsValue> {
        let since = options
            .map(JsValue::from)
            .as_ref()
            .map(since_option)
            .transpose()
            .map_err(|e| js_error(&e))?
            .flatten();
        self.inner
            .subscribe(room, handler, since)
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

    /// The token for the next connection (the current one keeps its own). In the shared mode
    /// every tab learns it, so the tab holding the connection next uses the newest token.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: String) {
        self.inner.set_token(token, super::now_ms(), true);
    }

    /// Whether the connection (this tab's, or the holder's in the shared mode) is open.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.inner.connected()
    }

    /// Whether this tab holds the WebSocket (always true without the shared mode).
    #[wasm_bindgen(getter)]
    pub fn holding(&self) -> bool {
        self.inner.holding()
    }

    /// Closes this tab's client for good; in the shared mode the other tabs carry on (one of
    /// them takes the connection over if this tab held it).
    pub fn close(&self) {
        self.inner.stop(1000, "closed by the client", false);
    }
}

/// Reads `options.since`: `{ epoch: string, offset: number }`.
fn since_option(options: &JsValue) -> Result<Option<Since>, Error> {
    let since = js_sys::Reflect::get(options, &JsValue::from_str("since")).unwrap_or_default();
    if since.is_undefined() || since.is_null() {
        return Ok(None);
    }
    let o = JsObject(since);
    match (o.field("epoch"), o.field("offset")) {
        (Field::Str(epoch), Field::Uint(offset)) => Ok(Some(Since { epoch, offset })),
        _ => Err(Error::InvalidArgument(
            "`since` must be { epoch: string, offset: number }, as in a RealtimeEvent".into(),
        )),
    }
}

impl RealtimeClient {
    /// The shared state, for `DeviceSessionSync`.
    pub(crate) fn rt(&self) -> Rc<Rt> {
        Rc::clone(&self.inner)
    }

    /// A client started on `url`: its own connection, or the shared one (options `shared` and
    /// `channel`, `default_channel` when `shared` is not given: `DeviceSessionSync`'s default).
    pub(crate) fn open(
        url: String,
        token: String,
        options: Option<&JsValue>,
        default_channel: Option<&str>,
    ) -> Result<Self, Error> {
        let options = options.cloned().unwrap_or(JsValue::UNDEFINED);
        let get = |k: &str| {
            if options.is_object() {
                js_sys::Reflect::get(&options, &JsValue::from_str(k)).unwrap_or_default()
            } else {
                JsValue::UNDEFINED
            }
        };
        let shared = match get("shared") {
            v if v.is_undefined() => default_channel.is_some(),
            v => v.as_bool().ok_or_else(|| {
                Error::InvalidArgument("option `shared` must be a boolean".into())
            })?,
        };
        let channel = match get("channel") {
            v if v.is_undefined() => default_channel.unwrap_or("default").to_owned(),
            v => v
                .as_string()
                .filter(|c| !c.is_empty() && c.len() <= 128)
                .ok_or_else(|| {
                    Error::InvalidArgument("option `channel` must be 1 to 128 characters".into())
                })?,
        };
        let inner = Rt::new(url, token, &options, shared.then_some(channel))?;
        inner.start()?;
        Ok(Self { inner })
    }
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
