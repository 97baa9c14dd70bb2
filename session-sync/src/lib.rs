//! # tidewell-session-sync
//!
//! Cross-tab session sync and device sessions for JavaScript front ends, compiled to WebAssembly
//! with wasm-bindgen: one tab refreshes a token and every tab follows; a revoked device logs out.
//!
//! Two halves share this crate:
//!
//! - **The browser** (`wasm32-unknown-unknown`, the npm package built by
//!   `session-sync/scripts/build-pkg`): `SessionSync` (cross-tab logout, auth state and token
//!   refresh over `BroadcastChannel`, or `localStorage` events where it is missing),
//!   `refreshOnce` (one refresh across every tab, on the Web Locks API or a `localStorage` lease),
//!   device identity, and `RealtimeClient` / `DeviceSessionSync` (the Tidewell WebSocket protocol;
//!   a revoked device logs every tab out). The JavaScript API is documented in the README and in
//!   the generated `.d.ts`.
//! - **The server** (feature `server`): `server::DeviceRegistry`, the devices of each user on
//!   Postgres or SQLite, whose revocations publish `auth.session.revoked` through the event hub,
//!   and `server::RevokedSessions`, the check a gateway runs on every token.
//!
//! What both halves agree on, the cross-tab [`message`] format and the [`device`] description,
//! is plain Rust and tested natively.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod device;
mod error;
mod interest;
pub mod lease;
pub mod message;

#[cfg(target_arch = "wasm32")]
pub mod web;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;

pub use error::Error;

/// The README's server example, compiled as a doc test.
#[cfg(all(doctest, feature = "server"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
