//! The browser half (wasm32 only): the JavaScript API of the npm package, also usable from Rust
//! front ends (Yew, Leptos, ...).

mod device;
mod device_session;
mod listeners;
mod locks;
mod realtime;
mod refresh;
mod sync;
mod transport;

use js_sys::{Function, JSON, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::Error;
use crate::message::Json;

pub use device::{clear_device_id, get_device_id, get_device_name, get_device_type};
pub use device_session::DeviceSessionSync;
pub(crate) use listeners::Listeners;
pub use realtime::RealtimeClient;
pub use sync::SessionSync;

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
}
/** One event from the server. */
export interface RealtimeEvent {
  room: string;
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

/// A JavaScript value as JSON text (via `JSON.stringify`).
pub(crate) fn to_json(value: &JsValue) -> Result<Json, Error> {
    let text = JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| {
            Error::InvalidArgument(
                "the value is not JSON-serialisable (undefined, a function, or a cycle)".into(),
            )
        })?;
    Json::new(text)
}

/// JSON text as a JavaScript value (via `JSON.parse`).
pub(crate) fn from_json(value: &Json) -> JsValue {
    JSON::parse(value.get()).unwrap_or(JsValue::NULL)
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
