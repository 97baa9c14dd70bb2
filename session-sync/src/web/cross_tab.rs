//! The shared mode from the client's side: what a tab does with the other tabs' messages, when it
//! is elected or loses the lease, and when its page is hidden or shown (`shared` carries the
//! messages; their kinds are listed there).

use js_sys::{Array, JSON};
use tidewell_protocol::is_valid_room;
use wasm_bindgen::prelude::*;

use super::JsObject;
use super::client::Rt;
use super::shared::{CENSUS_MS, MAX_LISTED_ROOMS, Replay, Shared, Tab};
use crate::interest::Since;
use crate::message::{Field, Object as _};

impl Tab for Rt {
    fn message(&self, text: &str) {
        self.cross_tab(text);
    }

    fn elected(&self, holder: bool) {
        if holder {
            self.promoted();
        } else {
            self.demoted();
        }
    }

    fn page_visible(&self, visible: bool) {
        Rt::page_visible(self, visible);
    }
}

impl Rt {
    fn shared(&self) -> Option<&Shared> {
        self.shared.as_ref()
    }

    /// This tab was elected: it opens the connection for every tab.
    pub(crate) fn promoted(&self) {
        let Some(shared) = self.shared() else { return };
        if self.stopped.get() {
            return;
        }
        *shared.holder.borrow_mut() = Some(shared.tab.clone());
        shared.set_open(None);
        shared.interests.borrow_mut().clear();
        self.emit_status(
            &[
                ("status", "holder".into()),
                ("tabId", shared.tab.as_str().into()),
                ("self", true.into()),
            ],
            false,
        );
        // The others answer with their rooms and positions.
        shared.send_census();
        let weak = self.weak();
        let tick = Closure::<dyn FnMut()>::new(move || {
            if let Some(rt) = weak.upgrade()
                && let Some(shared) = rt.shared()
            {
                if shared.interests.borrow_mut().census() {
                    rt.reconcile();
                }
                shared.send_census();
            }
        });
        if let Some(w) = web_sys::window()
            && let Ok(handle) = w.set_interval_with_callback_and_timeout_and_arguments_0(
                tick.as_ref().unchecked_ref(),
                CENSUS_MS,
            )
        {
            *shared.census.borrow_mut() = Some((handle, tick));
        }
        self.attempt.set(0);
        self.connect();
    }

    /// This tab lost the lease (another tab holds the connection now).
    pub(crate) fn demoted(&self) {
        let Some(shared) = self.shared() else { return };
        self.drop_socket();
        shared.stop_census();
        shared.interests.borrow_mut().clear();
        *shared.holder.borrow_mut() = None;
        shared.set_open(None);
        self.announce(true, Replay::None);
    }

    /// The page was hidden or frozen (`visible` false), or shown or resumed again.
    fn page_visible(&self, visible: bool) {
        let Some(shared) = self.shared() else { return };
        if self.stopped.get() {
            return;
        }
        if visible {
            self.announce(true, Replay::None);
            shared.election.join();
            return;
        }
        if shared.is_holder() {
            self.drop_socket();
            shared.stop_census();
            shared.send("x", "");
        } else {
            shared.send("b", "");
        }
        shared.election.leave();
        shared.interests.borrow_mut().clear();
        *shared.holder.borrow_mut() = None;
        shared.set_open(None);
    }

    /// `from` holds the connection; a new holder hears this tab's rooms and positions.
    fn heard_holder(&self, shared: &Shared, from: &str) -> bool {
        if shared.holder.borrow().as_deref() == Some(from) {
            return false;
        }
        *shared.holder.borrow_mut() = Some(from.to_owned());
        self.emit_status(
            &[
                ("status", "holder".into()),
                ("tabId", from.into()),
                ("self", false.into()),
            ],
            false,
        );
        self.announce(false, Replay::All);
        true
    }

    /// A message from another tab (anything else on the channel is ignored).
    pub(crate) fn cross_tab(&self, text: &str) {
        let Some(shared) = self.shared() else { return };
        let mut parts = text.splitn(4, '|');
        let (Some("v1"), Some(kind), Some(from), Some(body)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if from == shared.tab || self.stopped.get() {
            return;
        }
        let holder = shared.is_holder();
        match kind {
            "f" | "a" if !holder => {
                self.heard_holder(shared, from);
                self.frame(body, Some(kind == "f"));
            }
            "s" if !holder => {
                self.heard_holder(shared, from);
                self.relayed_status(shared, body);
            }
            "h" if !holder => {
                let new = self.heard_holder(shared, from);
                if !body.is_empty() && !shared.holder_open() {
                    shared.set_open(Some(body.to_owned()));
                    self.emit_status(
                        &[("status", "open".into()), ("connectionId", body.into())],
                        false,
                    );
                }
                if !new {
                    self.announce(false, Replay::None);
                }
            }
            "x" if !holder => {
                *shared.holder.borrow_mut() = None;
                shared.set_open(None);
            }
            "r" if holder => {
                if let Some(hello) = self.room_list(shared, from, body) {
                    self.reconcile();
                    if hello {
                        shared.send_census();
                    }
                }
            }
            "b" if holder => {
                shared.interests.borrow_mut().forget(from);
                self.reconcile();
            }
            "t" => {
                let Ok(v) = JSON::parse(body) else { return };
                let o = JsObject(v);
                if let (Field::Str(token), Some(at)) =
                    (o.field("token"), o.raw("at").and_then(|a| a.as_f64()))
                {
                    self.set_token(token, at, false);
                }
            }
            _ => {}
        }
    }

    /// A status the holder relayed: this tab's `onStatus` sees it; `stopped` stops this tab.
    fn relayed_status(&self, shared: &Shared, body: &str) {
        let Some(status) = JSON::parse(body).ok().filter(JsValue::is_object) else {
            return;
        };
        let o = JsObject(status.clone());
        let Field::Str(name) = o.field("status") else {
            return;
        };
        if name != "error" {
            shared.set_open(None);
        }
        if name == "stopped" {
            let code = match o.field("code") {
                Field::Uint(c) => u16::try_from(c).unwrap_or(1000),
                _ => 1000,
            };
            let reason = match o.field("reason") {
                Field::Str(r) => r,
                _ => String::new(),
            };
            return self.stop(code, &reason, false);
        }
        self.status.call(&[status], |e| {
            web_sys::console::error_2(
                &JsValue::from_str("tidewell realtime: onStatus handler threw:"),
                &e,
            );
        });
    }

    /// Holder: records a tab's room list; answers whether it was a hello (`None` if unreadable).
    fn room_list(&self, shared: &Shared, from: &str, body: &str) -> Option<bool> {
        let o = JsObject(JSON::parse(body).ok().filter(JsValue::is_object)?);
        let hello = o.raw("hello").and_then(|h| h.as_bool()).unwrap_or(false);
        let list: Array = o.raw("rooms")?.dyn_into().ok()?;
        let mut rooms = Vec::new();
        for entry in list.iter().take(MAX_LISTED_ROOMS) {
            let Ok(entry) = entry.dyn_into::<Array>() else {
                continue;
            };
            let Some(room) = entry.get(0).as_string().filter(|r| is_valid_room(r)) else {
                continue;
            };
            let epoch = entry.get(1).as_string().filter(|e| e.len() <= 128);
            let offset = entry
                .get(2)
                .as_f64()
                .filter(|o| *o >= 0.0 && o.fract() == 0.0);
            if let (true, Some(epoch), Some(offset)) = (entry.get(3).is_truthy(), epoch, offset) {
                // Truncation impossible: a whole, non-negative number.
                let asked = Since {
                    epoch,
                    offset: offset as u64,
                };
                let mut pending = self.pending.borrow_mut();
                let since = match pending.remove(&room) {
                    Some(p) => p.earliest(asked),
                    None => asked,
                };
                pending.insert(room.clone(), since);
            }
            rooms.push(room);
        }
        shared.interests.borrow_mut().announce(from, rooms);
        Some(hello)
    }
}
