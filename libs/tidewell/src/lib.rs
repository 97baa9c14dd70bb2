#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tidewell_core as core;

#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub use tidewell_auth as auth;

#[cfg(feature = "event-hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "event-hub")))]
pub use tidewell_event_hub as event_hub;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use tidewell_cache as cache;

#[cfg(feature = "observability")]
#[cfg_attr(docsrs, doc(cfg(feature = "observability")))]
pub use tidewell_observability as observability;

#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use tidewell_proxy as proxy;

#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub use tidewell_websocket as websocket;

#[cfg(feature = "session-sync")]
#[cfg_attr(docsrs, doc(cfg(feature = "session-sync")))]
pub use tidewell_session_sync as session_sync;
