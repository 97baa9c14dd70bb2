//! `SessionSync`: logout, auth state and token refresh across the tabs of one browser.

use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::js_error;
use super::tab::{Listen, TabState};
use super::transport;
use crate::Error;
use crate::message::Kind;

/// Cross-tab session sync on one channel.
///
/// ```js
/// const sync = new SessionSync("my-app");
/// const off = sync.onLogout(({ reason }) => location.assign("/login"));
/// sync.onError((e) => console.warn("session-sync:", e.code, e.message));
/// sync.broadcastLogout("user");        // every other tab's onLogout runs; this tab's does not
/// const tokens = await sync.refreshOnce(() => fetch("/api/auth/refresh", { method: "POST" }).then((r) => r.json()));
/// ```
#[wasm_bindgen]
pub struct SessionSync {
    inner: Rc<TabState>,
}

#[wasm_bindgen]
impl SessionSync {
    /// Joins channel `channel` (default `"default"`): tabs of the same origin on the same
    /// channel see each other's messages. Throws when the options are invalid or the browser
    /// has neither `BroadcastChannel` nor `localStorage`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        channel: Option<String>,
        options: Option<super::SessionSyncOptionsArg>,
    ) -> Result<SessionSync, JsValue> {
        let channel = channel.unwrap_or_else(|| "default".into());
        if channel.is_empty() || channel.len() > 128 {
            return Err(js_error(&Error::InvalidArgument(
                "the channel name must be 1 to 128 characters".into(),
            )));
        }
        let wanted = options
            .as_ref()
            .and_then(|o| js_sys::Reflect::get(o, &JsValue::from_str("transport")).ok())
            .filter(|v| !v.is_undefined())
            .map(|v| {
                v.as_string().ok_or_else(|| {
                    Error::InvalidArgument("option `transport` must be a string".into())
                })
            })
            .transpose()
            .map_err(|e| js_error(&e))?
            .unwrap_or_else(|| "auto".into());
        let kind = transport::Kind::choose(&wanted).map_err(|e| js_error(&e))?;
        let inner = TabState::open(channel, kind).map_err(|e| js_error(&e))?;
        Ok(SessionSync { inner })
    }

    /// This tab's id (random per page load).
    #[wasm_bindgen(getter, js_name = tabId)]
    pub fn tab_id(&self) -> String {
        self.inner.tab_id().to_owned()
    }

    /// The channel name.
    #[wasm_bindgen(getter)]
    pub fn channel(&self) -> String {
        self.inner.channel().to_owned()
    }

    /// The transport in use.
    #[wasm_bindgen(getter, unchecked_return_type = "Transport")]
    pub fn transport(&self) -> String {
        self.inner.transport_kind().as_str().into()
    }

    /// Calls `handler` when another tab logs out (or this device is revoked).
    #[wasm_bindgen(js_name = onLogout, unchecked_return_type = "Unsubscribe")]
    pub fn on_logout(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: LogoutEvent) => void")] handler: Function,
    ) -> Function {
        self.inner.subscribe(Listen::Logout, handler)
    }

    /// Calls `handler` with the state another tab broadcast.
    #[wasm_bindgen(js_name = onAuthState, unchecked_return_type = "Unsubscribe")]
    pub fn on_auth_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: unknown, fromTab: string) => void")]
        handler: Function,
    ) -> Function {
        self.inner.subscribe(Listen::AuthState, handler)
    }

    /// Calls `handler` with the tokens another tab refreshed.
    #[wasm_bindgen(js_name = onTokenRefresh, unchecked_return_type = "Unsubscribe")]
    pub fn on_token_refresh(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(tokens: unknown, fromTab: string) => void")]
        handler: Function,
    ) -> Function {
        self.inner.subscribe(Listen::TokenRefresh, handler)
    }

    /// Calls `handler` for each message ignored (malformed, another version) and each error a
    /// handler threw. Without an `onError` handler they go to `console.warn`.
    #[wasm_bindgen(js_name = onError, unchecked_return_type = "Unsubscribe")]
    pub fn on_error(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(error: SessionSyncError) => void")]
        handler: Function,
    ) -> Function {
        self.inner.subscribe(Listen::Errors, handler)
    }

    /// Tells every other tab the user logged out; their `onLogout` handlers run, this tab's do not.
    #[wasm_bindgen(js_name = broadcastLogout)]
    pub fn broadcast_logout(&self, reason: Option<String>) -> Result<(), JsValue> {
        self.inner
            .broadcast(Kind::Logout {
                reason,
                session: None,
            })
            .map_err(|e| js_error(&e))
    }

    /// Sends `state` (JSON-serialisable, at most 64 KiB as JSON) to every other tab's
    /// `onAuthState`.
    #[wasm_bindgen(js_name = broadcastAuthState)]
    pub fn broadcast_auth_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "unknown")] state: JsValue,
    ) -> Result<(), JsValue> {
        self.inner
            .broadcast(Kind::AuthState { state })
            .map_err(|e| js_error(&e))
    }

    /// Sends `tokens` (JSON-serialisable) to every other tab's `onTokenRefresh`; a tab waiting
    /// in `refreshOnce` takes them as its result.
    #[wasm_bindgen(js_name = broadcastTokenRefresh)]
    pub fn broadcast_token_refresh(
        &self,
        #[wasm_bindgen(unchecked_param_type = "unknown")] tokens: JsValue,
    ) -> Result<(), JsValue> {
        self.inner
            .broadcast(Kind::TokenRefresh {
                tokens: tokens.clone(),
            })
            .map_err(|e| js_error(&e))?;
        self.inner.store_tokens(tokens);
        Ok(())
    }

    /// See the `SessionSync` interface in the `.d.ts`.
    #[wasm_bindgen(js_name = refreshOnce, skip_typescript)]
    pub fn refresh_once(&self, refresh: Function, options: JsValue) -> js_sys::Promise {
        super::refresh::refresh_once(Rc::clone(&self.inner), refresh, &options)
    }

    /// Stops listening and drops every handler; later broadcasts throw.
    pub fn destroy(&self) {
        self.inner.destroy();
    }
}

impl SessionSync {
    /// The shared state, for `DeviceSessionSync`.
    pub(crate) fn inner(&self) -> Rc<TabState> {
        Rc::clone(&self.inner)
    }
}

impl std::fmt::Debug for SessionSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSync").finish_non_exhaustive()
    }
}
