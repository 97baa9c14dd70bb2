//! Device identity: a UUID v4 kept in `localStorage` (in memory where storage is unavailable),
//! and a name and type from the user agent.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use super::{local_storage, random_id};
use crate::device::{describe, is_device_id};

/// The `localStorage` key of the device id.
const KEY: &str = "tidewell-session-sync:device-id";

thread_local! {
    /// The id when storage is unavailable: stable for the page's life.
    static MEMORY_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// This browser's device id: a UUID v4 made on first use and kept in `localStorage`; where
/// storage is unavailable (some private modes), an id kept in memory for this page.
#[wasm_bindgen(js_name = getDeviceId)]
pub fn get_device_id() -> String {
    if let Some(storage) = local_storage() {
        if let Ok(Some(id)) = storage.get_item(KEY)
            && is_device_id(&id)
        {
            return id;
        }
        let id = random_id();
        if storage.set_item(KEY, &id).is_ok() {
            return id;
        }
    }
    MEMORY_ID.with(|m| m.borrow_mut().get_or_insert_with(random_id).clone())
}

/// Forgets the device id (for example on "forget this device"); the next `getDeviceId` makes a
/// new one.
#[wasm_bindgen(js_name = clearDeviceId)]
pub fn clear_device_id() {
    if let Some(storage) = local_storage() {
        // ok to ignore: nothing to remove, or storage refuses; either way no id is kept
        let _ = storage.remove_item(KEY);
    }
    MEMORY_ID.with(|m| m.borrow_mut().take());
}

/// A readable name for this device, e.g. `"Chrome on Windows"`.
#[wasm_bindgen(js_name = getDeviceName)]
pub fn get_device_name() -> String {
    describe(&user_agent()).name
}

/// The kind of this device from its user agent.
#[wasm_bindgen(js_name = getDeviceType, unchecked_return_type = "DeviceType")]
pub fn get_device_type() -> String {
    describe(&user_agent()).device_type.as_str().into()
}

fn user_agent() -> String {
    web_sys::window()
        .and_then(|w| w.navigator().user_agent().ok())
        .unwrap_or_default()
}
