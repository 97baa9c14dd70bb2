//! # tidewell-websocket
//!
//! Authenticated WebSocket rooms on tokio-tungstenite, speaking the protocol of
//! `docs/protocol.md` (types in `tidewell-protocol`).
//!
//! - **Upgrade with a JWT** ([`WsServer::handle`], mountable on hyper or axum): from
//!   `Authorization: Bearer`, a `bearer.<token>` WebSocket protocol, or `?token=`; a missing or
//!   invalid token is a 401 before any upgrade, and the token never reaches a log.
//! - **Rooms**: each connection joins `user:<sub>`, `role:<r>`, `device:<did>` and `broadcast` by
//!   itself; other rooms go through an authorization hook. Limits per connection: rooms, inbound
//!   message rate, message size (64 KiB).
//! - **Heartbeat**: a ping every 30 s; no pong 10 s after a ping closes the connection (4004), so
//!   half-open TCP is detected.
//! - **Backpressure**: an outbound queue per connection bounded in bytes, with a policy per room
//!   kind ([`Overflow`]: drop oldest, coalesce by room, disconnect with 4000); small tungstenite
//!   buffers; a publish encodes a frame once and shares its bytes with every member.
//! - **History and recovery**: per room, the last N events (and a TTL) with offsets and an epoch;
//!   `subscribe` with `since` replays what was missed or says `recovered: false`.
//! - **Presence** per room kind, and a connection registry (by user, by session;
//!   [`WsServer::disconnect_session`] for revoked sessions).
//! - **Shutdown**: [`WsServer::shutdown`] refuses new upgrades and closes every connection with 1001.
//!
//! - **Event bridge** ([`Bridge`], feature `event-hub`): events from an event-hub subscription
//!   fanned out to rooms by rules on their type; a session-revoked event closes that session's
//!   connections. The message is acknowledged after the local fan-out and history append.
//!
//! - **Native client** ([`WsClient`]): token, reconnect with backoff and jitter, re-subscribe with
//!   `since`, a bounded queue of requests made offline, events de-duplicated by envelope id,
//!   [`ClientEvent::Gap`] when a room could not be recovered.
//!
//! - **Many nodes** ([`WsServer::connect_backplane`], feature `redis`): publishes go through
//!   Redis (offset and epoch per room from Redis; one pub/sub channel on a single Redis, sharded
//!   pub/sub per room on a Redis Cluster) to every node with the room, so offsets are the same
//!   everywhere and a client recovers on whichever node it reconnects to.
//!
//! ```no_run
//! use tidewell_auth::{KeySet, Verifier, VerifyingKey};
//! use tidewell_websocket::WsServer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeySet::from_keys([VerifyingKey::hs256("k1", b"a secret of at least 32 bytes!!!")?]);
//! let server = WsServer::builder(Verifier::new(keys, "auth", "tidewell"))
//!     .authorize(|claims, room| room.strip_prefix("payment:").is_some() && claims.has_role("admin"))
//!     .build()?;
//! // In a hyper or axum handler for GET /ws: `return server.handle(request);`
//! server.publish_json("user:42", r#"{"id":"01J...","type":"payments.payment.created"}"#)?;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "redis")]
mod backplane;
#[cfg(feature = "event-hub")]
mod bridge;
mod client;
mod config;
mod connection;
mod error;
mod fanout;
mod metrics;
mod outbox;
mod registry;
mod rooms;
mod server;

#[cfg(feature = "event-hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "event-hub")))]
pub use bridge::Bridge;
pub use client::{ClientConfig, ClientEvent, WsClient};
pub use config::{Overflow, WsConfig};
pub use error::Error;
pub use metrics::WsMetrics;
pub use registry::ConnectionInfo;
pub use server::{Admit, Authorize, AuthorizeAsync, WsServer, WsServerBuilder, WsStats};
/// Re-exported: the wire types.
pub use tidewell_protocol as protocol;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
