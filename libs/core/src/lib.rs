//! # tidewell-core
//!
//! The building blocks every Tidewell crate shares, so that none of them rewrites them:
//!
//! - [`Envelope`]: the versioned event envelope on every wire (AMQP, WebSocket, outbox), with the
//!   [`Event`] trait that ties a payload type to its dotted `type` and its `version`, typed decode
//!   errors and an upcast hook. Its JSON form is a wire contract, documented in `docs/events.md`.
//! - [`Backoff`]: exponential backoff with jitter, bounded by attempts or elapsed time and seedable
//!   for tests. Retries, reconnects and clients all use this one.
//! - [`config`]: typed reading of durations (`"250ms"`), byte sizes (`"64KiB"`) and URLs from
//!   environment variables, with errors that name the variable and the expected form.
//! - [`http`] (feature `http`): the request id headers and the one JSON error shape of every
//!   Tidewell HTTP answer.
//! - [`correlation`] (feature `http`): the tower layer that gives every HTTP request a
//!   correlation id, kept in its headers and span and echoed on the response.
//! - [`cli`]: `--help` (what a program does and the environment variables it reads),
//!   `--version`, usage errors and start-up errors printed for a person, with the right exit codes.
//! - [`propagation`]: W3C trace context through any [`Carrier`](propagation::Carrier) (HTTP and
//!   AMQP headers, WebSocket frames), linked to OpenTelemetry with the feature `otel`.
//! - [`pubsub`] (feature `redis`): one Redis pub/sub subscription kept alive across dropped
//!   connections, telling its listener when messages may have been missed.
//! - [`tls`]: the client TLS settings every backend reads (`TIDEWELL_<AREA>_TLS_CA_FILE`, a
//!   client certificate and key for mutual TLS), and refused handshakes explained.
//! - [`Shutdown`] (feature `runtime`, on by default): one graceful-shutdown signal (SIGINT/SIGTERM)
//!   that servers and consumers accept, which also owns the tasks they spawn.
//! - [`accept`] (feature `runtime`): a server's next TCP connection, `TCP_NODELAY` set, a failed
//!   accept retried instead of ending the server.
//! - [`LingeringClose`] (feature `runtime`): a server connection that half-closes and drains
//!   before it closes, so an early answer (a 413 while the client still sends) is not lost to a
//!   reset.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidewell_core::{Envelope, Event};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct PaymentCreated { payment_id: u64, amount_cents: i64 }
//!
//! impl Event for PaymentCreated {
//!     const TYPE: &'static str = "payments.payment.created";
//!     const VERSION: u16 = 1;
//! }
//!
//! let sent = Envelope::new("payments", PaymentCreated { payment_id: 42, amount_cents: 1999 });
//! let bytes = sent.to_json()?;
//! let received = Envelope::<PaymentCreated>::from_json(&bytes)?;
//! assert_eq!(received.payload(), sent.payload());
//! assert_eq!(received.id(), sent.id());
//! # Ok::<(), tidewell_core::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "runtime")]
mod accept;
mod backoff;
pub mod cli;
pub mod config;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod correlation;
mod envelope;
mod error;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "runtime")]
mod linger;
mod named;
pub mod propagation;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod pubsub;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis_conn;
#[cfg(feature = "runtime")]
mod shutdown;
pub mod tls;

#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub use accept::accept;
pub use backoff::{Backoff, BackoffBuilder, Schedule};
pub use envelope::{CorrelationId, Envelope, Event, RawEnvelope, is_valid_event_type};
pub use error::Error;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub use linger::LingeringClose;
pub use named::SharedByName;
#[cfg(feature = "runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
pub use shutdown::Shutdown;

/// Re-exported so that users name the same `serde_json` (for [`Event::upcast`] and
/// [`RawEnvelope`]) and the same `uuid` and `time` versions as Tidewell.
pub use {serde_json, time, uuid};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
