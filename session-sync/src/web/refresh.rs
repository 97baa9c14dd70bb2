//! `refreshOnce`: one token refresh at a time across every tab of the browser.
//!
//! With the Web Locks API: the first caller takes the lock and refreshes; the others queue on the
//! lock, and when they get it, find the tokens that arrived while they waited and return them
//! without refreshing. Without it: a `localStorage` lease ([`crate::lease`]) with an expiry, and
//! the waiters poll for the tokens or the lease's end.

use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use super::tab::TabState;
use super::{
    describe_js, js_error, local_storage, locks, now_ms, number_option, random_id, sleep,
    stored_lease,
};
use crate::Error;
use crate::lease::Lease;
use crate::message::Kind;

/// How long a refresh function may run by default.
const DEFAULT_TIMEOUT_MS: f64 = 10_000.0;
/// How long a lease outlives its refresh timeout: a dead holder frees it this long after the
/// timeout.
const LEASE_MARGIN_MS: f64 = 1_000.0;
/// How long a tab waits after writing its lease before reading it back: longer than a write
/// takes to reach the other tabs' view of `localStorage` (each renderer process keeps a copy,
/// updated asynchronously; at 30 ms, two tabs on a loaded machine sometimes both kept theirs).
const SETTLE_MS: f64 = 100.0;
/// How often a waiting tab looks at the lease and the tokens.
const POLL_MS: f64 = 20.0;
/// How long the refreshing tab keeps the lock after broadcasting the tokens. The lock and the
/// broadcast travel separate ways between tabs: without it, the next tab in line may get the
/// lock before the tokens and refresh again (with a single-use refresh token, logging everyone
/// out). The refreshing tab's caller gets the tokens at once; only the release waits.
const GRACE_MS: f64 = 100.0;

/// Starts (or joins, within this tab) a refresh.
pub(crate) fn refresh_once(inner: Rc<TabState>, refresh: Function, options: &JsValue) -> Promise {
    if let Some(p) = inner.refresh_in_flight() {
        return p;
    }
    let timeout = match number_option(options, "timeoutMs") {
        Ok(t) => t.unwrap_or(DEFAULT_TIMEOUT_MS).max(1.0),
        Err(e) => return Promise::reject(&js_error(&e)),
    };
    let shared = Rc::clone(&inner);
    let promise = future_to_promise(async move {
        let started = now_ms();
        let mark = shared.token_mark();
        let result = match locks::manager() {
            Some(manager) => with_lock(&manager, &shared, refresh, mark, timeout).await,
            None => with_lease(&shared, &refresh, mark, started, timeout).await,
        };
        shared.set_refresh_in_flight(None);
        result
    });
    inner.set_refresh_in_flight(Some(promise.clone()));
    promise
}

async fn with_lock(
    manager: &locks::LockManager,
    inner: &Rc<TabState>,
    refresh: Function,
    mark: u64,
    timeout: f64,
) -> Result<JsValue, JsValue> {
    let name = format!("tidewell-session-sync:{}:refresh", inner.channel());
    // The caller's answer, settled inside the lock, before the lock's grace period ends.
    let mut settle: Option<(Function, Function)> = None;
    let answer = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    let Some((resolve, reject)) = settle else {
        return Err(js_error(&Error::Unsupported("Promise")));
    };
    let holder = Rc::clone(inner);
    let reject_request = reject.clone();
    let callback = Closure::once_into_js(move |_lock: JsValue| -> Promise {
        future_to_promise(async move {
            match critical(&holder, &refresh, mark, timeout).await {
                Ok(tokens) => {
                    let _ = resolve.call1(&JsValue::UNDEFINED, &tokens);
                    sleep(GRACE_MS).await;
                }
                Err(error) => {
                    let _ = reject.call1(&JsValue::UNDEFINED, &error);
                }
            }
            Ok(JsValue::UNDEFINED)
        })
    });
    let request = manager.request(&name, &callback);
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(error) = JsFuture::from(request).await {
            // The request itself failed (e.g. the document went away): the caller hears why.
            let _ = reject_request.call1(&JsValue::UNDEFINED, &error);
        }
    });
    JsFuture::from(answer).await
}

async fn with_lease(
    inner: &Rc<TabState>,
    refresh: &Function,
    mark: u64,
    started: f64,
    timeout: f64,
) -> Result<JsValue, JsValue> {
    let Some(storage) = local_storage() else {
        // No storage, no other tab to agree with: refresh here.
        return critical(inner, refresh, mark, timeout).await;
    };
    let key = format!("tidewell-session-sync:{}:refresh-lease", inner.channel());
    // A waiter gives up after the longest a dead holder can block it, and one refresh more.
    let give_up = started + 2.0 * (timeout + LEASE_MARGIN_MS) + SETTLE_MS;
    loop {
        if let Some(tokens) = inner.tokens_since(mark) {
            return Ok(tokens);
        }
        let stored = storage.get_item(&key).ok().flatten();
        if Lease::may_take(stored.as_deref(), inner.tab_id(), now_ms()) {
            let lease = Lease {
                owner: inner.tab_id().to_owned(),
                nonce: random_id(),
                expires_at: now_ms() + timeout + LEASE_MARGIN_MS,
            };
            if storage.set_item(&key, &lease.encode()).is_err() {
                // Storage refuses writes (quota, private mode): refresh here.
                return critical(inner, refresh, mark, timeout).await;
            }
            sleep(SETTLE_MS).await;
            let held = stored_lease(&storage, &key)
                .is_some_and(|l| l.is_held_by(inner.tab_id(), &lease.nonce, now_ms()));
            if held {
                let result = match inner.tokens_since(mark) {
                    Some(tokens) => Ok(tokens),
                    None => critical(inner, refresh, mark, timeout).await,
                };
                // Release after the grace period (see GRACE_MS), without keeping the caller.
                let tab = inner.tab_id().to_owned();
                let grace = if result.is_ok() { GRACE_MS } else { 0.0 };
                wasm_bindgen_futures::spawn_local(async move {
                    sleep(grace).await;
                    let still_ours = stored_lease(&storage, &key)
                        .is_some_and(|l| l.is_attempt(&tab, &lease.nonce));
                    if still_ours {
                        // ok to ignore: a lease left behind expires by itself
                        let _ = storage.remove_item(&key);
                    }
                });
                return result;
            }
        }
        if now_ms() > give_up {
            return Err(js_error(&Error::InvalidArgument(format!(
                "refreshOnce: no tab finished a refresh within {} ms",
                // Truncation intended: whole milliseconds.
                (give_up - started) as u64
            ))));
        }
        sleep(POLL_MS).await;
    }
}

/// Inside the lock: the tokens if another tab refreshed since `mark`, else a refresh here,
/// broadcast to the others.
async fn critical(
    inner: &Rc<TabState>,
    refresh: &Function,
    mark: u64,
    timeout: f64,
) -> Result<JsValue, JsValue> {
    if let Some(tokens) = inner.tokens_since(mark) {
        return Ok(tokens);
    }
    match call_with_timeout(refresh, timeout).await {
        Ok(tokens) => {
            match inner.broadcast(Kind::TokenRefresh {
                tokens: tokens.clone(),
            }) {
                Ok(()) => {}
                Err(e @ Error::InvalidArgument(_)) => {
                    return Err(js_error(&Error::InvalidArgument(format!(
                        "refreshOnce: the refresh function's result must be JSON-serialisable \
                         and at most 64 KiB: {e}"
                    ))));
                }
                Err(e) => inner.report("refresh", &format!("could not tell the other tabs: {e}")),
            }
            inner.store_tokens(tokens.clone());
            Ok(tokens)
        }
        Err(error) => {
            // ok to ignore: telling waiters is best effort; they also see the lease end
            let _ = inner.broadcast(Kind::RefreshFailed {
                error: describe_js(&error),
            });
            Err(error)
        }
    }
}

/// Calls `f` and waits for its promise, at most `timeout_ms`.
async fn call_with_timeout(f: &Function, timeout_ms: f64) -> Result<JsValue, JsValue> {
    let returned = f.call0(&JsValue::UNDEFINED)?;
    let work = Promise::resolve(&returned);
    let timer = Promise::new(&mut |_resolve, reject| {
        let message =
            // Truncation intended: whole milliseconds.
            format!("refreshOnce: the refresh function did not settle within {} ms", timeout_ms as u64);
        let error: JsValue = js_sys::Error::new(&message).into();
        let fire = Closure::once_into_js(move || {
            let _ = reject.call1(&JsValue::UNDEFINED, &error);
        });
        if let Some(w) = web_sys::window() {
            // Truncation intended: whole milliseconds.
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                fire.unchecked_ref(),
                timeout_ms as i32,
            );
        }
    });
    JsFuture::from(Promise::race(&js_sys::Array::of2(&work, &timer))).await
}
