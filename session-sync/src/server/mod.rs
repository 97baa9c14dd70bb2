//! The server side (feature `server`): the devices of each user and the revocation of their
//! sessions.
//!
//! - [`DeviceRegistry`]: the devices a user is signed in on, on Postgres or SQLite (chosen by
//!   URL, tables created by embedded migrations). Revoking a device, or every device but the
//!   current one, commits the revocation and then publishes a [`SessionRevoked`]
//!   (`auth.session.revoked`) per device through the event hub, when one is given.
//! - [`RevokedSessions`]: what a gateway checks on every token, a bounded set of revoked
//!   sessions fed by those events on every node, with the registry behind it.
//!
//! The same event reaches the WebSocket bridge (`Bridge::revoke_sessions`), which closes the
//! session's connections with 4001 and tells the device's room, where the browser's
//! `DeviceSessionSync` logs every tab out.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tidewell_event_hub::{HandlerError, Hub, ServiceQueue, Subscription, Topology};
//! use tidewell_session_sync::server::{
//!     DeviceRegistry, NewDevice, RevokeReason, RevokedSessions, SessionRevoked,
//! };
//!
//! // One queue per gateway node, and one for whoever else wants to hear of revocations.
//! let topology = Topology::new()
//!     .service(ServiceQueue::new("gateway-1").bind("auth.session.revoked"))
//!     .service(ServiceQueue::new("audit").bind("auth.#"));
//! let hub = Hub::memory("auth", topology).await?; // or Hub::builder("auth").url("amqp://…")
//! let registry = DeviceRegistry::connect("sqlite::memory:").await?.with_hub(hub.clone());
//!
//! let revoked = RevokedSessions::new(registry.clone(), 100_000, Duration::from_secs(3600));
//! hub.subscribe_router(Subscription::new("gateway-1.events"), revoked.router()).await?;
//! let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
//! hub.subscribe::<SessionRevoked, _, _>(Subscription::new("audit.events"), move |event| {
//!     let sent = tx.send(event.into_payload()).map_err(HandlerError::permanent);
//!     async move { sent }
//! })
//! .await?;
//!
//! // Two sign-ins; the laptop signs the phone out.
//! let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
//! registry.register(NewDevice::new("user-1", "laptop", "session-a", ua)).await?;
//! registry.register(NewDevice::new("user-1", "phone", "session-b", "")).await?;
//! registry.revoke_others("user-1", "laptop").await?;
//!
//! let event = events.recv().await.ok_or("no event")?;
//! assert_eq!((event.device_id.as_str(), event.session_id.as_str()), ("phone", "session-b"));
//! assert_eq!(event.reason, RevokeReason::RevokedOthers);
//! assert!(revoked.is_revoked("session-b").await?);
//! assert!(!revoked.is_revoked("session-a").await?);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, doc(cfg(feature = "server")))]

mod backend;
mod device_record;
mod event;
mod registry;
mod revoked;
mod sql;

pub use device_record::{Device, NewDevice};
pub use event::{RevokeReason, SessionRevoked};
pub use registry::DeviceRegistry;
pub use revoked::RevokedSessions;

/// Re-exported so that [`DeviceRegistry::from_postgres`] and [`DeviceRegistry::from_sqlite`]
/// take pools of the same `sqlx` version.
pub use sqlx;
