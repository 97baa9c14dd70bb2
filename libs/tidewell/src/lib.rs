//! # tidewell
//!
//! Tidewell is a toolkit for event-driven Rust services with real-time web front ends. This crate
//! gathers its parts behind features of the same name, so one dependency line picks what you use:
//!
//! ```toml
//! tidewell = { version = "0.1", features = ["auth", "event-hub", "cache"] }
//! ```
//!
//! | module | feature | what it is |
//! |---|---|---|
//! | [`core`] | always | event envelope, backoff, typed configuration, graceful shutdown |
//! | `auth` | `auth` | JWT issue and verify with key rotation |
//! | `event_hub` | `event-hub` | typed events over RabbitMQ and in memory |
//! | `cache` | `cache` | tag-based cache on Redis and in memory |
//! | `observability` | `observability` | `init` (logs, OTLP trace export; `observability-tls` for `https://` collectors), metrics registry, HTTP RED and correlation layers |
//! | `proxy` | `proxy` | streaming reverse proxy |
//! | `websocket` | `websocket` | WebSocket rooms |
//! | `session_sync` | `session-sync` | cross-tab session sync in the browser (wasm32), device registry (feature `server`) |
//!
//! ```
//! use tidewell::core::Backoff;
//! let mut schedule = Backoff::default().schedule_seeded(1);
//! assert!(schedule.next_delay().is_some());
//! ```
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
