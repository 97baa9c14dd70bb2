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
use wasm_bindgen::prelude::*;

use super::election::Election;
use super::transport::{self, Transport};
use super::{object, random_id};
use crate::Error;
use crate::interest::{Interests, Since};

/// How often the holder asks the other tabs for their rooms; a tab silent for two censuses is
/// forgotten (it crashed without saying goodbye).
pub(crate) const CENSUS_MS: i32 = 5_000;
/// How long a holder stopped by the server (session revoked) keeps the election, so that the
/// other tabs hear why before one of them could take over.
const STOP_GRACE_MS: f64 = 250.0;
/// At most this many rooms are read from one tab's list.
pub(crate) const MAX_LISTED_ROOMS: usize = 1_024;

/// What `Shared` calls back in the tab's client (`cross_tab` implements it for the client).
pub(crate) trait Tab {
    /// A message from another tab, as sent.
    fn message(&self, text: &str);
    /// This tab was elected (`true`) or lost the lease (`false`).
    fn elected(&self, holder: bool);
    /// The page was hidden or frozen (`false`), or shown or resumed.
    fn page_visible(&self, visible: bool);
}

/// The shared mode's state of one tab.
pub(crate) struct Shared {
    /// This tab's id on the channel.
    pub(crate) tab: String,
    channel: String,
    kind: transport::Kind,
    transport: RefCell<Option<Transport>>,
    pub(crate) election: Rc<Election>,
    /// The holder's record of the other tabs' rooms.
    pub(crate) interests: RefCell<Interests>,
    /// The holding tab, as last heard.
    pub(crate) holder: RefCell<Option<String>>,
    /// The holder's connection id while its connection is open.
    open_as: RefCell<Option<String>>,
    /// The holder's census timer.
    pub(crate) census: RefCell<Option<Census>>,
    page: RefCell<Vec<PageListener>>,
    owner: Weak<dyn Tab>,
}

/// The census timer: its handle and its callback.
pub(crate) type Census = (i32, Closure<dyn FnMut()>);

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
    pub(crate) fn new(
        channel: &str,
        url: &str,
        kind: transport::Kind,
        owner: Weak<dyn Tab>,
    ) -> Self {
        let tab = random_id();
        let weak = owner.clone();
        let election = Election::new(format!("tidewell-realtime:{channel}:{url}"), tab.clone(), {
            move |holder| {
                if let Some(owner) = weak.upgrade() {
                    owner.elected(holder);
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
            owner,
        }
    }

    /// Opens the channel to the other tabs, says hello and stands for election.
    pub(crate) fn start(&self) -> Result<(), Error> {
        let weak = self.owner.clone();
        let transport = Transport::open(self.kind, &self.channel, move |data| {
            if let (Some(owner), Some(text)) = (weak.upgrade(), data.as_string()) {
                owner.message(&text);
            }
        })?;
        *self.transport.borrow_mut() = Some(transport);
        self.listen_to_page();
        // A new tab has no room yet.
        self.announce(&[], true, Replay::None);
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

    /// Sends one message of `kind` to the other tabs.
    pub(crate) fn send(&self, kind: &str, body: &str) {
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
    pub(crate) fn send_census(&self) {
        let open = self.open_as.borrow().clone().unwrap_or_default();
        self.send("h", &open);
    }

    /// Tells the holder this tab's rooms, with the positions to replay from for `replay`.
    pub(crate) fn announce(
        &self,
        mine: &[(String, Option<Since>)],
        hello: bool,
        replay: Replay<'_>,
    ) {
        let rooms = Array::new();
        for (room, at) in mine {
            let at = at.as_ref();
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

    /// Stops the holder's census timer.
    pub(crate) fn stop_census(&self) {
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
            let weak = self.owner.clone();
            let listener: Function = Closure::<dyn FnMut()>::new(move || {
                if let Some(owner) = weak.upgrade() {
                    owner.page_visible(back);
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
