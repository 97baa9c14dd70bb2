//! Which tab of the browser holds the shared WebSocket: an exclusive Web Lock where the browser
//! has the API (the browser frees it the moment the holding tab closes or crashes), else a
//! `localStorage` lease ([`crate::lease`]) the holder renews and a crashed holder lets expire.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use super::{local_storage, locks, now_ms, random_id, sleep, stored_lease};
use crate::lease::Lease;

/// How long a lease holds without renewal: the longest a crashed holder blocks the others where
/// Web Locks are missing. Over a second, because browsers run timers of hidden tabs at most once
/// a second and the holder must renew in time.
const LEASE_MS: f64 = 1_500.0;
/// How often the holder renews its lease.
const RENEW_MS: f64 = 250.0;
/// How often a waiting tab looks at the lease.
const POLL_MS: f64 = 100.0;
/// How long a tab waits after writing the lease before reading it back (see `refresh.rs`).
const SETTLE_MS: f64 = 60.0;

/// One tab's part in the election of `name`; `on_change(true)` when this tab is elected,
/// `on_change(false)` when it lost the lease (the lock is never taken away).
pub(crate) struct Election {
    name: String,
    tab: String,
    on_change: Box<dyn Fn(bool)>,
    /// Bumped by every `join` and `leave`: a grant or a lease loop of an older round does nothing.
    round: Cell<u32>,
    joined: Cell<bool>,
    holder: Cell<bool>,
    /// Resolving it releases the Web Lock.
    release: RefCell<Option<Function>>,
    this: Weak<Election>,
}

impl Election {
    pub(crate) fn new(name: String, tab: String, on_change: impl Fn(bool) + 'static) -> Rc<Self> {
        Rc::new_cyclic(|this| Self {
            name,
            tab,
            on_change: Box::new(on_change),
            round: Cell::new(0),
            joined: Cell::new(false),
            holder: Cell::new(false),
            release: RefCell::new(None),
            this: this.clone(),
        })
    }

    /// Whether this tab holds it now.
    pub(crate) fn is_holder(&self) -> bool {
        self.holder.get()
    }

    /// Stands for election (again after [`leave`](Self::leave)).
    pub(crate) fn join(&self) {
        if self.joined.replace(true) {
            return;
        }
        let round = self.round.get().wrapping_add(1);
        self.round.set(round);
        match locks::manager() {
            Some(manager) => self.request_lock(&manager, round),
            None => {
                let weak = self.this.clone();
                wasm_bindgen_futures::spawn_local(async move { lease_loop(weak, round).await });
            }
        }
    }

    /// Gives up the hold (or the place in the queue) at once.
    pub(crate) fn leave(&self) {
        if !self.joined.replace(false) {
            return;
        }
        self.round.set(self.round.get().wrapping_add(1));
        self.holder.set(false);
        if let Some(release) = self.release.borrow_mut().take() {
            // ok to ignore: resolving a promise's resolver cannot fail
            let _ = release.call0(&JsValue::UNDEFINED);
        }
        if locks::manager().is_none()
            && let Some(storage) = local_storage()
            && stored_lease(&storage, &self.lease_key()).is_some_and(|l| l.owner == self.tab)
        {
            // ok to ignore: a lease left behind expires by itself
            let _ = storage.remove_item(&self.lease_key());
        }
    }

    fn request_lock(&self, manager: &locks::LockManager, round: u32) {
        let weak = self.this.clone();
        let granted = Closure::once_into_js(move |_lock: JsValue| -> Promise {
            let Some(me) = weak.upgrade().filter(|me| me.round.get() == round) else {
                // Left meanwhile: release at once.
                return Promise::resolve(&JsValue::UNDEFINED);
            };
            let mut resolver = None;
            let held = Promise::new(&mut |resolve, _| resolver = Some(resolve));
            *me.release.borrow_mut() = resolver;
            me.holder.set(true);
            (me.on_change)(true);
            held
        });
        // ok to ignore: the request settles when the lock is released (or the page goes away)
        let _ = manager.request(&self.name, &granted);
    }

    fn lease_key(&self) -> String {
        format!("{}:holder", self.name)
    }
}

/// The `localStorage` lease: wait for it, take it, renew it while joined.
async fn lease_loop(weak: Weak<Election>, round: u32) {
    let nonce = random_id();
    loop {
        let Some(me) = weak.upgrade().filter(|me| me.round.get() == round) else {
            return;
        };
        let Some(storage) = local_storage() else {
            // No storage: no other tab to agree with.
            if !me.holder.replace(true) {
                (me.on_change)(true);
            }
            return;
        };
        let key = me.lease_key();
        let stored = storage.get_item(&key).ok().flatten();
        // Still our record, even if a late renewal (a throttled hidden tab) let it expire: no
        // other tab wrote since, so this tab keeps holding rather than dropping the connection.
        let mine = stored
            .as_deref()
            .and_then(Lease::decode)
            .is_some_and(|l| l.is_attempt(&me.tab, &nonce));
        if me.holder.get() && !mine {
            // Another tab took the lease (ours lapsed): stand down, then wait again.
            me.holder.set(false);
            (me.on_change)(false);
        }
        let wait = if me.holder.get() || Lease::may_take(stored.as_deref(), &me.tab, now_ms()) {
            let lease = Lease {
                owner: me.tab.clone(),
                nonce: nonce.clone(),
                expires_at: now_ms() + LEASE_MS,
            };
            // ok to ignore: a refused write reads back as not ours
            let _ = storage.set_item(&key, &lease.encode());
            if !me.holder.get() {
                drop(me);
                sleep(SETTLE_MS).await;
                let Some(me) = weak.upgrade().filter(|me| me.round.get() == round) else {
                    return;
                };
                let won = stored_lease(&storage, &key)
                    .is_some_and(|l| l.is_held_by(&me.tab, &nonce, now_ms()));
                if won {
                    me.holder.set(true);
                    (me.on_change)(true);
                }
                continue;
            }
            RENEW_MS
        } else {
            POLL_MS
        };
        sleep(wait).await;
    }
}
