//! `SessionSync`: logout, auth state and token refresh across the tabs of one browser.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::transport::{self, Transport};
use super::{Listeners, decode, encode, js_error, object, once_fn, random_id};
use crate::Error;
use crate::message::{Kind, Message};

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
    inner: Rc<Inner>,
}

/// The state a `SessionSync` shares with its transport's listener and with `refreshOnce`.
pub(crate) struct Inner {
    pub(crate) channel: String,
    pub(crate) tab_id: String,
    kind: transport::Kind,
    transport: RefCell<Option<Transport>>,
    logout: Listeners,
    auth_state: Listeners,
    token_refresh: Listeners,
    errors: Listeners,
    /// The last tokens this tab saw (received, or refreshed here), with their sequence number.
    last_tokens: RefCell<Option<(u64, JsValue)>>,
    /// Counts the tokens seen; `refreshOnce` notes it when it starts.
    token_seq: Cell<u64>,
    /// The refresh running in this tab, shared by every caller of `refreshOnce` meanwhile.
    pub(crate) in_flight: RefCell<Option<js_sys::Promise>>,
    /// The session ids whose revocation this tab already handled.
    revoked: RefCell<Vec<String>>,
    destroyed: Cell<bool>,
}

#[wasm_bindgen]
impl SessionSync {
    /// Joins channel `channel` (default `"default"`): tabs of the same origin on the same
    /// channel see each other's messages. Throws when the options are invalid or the browser
    /// has neither `BroadcastChannel` nor `localStorage`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        channel: Option<String>,
        #[wasm_bindgen(unchecked_param_type = "SessionSyncOptions")] options: Option<
            js_sys::Object,
        >,
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
        let inner = Rc::new(Inner {
            channel,
            tab_id: random_id(),
            kind,
            transport: RefCell::new(None),
            logout: Listeners::default(),
            auth_state: Listeners::default(),
            token_refresh: Listeners::default(),
            errors: Listeners::default(),
            last_tokens: RefCell::new(None),
            token_seq: Cell::new(0),
            in_flight: RefCell::new(None),
            revoked: RefCell::new(Vec::new()),
            destroyed: Cell::new(false),
        });
        let weak: Weak<Inner> = Rc::downgrade(&inner);
        let transport = Transport::open(kind, &inner.channel, move |data| {
            if let Some(inner) = weak.upgrade() {
                inner.receive(&data);
            }
        })
        .map_err(|e| js_error(&e))?;
        *inner.transport.borrow_mut() = Some(transport);
        Ok(SessionSync { inner })
    }

    /// This tab's id (random per page load).
    #[wasm_bindgen(getter, js_name = tabId)]
    pub fn tab_id(&self) -> String {
        self.inner.tab_id.clone()
    }

    /// The channel name.
    #[wasm_bindgen(getter)]
    pub fn channel(&self) -> String {
        self.inner.channel.clone()
    }

    /// The transport in use.
    #[wasm_bindgen(getter, unchecked_return_type = "Transport")]
    pub fn transport(&self) -> String {
        self.inner.kind.as_str().into()
    }

    /// Calls `handler` when another tab logs out (or this device is revoked).
    #[wasm_bindgen(js_name = onLogout, unchecked_return_type = "Unsubscribe")]
    pub fn on_logout(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: LogoutEvent) => void")] handler: Function,
    ) -> Function {
        self.inner.subscribe(|i| &i.logout, handler)
    }

    /// Calls `handler` with the state another tab broadcast.
    #[wasm_bindgen(js_name = onAuthState, unchecked_return_type = "Unsubscribe")]
    pub fn on_auth_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: unknown, fromTab: string) => void")]
        handler: Function,
    ) -> Function {
        self.inner.subscribe(|i| &i.auth_state, handler)
    }

    /// Calls `handler` with the tokens another tab refreshed.
    #[wasm_bindgen(js_name = onTokenRefresh, unchecked_return_type = "Unsubscribe")]
    pub fn on_token_refresh(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(tokens: unknown, fromTab: string) => void")]
        handler: Function,
    ) -> Function {
        self.inner.subscribe(|i| &i.token_refresh, handler)
    }

    /// Calls `handler` for each message ignored (malformed, another version) and each error a
    /// handler threw. Without an `onError` handler they go to `console.warn`.
    #[wasm_bindgen(js_name = onError, unchecked_return_type = "Unsubscribe")]
    pub fn on_error(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(error: SessionSyncError) => void")]
        handler: Function,
    ) -> Function {
        self.inner.subscribe(|i| &i.errors, handler)
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
    pub(crate) fn inner(&self) -> Rc<Inner> {
        Rc::clone(&self.inner)
    }
}

impl Inner {
    fn subscribe(self: &Rc<Self>, list: fn(&Self) -> &Listeners, handler: Function) -> Function {
        let id = list(self).add(handler);
        let weak = Rc::downgrade(self);
        once_fn(move || {
            if let Some(inner) = weak.upgrade() {
                list(&inner).remove(id);
            }
        })
    }

    /// Sends one message to the other tabs.
    pub(crate) fn broadcast(&self, kind: Kind<JsValue>) -> Result<(), Error> {
        if self.destroyed.get() {
            return Err(Error::InvalidArgument(
                "this SessionSync was destroyed; make a new one".into(),
            ));
        }
        let text = encode(&Message::new(random_id(), self.tab_id.clone(), kind))?;
        match self.transport.borrow().as_ref() {
            Some(t) => t.send(&text),
            None => Err(Error::InvalidArgument(
                "this SessionSync was destroyed".into(),
            )),
        }
    }

    /// Remembers tokens refreshed here or received.
    pub(crate) fn store_tokens(&self, tokens: JsValue) {
        let seq = self.token_seq.get() + 1;
        self.token_seq.set(seq);
        *self.last_tokens.borrow_mut() = Some((seq, tokens));
    }

    /// Where the token sequence stands now (for [`tokens_since`](Self::tokens_since)).
    pub(crate) fn token_mark(&self) -> u64 {
        self.token_seq.get()
    }

    /// Tokens seen after `mark` was taken.
    pub(crate) fn tokens_since(&self, mark: u64) -> Option<JsValue> {
        match &*self.last_tokens.borrow() {
            Some((seq, tokens)) if *seq > mark => Some(tokens.clone()),
            _ => None,
        }
    }

    /// The device's session `session` was revoked: this tab's `onLogout` handlers run and every
    /// other tab is told; a second report of the same session does nothing.
    pub(crate) fn revoked(&self, session: &str) {
        if !self.first_revocation(session) {
            return;
        }
        self.dispatch_logout(Some("revoked".into()), JsValue::NULL);
        if let Err(e) = self.broadcast(Kind::Logout {
            reason: Some("revoked".into()),
            session: Some(session.to_owned()),
        }) {
            self.report("refresh", &e.to_string());
        }
    }

    fn first_revocation(&self, session: &str) -> bool {
        let mut seen = self.revoked.borrow_mut();
        if seen.iter().any(|s| s == session) {
            return false;
        }
        if seen.len() >= 64 {
            seen.remove(0);
        }
        seen.push(session.to_owned());
        true
    }

    fn receive(&self, data: &JsValue) {
        if self.destroyed.get() {
            return;
        }
        let Some(text) = data.as_string() else {
            self.report(
                "malformed",
                "ignored a message that is not a string (not sent by this package)",
            );
            return;
        };
        let message = match decode(&text) {
            Ok(m) => m,
            Err(e @ Error::Version { .. }) => return self.report("version", &e.to_string()),
            Err(e) => return self.report("malformed", &e.to_string()),
        };
        if message.tab == self.tab_id {
            return;
        }
        let from = JsValue::from_str(&message.tab);
        match message.kind {
            Kind::Logout { reason, session } => {
                if session
                    .as_deref()
                    .is_some_and(|s| !self.first_revocation(s))
                {
                    return;
                }
                self.dispatch_logout(reason, from);
            }
            Kind::AuthState { state } => {
                self.auth_state
                    .call(&[state, from], |e| self.handler_threw(&e));
            }
            Kind::TokenRefresh { tokens } => {
                self.store_tokens(tokens.clone());
                self.token_refresh
                    .call(&[tokens, from], |e| self.handler_threw(&e));
            }
            // Waiting tabs notice the lease is free and try themselves.
            Kind::RefreshFailed { .. } => {}
        }
    }

    fn dispatch_logout(&self, reason: Option<String>, from: JsValue) {
        let event = object(&[
            (
                "reason",
                reason.map_or(JsValue::NULL, |r| JsValue::from_str(&r)),
            ),
            ("fromTab", from),
        ]);
        self.logout.call(&[event], |e| self.handler_threw(&e));
    }

    fn handler_threw(&self, error: &JsValue) {
        self.report(
            "handler",
            &format!("a handler threw: {}", super::describe_js(error)),
        );
    }

    /// Reports to the `onError` handlers (or `console.warn`); never throws.
    pub(crate) fn report(&self, code: &str, message: &str) {
        if self.errors.is_empty() {
            web_sys::console::warn_2(
                &JsValue::from_str("tidewell session-sync:"),
                &JsValue::from_str(message),
            );
            return;
        }
        let event = object(&[
            ("code", JsValue::from_str(code)),
            ("message", JsValue::from_str(message)),
        ]);
        self.errors.call(&[event], |e| {
            web_sys::console::error_2(
                &JsValue::from_str("tidewell session-sync: onError handler threw:"),
                &e,
            );
        });
    }

    fn destroy(&self) {
        self.destroyed.set(true);
        // Dropping the transport closes the channel and removes the listener.
        self.transport.borrow_mut().take();
        for l in [
            &self.logout,
            &self.auth_state,
            &self.token_refresh,
            &self.errors,
        ] {
            l.clear();
        }
    }
}

impl std::fmt::Debug for SessionSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSync").finish_non_exhaustive()
    }
}
