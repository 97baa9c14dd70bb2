//! `DeviceSessionSync`: when this device's session is revoked (from another device, or by an
//! administrator), every tab of this browser logs out.

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::js_error;
use super::realtime::RealtimeClient;
use super::sync::SessionSync;
use tidewell_protocol::close;

/// Listens on the server's WebSocket for `auth.session.revoked` naming this device's session
/// (the server puts it in the room `device:<id>` this connection joins by itself), and for the
/// close code 4001; either one runs `onLogout` in this tab with reason `"revoked"` and tells
/// every other tab, once per revocation.
///
/// ```js
/// const sync = new SessionSync("my-app");
/// const devices = new DeviceSessionSync(sync, "wss://example.com/ws", accessToken, sessionId);
/// sync.onLogout(({ reason }) => location.assign(reason === "revoked" ? "/login?revoked" : "/login"));
/// ```
#[wasm_bindgen]
pub struct DeviceSessionSync {
    client: RealtimeClient,
}

#[wasm_bindgen]
impl DeviceSessionSync {
    /// Connects to `url` with `token`, watching for the revocation of `sessionId` (the `sid` of
    /// the token).
    #[wasm_bindgen(constructor)]
    pub fn new(
        sync: &SessionSync,
        url: String,
        token: String,
        #[wasm_bindgen(js_name = sessionId)] session_id: String,
        options: Option<super::RealtimeOptionsArg>,
    ) -> Result<DeviceSessionSync, JsValue> {
        if session_id.is_empty() {
            return Err(js_error(&crate::Error::InvalidArgument(
                "sessionId must not be empty: pass the `sid` claim of the token".into(),
            )));
        }
        let options = options.map(JsValue::from);
        let inner = sync.inner();
        let client = RealtimeClient::open(url, token, options.as_ref(), Some(inner.channel()))
            .map_err(|e| js_error(&e))?;
        let rt = client.rt();
        let sid = session_id.clone();
        let on_event = Closure::<dyn FnMut(JsValue)>::new(move |message: JsValue| {
            let field = |v: &JsValue, k: &str| {
                js_sys::Reflect::get(v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
            };
            let event = field(&message, "event");
            if field(&event, "type").as_string().as_deref() != Some("auth.session.revoked") {
                return;
            }
            let payload = field(&event, "payload");
            if field(&payload, "session_id").as_string().as_deref() == Some(sid.as_str()) {
                inner.revoked(&sid);
            }
        });
        rt.events.add(on_event.into_js_value().unchecked_into());
        let inner = sync.inner();
        let weak_rt = Rc::downgrade(&rt);
        let on_status = Closure::<dyn FnMut(JsValue)>::new(move |status: JsValue| {
            let get = |k: &str| {
                js_sys::Reflect::get(&status, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
            };
            let stopped = get("status").as_string().as_deref() == Some("stopped");
            let code = get("code").as_f64();
            if stopped && code == Some(f64::from(close::SESSION_REVOKED)) {
                inner.revoked(&session_id);
                if let Some(rt) = weak_rt.upgrade() {
                    rt.stop(close::SESSION_REVOKED, "session revoked", true);
                }
            }
        });
        rt.status.add(on_status.into_js_value().unchecked_into());
        Ok(DeviceSessionSync { client })
    }

    /// The underlying realtime client (to subscribe to other rooms on the same connection).
    #[wasm_bindgen(getter)]
    pub fn client(&self) -> RealtimeClient {
        RealtimeClient::from_rt(self.client.rt())
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.client.close();
    }
}

impl std::fmt::Debug for DeviceSessionSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSessionSync").finish_non_exhaustive()
    }
}
