//! The shared mode of `RealtimeClient`: one WebSocket per browser (origin, channel and URL),
//! held by the tab the [`Election`] picks, used by every tab.
//!
//! The holder relays every frame the server sends, as it came, to the other tabs, which read it
//! like their own socket's (so positions, de-duplication and statuses work the same); it relays
//! its connection's statuses too. The other tabs send it their whole room list when it changes,
//! when a new holder appears (with the positions to resume from: the holder subscribes with the
//! oldest, each tab drops what it has already seen), and in answer to its census every
//! [`CENSUS_MS`]; the holder keeps a room joined while any tab lists it ([`Interests`]).
//!
//! Messages between tabs are text, `v1|<kind>|<sender tab>|<body>`:
//!
//! | kind | from | body |
//! |---|---|---|
//! | `f` | holder | a server frame: an event of a room some tab asked for |
//! | `a` | holder | any other server frame (welcome, subscribed, error, events of the rooms the server joins by itself) |
//! | `s` | holder | a status of its connection, JSON |
//! | `h` | holder | census; the connection id when open, else empty |
//! | `x` | holder | it stops holding |
//! | `r` | other tab | `{"hello":bool,"rooms":[[room, epoch, offset, replay], ...]}` |
//! | `b` | other tab | it closes |
//! | `t` | any tab | `{"token":..., "at":ms}`, a newer token |

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, JSON};
use tidewell_protocol::is_valid_room;
use wasm_bindgen::prelude::*;

use super::election::Election;
use super::realtime::Rt;
use super::transport::{self, Transport};
use super::{JsObject, object, random_id};
use crate::Error;
use crate::interest::{Interests, Since};
use crate::message::{Field, Object as _};

/// How often the holder asks the other tabs for their rooms; a tab silent for two censuses is
/// forgotten (it crashed without saying goodbye).
const CENSUS_MS: i32 = 5_000;
/// How long a holder stopped by the server (session revoked) keeps the election, so that the
/// other tabs hear why before one of them could take over.
const STOP_GRACE_MS: f64 = 250.0;
/// At most this many rooms are read from one tab's list.
const MAX_LISTED_ROOMS: usize = 1_024;

/// The shared mode's state of one tab.
pub(crate) struct Shared {
    tab: String,
    channel: String,
    kind: transport::Kind,
    transport: RefCell<Option<Transport>>,
    election: Rc<Election>,
    /// The holder's record of the other tabs' rooms.
    pub(crate) interests: RefCell<Interests>,
    /// The holding tab, as last heard.
    holder: RefCell<Option<String>>,
    /// The holder's connection id while its connection is open.
    open_as: RefCell<Option<String>>,
    census: RefCell<Option<Census>>,
    page: RefCell<Vec<PageListener>>,
    rt: Weak<Rt>,
}

/// The census timer: its handle and its callback.
type Census = (i32, Closure<dyn FnMut()>);

/// A page lifecycle listener: target, event, listener.
type PageListener = (web_sys::EventTarget, &'static str, Function);

/// Which rooms a room list asks to replay from the tab's positions.
pub(crate) enum Replay<'a> {
    None,
    One(&'a str),
    All,
}

impl Shared {
    /// The shared mode on `channel` for `url`.
    pub(crate) fn new(channel: &str, url: &str, kind: transport::Kind, rt: Weak<Rt>) -> Self {
        let tab = random_id();
        let weak = rt.clone();
        let election = Election::new(format!("tidewell-realtime:{channel}:{url}"), tab.clone(), {
            move |holder| {
                if let Some(rt) = weak.upgrade() {
                    if holder { rt.promoted() } else { rt.demoted() }
                }
            }
        });
        Self {
            tab,
            channel: format!("rt:{channel}:{url}"),
            kind,
            transport: RefCell::new(None),
            election,
            interests: RefCell::new(Interests::default()),
            holder: RefCell::new(None),
            open_as: RefCell::new(None),
            census: RefCell::new(None),
            page: RefCell::new(Vec::new()),
            rt,
        }
    }

    /// Opens the channel to the other tabs, says hello and stands for election.
    pub(crate) fn start(&self, rt: &Rt) -> Result<(), Error> {
        let weak = self.rt.clone();
        let transport = Transport::open(self.kind, &self.channel, move |data| {
            if let (Some(rt), Some(text)) = (weak.upgrade(), data.as_string()) {
                rt.cross_tab(&text);
            }
        })?;
        *self.transport.borrow_mut() = Some(transport);
        self.listen_to_page();
        self.announce(rt, true, Replay::None);
        self.election.join();
        Ok(())
    }

    /// Whether this tab holds the connection.
    pub(crate) fn is_holder(&self) -> bool {
        self.election.is_holder()
    }

    /// Whether the holder's connection is open.
    pub(crate) fn holder_open(&self) -> bool {
        self.open_as.borrow().is_some()
    }

    /// The holder's connection opened (`Some(connection id)`) or closed.
    pub(crate) fn set_open(&self, connection: Option<String>) {
        *self.open_as.borrow_mut() = connection;
    }

    fn send(&self, kind: &str, body: &str) {
        if let Some(t) = self.transport.borrow().as_ref() {
            // ok to ignore: the other tabs recover through the census and the next hand-over
            let _ = t.send(&format!("v1|{kind}|{}|{body}", self.tab));
        }
    }

    /// Holder: relays a server frame.
    pub(crate) fn relay(&self, frame: &str, asked: bool) {
        self.send(if asked { "f" } else { "a" }, frame);
    }

    /// Holder: relays a status of its connection.
    pub(crate) fn send_status(&self, status: &JsValue) {
        if let Some(text) = JSON::stringify(status).ok().and_then(|t| t.as_string()) {
            self.send("s", &text);
        }
    }

    /// Tells every tab a newer token.
    pub(crate) fn send_token(&self, token: &str, at: f64) {
        let body = object(&[("token", token.into()), ("at", at.into())]);
        if let Some(text) = JSON::stringify(&body).ok().and_then(|t| t.as_string()) {
            self.send("t", &text);
        }
    }

    /// Holder: the census (and the answer to a new tab's hello).
    fn send_census(&self) {
        let open = self.open_as.borrow().clone().unwrap_or_default();
        self.send("h", &open);
    }

    /// Tells the holder this tab's rooms, with the positions to replay from for `replay`.
    pub(crate) fn announce(&self, rt: &Rt, hello: bool, replay: Replay<'_>) {
        let rooms = Array::new();
        let positions = rt.positions.borrow();
        for room in rt.room_handlers.borrow().keys() {
            let at = positions.get(room);
            let replay = match replay {
                Replay::None => false,
                Replay::One(r) => r == room,
                Replay::All => true,
            };
            rooms.push(&Array::of4(
                &room.into(),
                &at.map_or(JsValue::NULL, |p| p.epoch.as_str().into()),
                // Offsets stay far below 2^53.
                &at.map_or(JsValue::NULL, |p| (p.offset as f64).into()),
                &(replay && at.is_some()).into(),
            ));
        }
        let body = object(&[("hello", hello.into()), ("rooms", rooms.into())]);
        if let Some(text) = JSON::stringify(&body).ok().and_then(|t| t.as_string()) {
            self.send("r", &text);
        }
    }

    /// This tab stops for good: it tells the others and leaves the election (after a grace
    /// period when the server stopped it, so that the others hear it first).
    pub(crate) fn leave(&self, share: bool) {
        self.stop_census();
        for (target, event, listener) in self.page.borrow_mut().drain(..) {
            // ok to ignore: removing a listener cannot fail in a way we could act on
            let _ = target.remove_event_listener_with_callback(event, &listener);
        }
        self.send(if self.is_holder() { "x" } else { "b" }, "");
        self.transport.borrow_mut().take();
        self.interests.borrow_mut().clear();
        if share {
            let election = Rc::clone(&self.election);
            wasm_bindgen_futures::spawn_local(async move {
                super::sleep(STOP_GRACE_MS).await;
                election.leave();
            });
        } else {
            self.election.leave();
        }
    }

    fn stop_census(&self) {
        if let (Some((handle, _)), Some(w)) = (self.census.borrow_mut().take(), web_sys::window()) {
            w.clear_interval_with_handle(handle);
        }
    }

    /// Hidden or frozen pages (closing, going into the back-forward cache, frozen by the
    /// browser) give the connection up; shown or resumed ones stand for election again.
    fn listen_to_page(&self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        // `freeze` and `resume` fire on the document (read through `Reflect`: no web-sys
        // `Document` binding in the .wasm for two listeners).
        let document: web_sys::EventTarget =
            js_sys::Reflect::get(&window, &JsValue::from_str("document"))
                .ok()
                .filter(JsValue::is_object)
                .map_or_else(|| window.clone().into(), JsCast::unchecked_into);
        let targets: [(web_sys::EventTarget, &'static str, bool); 4] = [
            (window.clone().into(), "pagehide", false),
            (window.into(), "pageshow", true),
            (document.clone(), "freeze", false),
            (document, "resume", true),
        ];
        let mut page = self.page.borrow_mut();
        for (target, event, back) in targets {
            let weak = self.rt.clone();
            let listener: Function = Closure::<dyn FnMut()>::new(move || {
                if let Some(rt) = weak.upgrade() {
                    rt.page_visible(back);
                }
            })
            .into_js_value()
            .unchecked_into();
            if target
                .add_event_listener_with_callback(event, &listener)
                .is_ok()
            {
                page.push((target, event, listener));
            }
        }
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
        shared.announce(self, true, Replay::None);
    }

    /// The page was hidden or frozen (`visible` false), or shown or resumed again.
    fn page_visible(&self, visible: bool) {
        let Some(shared) = self.shared() else { return };
        if self.stopped.get() {
            return;
        }
        if visible {
            shared.announce(self, true, Replay::None);
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
        shared.announce(self, false, Replay::All);
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
                    shared.announce(self, false, Replay::None);
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
