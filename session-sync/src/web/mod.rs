//! The browser half (wasm32 only): the JavaScript API of the npm package, also usable from Rust
//! front ends (Yew, Leptos, ...).

mod client;
mod cross_tab;
mod device;
mod device_session;
mod election;
mod listeners;
mod locks;
mod realtime;
mod refresh;
mod shared;
mod sync;
mod tab;
mod transport;

use js_sys::{Function, JSON, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::Error;
use crate::message::{Field, Kind, Message, Object, check_size};

pub use device::{clear_device_id, get_device_id, get_device_name, get_device_type};
pub use device_session::DeviceSessionSync;
pub(crate) use listeners::Listeners;
pub use realtime::RealtimeClient;
pub use sync::SessionSync;

#[wasm_bindgen]
extern "C" {
    /// A `SessionSyncOptions` object (its type is in the `.d.ts`); an optional trailing argument
    /// of this type is optional in TypeScript too.
    #[wasm_bindgen(typescript_type = "SessionSyncOptions")]
    pub type SessionSyncOptionsArg;

    /// A `RealtimeOptions` object (its type is in the `.d.ts`).
    #[wasm_bindgen(typescript_type = "RealtimeOptions")]
    pub type RealtimeOptionsArg;

    /// A `SubscribeOptions` object (its type is in the `.d.ts`).
    #[wasm_bindgen(typescript_type = "SubscribeOptions")]
    pub type SubscribeOptionsArg;
}

/// Type declarations the generated `.d.ts` carries beside the classes.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Calling it removes the handler it was returned for; calling it again does nothing. */
export type Unsubscribe = () => void;
/** How the tabs of one browser talk. */
export type Transport = "broadcast-channel" | "local-storage";
/** The kind of device, from its user agent. */
export type DeviceType = "desktop" | "mobile" | "tablet" | "unknown";
/** Options of `new SessionSync(channel, options)`. */
export interface SessionSyncOptions {
  /** `"auto"` (default): BroadcastChannel where the browser has it, else localStorage events. */
  transport?: "auto" | Transport;
}
/** A logout seen by this tab. */
export interface LogoutEvent {
  /** Why, as the sender put it: `"user"`, `"revoked"`, ... */
  reason: string | null;
  /** The tab that logged out; `null` when this tab learned it from the server (device revoked). */
  fromTab: string | null;
}
/** A message that was ignored, or a handler that threw: never thrown into the page. */
export interface SessionSyncError {
  /** `"malformed"`: not a message of this package; `"version"`: another package version;
   *  `"handler"`: one of your handlers threw; `"refresh"`: a background refresh step failed. */
  code: "malformed" | "version" | "handler" | "refresh";
  /** What happened, for a log. */
  message: string;
}
/** Options of `refreshOnce`. */
export interface RefreshOptions {
  /** How long the refresh function may take before it counts as failed and the lock is
   *  released (default 10000 ms). A tab that dies holding the lock releases it at once (Web
   *  Locks) or after this bound plus one second (localStorage lease). */
  timeoutMs?: number;
}
export interface SessionSync {
  /**
   * Runs `refresh` in exactly one tab at a time across the browser: the first caller refreshes
   * and broadcasts the result; tabs that called meanwhile get the same result without calling
   * `refresh`. Rejects when `refresh` rejects or times out (other waiting tabs then try).
   * The result must be JSON-serialisable.
   */
  refreshOnce<T>(refresh: () => Promise<T>, options?: RefreshOptions): Promise<T>;
}
/** Options of `new RealtimeClient(url, token, options)`. */
export interface RealtimeOptions {
  /** First reconnect delay bound (default 250 ms); it doubles up to `maxBackoffMs`, with full jitter. */
  minBackoffMs?: number;
  /** Longest reconnect delay (default 15000 ms). */
  maxBackoffMs?: number;
  /** Rooms kept while offline (subscribed again on reconnect); past it `subscribe` throws. Default 256. */
  maxRooms?: number;
  /** One WebSocket for every tab of this browser with the same origin, `channel` and URL: one
   *  tab holds it, the others use it through the cross-tab channel, another takes it over when
   *  the holder closes. Default false (true for `DeviceSessionSync`). */
  shared?: boolean;
  /** The tabs that share a connection (default `"default"`; `DeviceSessionSync`: its
   *  `SessionSync`'s channel). */
  channel?: string;
}
/** Options of `RealtimeClient.subscribe`. */
export interface SubscribeOptions {
  /** A position from an earlier event (`{ epoch, offset }` of a `RealtimeEvent`): when this tab
   *  joins the room, the server replays what followed it (or reports a `gap`). */
  since?: { epoch: string; offset: number };
}
/** One event from the server. */
export interface RealtimeEvent {
  room: string;
  /** The room's history epoch (with `offset`, a position to pass as `since`). */
  epoch: string;
  offset: number;
  /** The Tidewell event envelope: `{ id, type, version, source, time, payload, ... }`. */
  event: { id: string; type: string; payload: unknown; [field: string]: unknown };
}
/** The connection's state changes. */
export type RealtimeStatus =
  | { status: "connecting"; attempt: number }
  | { status: "open"; connectionId: string }
  | { status: "closed"; code: number; reason: string; retryInMs: number }
  | { status: "gap"; room: string }
  /** Shared mode: `tabId` holds the connection now (`self`: this tab). */
  | { status: "holder"; tabId: string; self: boolean }
  | { status: "error"; code: string; message: string }
  | { status: "stopped"; code: number; reason: string };
"#;

/// Milliseconds since the Unix epoch (this tab's clock).
pub(crate) fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// 16 random bytes from `crypto.getRandomValues` (`Math.random` where it is missing).
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let from_crypto = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
    if !from_crypto {
        for b in &mut bytes {
            // Truncation intended: one random byte.
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    bytes
}

/// A random UUID v4.
pub(crate) fn random_id() -> String {
    crate::device::uuid_v4(random_bytes())
}

/// A future resolved after `ms` milliseconds.
pub(crate) async fn sleep(ms: f64) {
    let promise = Promise::new(&mut |resolve, _reject| {
        if let Some(w) = web_sys::window() {
            // Truncation intended: whole milliseconds.
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        } else {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    // ok to ignore: the timer promise never rejects
    let _ = JsFuture::from(promise).await;
}

/// The page's `localStorage`, if the browser gives it (private modes and sandboxed frames may not).
pub(crate) fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The lease record stored under `key`, if it is one.
pub(crate) fn stored_lease(storage: &web_sys::Storage, key: &str) -> Option<crate::lease::Lease> {
    crate::lease::Lease::decode(&storage.get_item(key).ok().flatten()?)
}

/// Whether the global object has a property `name` that is not undefined.
pub(crate) fn has_global(name: &str) -> bool {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str(name))
        .is_ok_and(|v| !v.is_undefined() && !v.is_null())
}

/// A JavaScript `Error` for one of ours.
pub(crate) fn js_error(e: &Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// Text for a thrown JavaScript value: an `Error`'s message, else `String(value)`.
pub(crate) fn describe_js(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    value
        .as_string()
        .unwrap_or_else(|| String::from(js_sys::JsString::from(value.clone())))
}

/// A message as JSON text, by the browser's `JSON.stringify` (no JSON code in the `.wasm`).
pub(crate) fn encode(message: &Message<JsValue>) -> Result<String, Error> {
    let payload = |v: &JsValue| {
        if v.is_undefined() || v.is_function() || v.is_symbol() {
            Err(Error::InvalidArgument(
                "the value is not JSON-serialisable (undefined, a function or a symbol)".into(),
            ))
        } else {
            Ok(v.clone())
        }
    };
    let mut fields: Vec<(&str, JsValue)> = vec![
        // Versions are small integers.
        ("v", JsValue::from_f64(message.v as f64)),
        ("id", JsValue::from_str(&message.id)),
        ("tab", JsValue::from_str(&message.tab)),
        ("type", JsValue::from_str(message.kind.name())),
    ];
    match &message.kind {
        Kind::Logout { reason, session } => {
            for (k, v) in [("reason", reason), ("session", session)] {
                if let Some(v) = v {
                    fields.push((k, JsValue::from_str(v)));
                }
            }
        }
        Kind::AuthState { state } => fields.push(("state", payload(state)?)),
        Kind::TokenRefresh { tokens } => fields.push(("tokens", payload(tokens)?)),
        Kind::RefreshFailed { error } => fields.push(("error", JsValue::from_str(error))),
    }
    let text = JSON::stringify(&object(&fields))
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "the value is not JSON-serialisable: {}",
                describe_js(&e)
            ))
        })?
        .as_string()
        .ok_or_else(|| Error::InvalidArgument("the value is not JSON-serialisable".into()))?;
    check_size(&text)?;
    Ok(text)
}

/// Parses and validates a message with the browser's `JSON.parse`.
pub(crate) fn decode(text: &str) -> Result<Message<JsValue>, Error> {
    if text.len() > crate::message::MAX_MESSAGE_BYTES {
        return Err(Error::Malformed(format!(
            "{} bytes, over the 64 KiB limit",
            text.len()
        )));
    }
    let value = JSON::parse(text)
        .map_err(|e| Error::Malformed(format!("not JSON: {}", describe_js(&e))))?;
    if !value.is_object() || js_sys::Array::is_array(&value) {
        return Err(Error::Malformed("not a JSON object".into()));
    }
    Message::from_object(&JsObject(value))
}

/// A parsed JSON object, read through `Reflect`.
pub(crate) struct JsObject(pub(crate) JsValue);

impl Object for JsObject {
    type Raw = JsValue;

    fn keys(&self) -> Vec<String> {
        self.0
            .dyn_ref::<js_sys::Object>()
            .map(|o| {
                js_sys::Object::keys(o)
                    .iter()
                    .filter_map(|k| k.as_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn field(&self, key: &str) -> Field<JsValue> {
        let Some(v) = self.raw(key) else {
            return Field::Absent;
        };
        if v.is_null() {
            return Field::Null;
        }
        if let Some(s) = v.as_string() {
            return Field::Str(s);
        }
        match v.as_f64() {
            // Exact integers only (2^53: JavaScript's safe range).
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_992.0 => {
                Field::Uint(n as u64)
            }
            _ => Field::Other(v),
        }
    }

    fn raw(&self, key: &str) -> Option<JsValue> {
        // Own properties only: `JSON.parse` makes nothing else, and the prototype's are not data.
        let has = self
            .0
            .dyn_ref::<js_sys::Object>()
            .is_some_and(|o| js_sys::Object::has_own(o, &JsValue::from_str(key)));
        if !has {
            return None;
        }
        js_sys::Reflect::get(&self.0, &JsValue::from_str(key)).ok()
    }
}

/// An object from key/value pairs.
pub(crate) fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        // ok to ignore: setting a property on a fresh plain object cannot fail
        let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// A JavaScript function that runs `f` once, however many times it is called.
pub(crate) fn once_fn(f: impl FnOnce() + 'static) -> Function {
    let mut f = Some(f);
    Closure::<dyn FnMut()>::new(move || {
        if let Some(f) = f.take() {
            f();
        }
    })
    .into_js_value()
    .unchecked_into()
}

/// Reads an optional number option.
pub(crate) fn number_option(options: &JsValue, name: &str) -> Result<Option<f64>, Error> {
    if options.is_undefined() || options.is_null() {
        return Ok(None);
    }
    let v = js_sys::Reflect::get(options, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
    if v.is_undefined() {
        return Ok(None);
    }
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
        _ => Err(Error::InvalidArgument(format!(
            "option `{name}` must be a non-negative number"
        ))),
    }
}
