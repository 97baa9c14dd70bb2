//! # tidewell-event-hub
//!
//! Typed, versioned events over RabbitMQ that are never lost, with an in-memory backend that
//! behaves the same.
//!
//! - **Topology as code** ([`Topology`], [`ServiceQueue`]): topic exchange `events`, dead-letter
//!   exchange `events.dlx`, one durable queue per consuming service bound by patterns, a
//!   dead-letter queue and retry wait queues per service; classic or quorum; idempotent, with a
//!   clear error when an existing queue differs.
//! - **Publishing** ([`Hub::publish`]): persistent, `mandatory` (an unroutable event is an error),
//!   resolved on the broker's confirm, many confirms in flight at once.
//! - **Subscribing** ([`Hub::subscribe`], [`Router`]): typed decode, prefetch and concurrency,
//!   ack after `Ok`; retryable errors wait in TTL queues and run again with backoff up to a
//!   bounded attempt count; permanent errors, poison and oversized messages go to the
//!   dead-letter queue with the reason, handler, attempt count and last error ([`DeadLetter`]).
//!   The original is acknowledged only after its retry or dead letter is confirmed.
//! - **Connections that heal**: reconnect with backoff, re-declare, re-consume; a publish caught
//!   by a connection loss is republished with the same message id; while disconnected, publishing
//!   waits up to the publish timeout, then fails.
//! - **Effectively once** behind a de-duplication guard ([`MemoryDedup`], `RedisDedup`).
//! - **Metrics** ([`HubMetrics`]) and `tracing` spans per publish and per handler run, carrying
//!   the envelope's `traceparent`.
//!
//! Backends: `amqp://` (feature `amqp`, default) and `memory://`, chosen by URL
//! ([`HubBuilder::url`], `TIDEWELL_EVENT_HUB_URL`).
//!
//! See [`Hub`] for a complete example.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "amqp")]
mod amqp_endpoint;
mod backend;
mod dead_letter;
mod dedup;
mod error;
mod handler;
mod hub;
mod memory;
mod message;
mod metrics;
mod operate;
#[cfg(feature = "outbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
pub mod outbox;
#[cfg(feature = "redis")]
mod redis_dedup;
mod retry;
mod subscriber;
mod topic;
mod topology;

pub use dead_letter::{DeadLetter, DeadLetterReason};
pub use dedup::{Claim, Dedup, MemoryDedup};
pub use error::{BoxError, Error};
pub use handler::{HandlerError, Router};
pub use hub::{Hub, HubBuilder, HubConfig};
pub use metrics::HubMetrics;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_dedup::RedisDedup;
pub use retry::RetryPolicy;
pub use subscriber::Subscription;
pub use topic::matches as topic_matches;
pub use topology::{QueueType, ServiceQueue, Topology};

/// Re-exported so that users register metrics with the same `prometheus` version.
pub use prometheus;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
