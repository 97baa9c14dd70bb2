//! The state one tab's `SessionSync` keeps: its transport, handlers, the last tokens seen, the
//! refresh running here and the revocations already handled. `SessionSync` (the JavaScript API),
//! `refreshOnce` and `DeviceSessionSync` all work on it.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::transport::{self, Transport};
use super::{Listeners, decode, describe_js, encode, object, once_fn, random_id};
use crate::Error;
use crate::message::{Kind, Message};

/// Which handlers a subscription adds to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Listen {
    /// `onLogout`.
    Logout,
    /// `onAuthState`.
    AuthState,
    /// `onTokenRefresh`.
    TokenRefresh,
    /// `onError`.
    Errors,
}

/// The state a `SessionSync` shares with its transport's listener, `refreshOnce` and
/// `DeviceSessionSync`.
pub(crate) struct TabState {
    channel: String,
    tab_id: String,
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
    in_flight: RefCell<Option<js_sys::Promise>>,
    /// The session ids whose revocation this tab already handled.
    revoked: RefCell<Vec<String>>,
    destroyed: Cell<bool>,
}

impl TabState {
    /// Opens the tab's transport on `channel`; messages from other tabs reach this state.
    pub(crate) fn open(channel: String, kind: transport::Kind) -> Result<Rc<Self>, Error> {
        let state = Rc::new(Self {
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
        let weak: Weak<Self> = Rc::downgrade(&state);
        let transport = Transport::open(kind, &state.channel, move |data| {
            if let Some(state) = weak.upgrade() {
                state.receive(&data);
            }
        })?;
        *state.transport.borrow_mut() = Some(transport);
        Ok(state)
    }

    /// The channel name.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// This tab's id.
    pub(crate) fn tab_id(&self) -> &str {
        &self.tab_id
    }

    /// The transport in use.
    pub(crate) fn transport_kind(&self) -> transport::Kind {
        self.kind
    }

    /// The refresh running in this tab, if any (`refreshOnce` callers share it).
    pub(crate) fn refresh_in_flight(&self) -> Option<js_sys::Promise> {
        self.in_flight.borrow().clone()
    }

    /// Records the refresh now running in this tab, or (`None`) that it ended.
    pub(crate) fn set_refresh_in_flight(&self, refresh: Option<js_sys::Promise>) {
        *self.in_flight.borrow_mut() = refresh;
    }

    fn listeners(&self, which: Listen) -> &Listeners {
        match which {
            Listen::Logout => &self.logout,
            Listen::AuthState => &self.auth_state,
            Listen::TokenRefresh => &self.token_refresh,
            Listen::Errors => &self.errors,
        }
    }

    /// Adds `handler` to the `which` handlers; answers the function that removes it.
    pub(crate) fn subscribe(self: &Rc<Self>, which: Listen, handler: Function) -> Function {
        let id = self.listeners(which).add(handler);
        let weak = Rc::downgrade(self);
        once_fn(move || {
            if let Some(state) = weak.upgrade() {
                state.listeners(which).remove(id);
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
            &format!("a handler threw: {}", describe_js(error)),
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

    pub(crate) fn destroy(&self) {
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
