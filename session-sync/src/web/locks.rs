//! A hand-written binding to the Web Locks API (`navigator.locks`): web-sys has one only behind
//! `--cfg web_sys_unstable_apis`, which would be forced on every application that depends on us.

use js_sys::Promise;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks`.
    pub(crate) type LockManager;

    /// `locks.request(name, callback)`: runs `callback` when the exclusive lock `name` is
    /// granted, holds the lock until the promise `callback` returns settles, and resolves with
    /// that promise's result. A tab that closes releases its locks at once.
    #[wasm_bindgen(method, js_name = request)]
    pub(crate) fn request(this: &LockManager, name: &str, callback: &JsValue) -> Promise;
}

/// The page's lock manager, where the browser has one (secure contexts of current browsers).
pub(crate) fn manager() -> Option<LockManager> {
    let navigator =
        js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
    let locks = js_sys::Reflect::get(&navigator, &JsValue::from_str("locks")).ok()?;
    let request = js_sys::Reflect::get(&locks, &JsValue::from_str("request")).ok()?;
    request.is_function().then(|| locks.unchecked_into())
}
