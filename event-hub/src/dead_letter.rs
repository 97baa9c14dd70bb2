//! Dead letters: what reached a dead-letter queue, and why.

use bytes::Bytes;

use crate::message::{self, Message};

/// Why an event was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The handler failed with retryable errors until the retry policy gave up.
    RetriesExhausted,
    /// The handler failed with a permanent error.
    Permanent,
    /// The message could not be decoded (not an envelope, wrong type, unknown version, bad payload).
    Poison,
    /// The message is larger than the hub's size limit.
    TooLarge,
    /// The broker dead-lettered it (rejected without requeue, delivery limit, expiry).
    Broker,
}

impl DeadLetterReason {
    /// Every reason.
    pub const ALL: [Self; 5] = [
        Self::RetriesExhausted,
        Self::Permanent,
        Self::Poison,
        Self::TooLarge,
        Self::Broker,
    ];

    /// The header and metric label form: `retries-exhausted`, `permanent`, `poison`, `too-large`,
    /// `broker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "retries-exhausted",
            Self::Permanent => "permanent",
            Self::Poison => "poison",
            Self::TooLarge => "too-large",
            Self::Broker => "broker",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "retries-exhausted" => Self::RetriesExhausted,
            "permanent" => Self::Permanent,
            "poison" => Self::Poison,
            "too-large" => Self::TooLarge,
            _ => Self::Broker,
        }
    }
}

/// An event taken from a dead-letter queue, with the metadata the hub attached.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The message body as published (normally an envelope's JSON).
    pub body: Bytes,
    /// The message id (the envelope id).
    pub message_id: String,
    /// The event type from the message properties.
    pub event_type: String,
    /// Why it was dead-lettered.
    pub reason: DeadLetterReason,
    /// The handler (subscription name) that gave up on it, if any.
    pub handler: Option<String>,
    /// How many handler runs it had.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// The queue it was consumed from.
    pub queue: Option<String>,
    /// The correlation id from the message properties.
    pub correlation_id: Option<String>,
    /// The publishing service (the AMQP `app_id`).
    pub source: Option<String>,
}

impl DeadLetter {
    pub(crate) fn from_message(m: Message) -> Self {
        Self {
            reason: m
                .text(message::DEAD_REASON)
                .map_or(DeadLetterReason::Broker, DeadLetterReason::parse),
            handler: m.text(message::HANDLER).map(str::to_owned),
            attempts: m.attempt(),
            last_error: m.text(message::LAST_ERROR).map(str::to_owned),
            queue: m.text(message::QUEUE).map(str::to_owned),
            correlation_id: m.correlation_id,
            source: m.app_id,
            message_id: m.message_id,
            event_type: m.event_type,
            body: m.body,
        }
    }
}
