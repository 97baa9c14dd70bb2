//! The backend trait: the few broker operations the hub is built on.
//!
//! Everything above it (typed publish, routing, retries, dead-lettering, de-duplication) is shared,
//! so both backends behave the same as long as they implement these operations with RabbitMQ's
//! semantics: durable topic and direct exchanges, queues with dead-letter and TTL arguments,
//! mandatory confirmed publishing, and prefetch-bounded consumers with ack and reject.

use futures_util::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::message::{Delivery, Message};
use crate::topology::Declaration;

/// futures-util's boxed, sendable future (one definition for the workspace).
pub(crate) use futures_util::future::BoxFuture;

/// A consumer on one queue: deliveries until the consumer's channel ends, and a way to close it.
pub(crate) struct Consumer {
    pub(crate) deliveries: BoxStream<'static, Delivery>,
    /// Fired when the connection under the consumer is known to be gone, even if the delivery
    /// stream has not ended (a client library may not end it on every kind of failure).
    pub(crate) lost: CancellationToken,
    pub(crate) close: BoxFuture<'static, ()>,
}

pub(crate) trait Backend: Send + Sync + 'static {
    /// Declares everything in order; idempotent; a conflict is `TopologyMismatch`.
    fn declare<'a>(&'a self, declarations: &'a [Declaration]) -> BoxFuture<'a, Result<(), Error>>;

    /// Publishes persistently and `mandatory`, resolving once the broker has confirmed; an
    /// unroutable message is `Unroutable`. Waits out a connection loss up to the publish timeout,
    /// republishing the same message (same `message_id`).
    fn publish<'a>(
        &'a self,
        exchange: &'a str,
        routing_key: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Starts a consumer with `prefetch` unacknowledged deliveries at most. The stream ends when
    /// the consumer's channel or connection ends; the caller consumes again to resume.
    fn consume<'a>(
        &'a self,
        queue: &'a str,
        prefetch: u16,
    ) -> BoxFuture<'a, Result<Consumer, Error>>;

    /// Closes connections after outstanding confirms.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Whether a broker connection is up now (always, in memory).
    fn connected(&self) -> bool;

    /// How many messages `queue` holds ready for delivery; `UnknownQueue`-like broker error if it
    /// does not exist.
    fn queue_depth<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64, Error>>;
}
