//! How tabs talk: a `BroadcastChannel`, or `storage` events of `localStorage` where the browser
//! lacks one (old Safari, some embedded web views).

use js_sys::Function;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent, StorageEvent};

use super::{has_global, local_storage};
use crate::Error;

/// Which transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `BroadcastChannel`.
    Channel,
    /// `localStorage` `storage` events.
    Storage,
}

impl Kind {
    /// The name the JavaScript API shows.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Channel => "broadcast-channel",
            Self::Storage => "local-storage",
        }
    }

    /// The transport `wanted` (`"auto"`, `"broadcast-channel"`, `"local-storage"`) on this
    /// browser.
    pub(crate) fn choose(wanted: &str) -> Result<Self, Error> {
        let channel = has_global("BroadcastChannel");
        let storage = local_storage().is_some();
        match wanted {
            "auto" | "broadcast-channel" if channel => Ok(Self::Channel),
            "auto" | "local-storage" if storage => Ok(Self::Storage),
            "auto" => Err(Error::Unsupported(
                "BroadcastChannel or localStorage (one is needed to reach other tabs)",
            )),
            "broadcast-channel" => Err(Error::Unsupported("BroadcastChannel")),
            "local-storage" => Err(Error::Unsupported("localStorage")),
            other => Err(Error::InvalidArgument(format!(
                "transport must be \"auto\", \"broadcast-channel\" or \"local-storage\", not \"{other}\""
            ))),
        }
    }
}

/// An open transport; dropping it stops listening.
pub(crate) enum Transport {
    /// Over a `BroadcastChannel`.
    Channel {
        channel: BroadcastChannel,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
    },
    /// Over `localStorage` `storage` events on one key.
    Storage {
        key: String,
        listener: Function,
        _on_storage: Closure<dyn FnMut(StorageEvent)>,
    },
}

impl Transport {
    /// Opens `kind` on channel `name`; `receive` gets every message's data as sent (a string
    /// from a well-behaved sender, anything from a misbehaving one).
    pub(crate) fn open(
        kind: Kind,
        name: &str,
        receive: impl Fn(JsValue) + 'static,
    ) -> Result<Self, Error> {
        match kind {
            Kind::Channel => {
                let channel = BroadcastChannel::new(&format!("tidewell-session-sync:{name}"))
                    .map_err(|_| Error::Unsupported("BroadcastChannel"))?;
                let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                    receive(e.data());
                });
                channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
                Ok(Self::Channel {
                    channel,
                    _on_message: on_message,
                })
            }
            Kind::Storage => {
                let window = web_sys::window().ok_or(Error::Unsupported("window"))?;
                let key = storage_key(name);
                let own_key = key.clone();
                let on_storage = Closure::<dyn FnMut(StorageEvent)>::new(move |e: StorageEvent| {
                    // A write by another tab; removals (`newValue` null) are the sender
                    // cleaning up.
                    if e.key().as_deref() == Some(own_key.as_str())
                        && let Some(text) = e.new_value()
                    {
                        receive(JsValue::from_str(&text));
                    }
                });
                let listener: Function = on_storage.as_ref().unchecked_ref::<Function>().clone();
                window
                    .add_event_listener_with_callback("storage", &listener)
                    .map_err(|_| Error::Unsupported("storage events"))?;
                Ok(Self::Storage {
                    key,
                    listener,
                    _on_storage: on_storage,
                })
            }
        }
    }

    /// Sends `text` to every other tab on the channel.
    pub(crate) fn send(&self, text: &str) -> Result<(), Error> {
        match self {
            Self::Channel { channel, .. } => channel
                .post_message(&JsValue::from_str(text))
                .map_err(|e| Error::InvalidArgument(super::describe_js(&e))),
            Self::Storage { key, .. } => {
                let storage = local_storage().ok_or(Error::Unsupported("localStorage"))?;
                // Every message has a unique id, so the value changes and other tabs get a
                // `storage` event; removing it at once keeps the storage clean.
                storage
                    .set_item(key, text)
                    .map_err(|e| Error::InvalidArgument(super::describe_js(&e)))?;
                // ok to ignore: a leftover value is overwritten by the next message
                let _ = storage.remove_item(key);
                Ok(())
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        match self {
            Self::Channel { channel, .. } => {
                channel.set_onmessage(None);
                channel.close();
            }
            Self::Storage { listener, .. } => {
                if let Some(w) = web_sys::window() {
                    // ok to ignore: removing a listener cannot fail in a way we could act on
                    let _ = w.remove_event_listener_with_callback("storage", listener);
                }
            }
        }
    }
}

/// The `localStorage` key of channel `name`.
pub(crate) fn storage_key(name: &str) -> String {
    format!("tidewell-session-sync:{name}")
}
