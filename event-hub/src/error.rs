use std::time::Duration;

/// A boxed error from a backend or a dependency, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the event hub. Messages say what failed and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached when the hub was built.
    #[error(
        "cannot connect to RabbitMQ at {url}: {source}; is the broker running (rabbitmq-server -detached)?"
    )]
    Connect {
        /// The broker URL, password hidden.
        url: String,
        /// What the client reported.
        #[source]
        source: BoxError,
    },

    /// The connection was down and did not come back within the publish timeout.
    #[error(
        "the connection to the broker is down and did not recover within {waited:?}; the event was not confirmed, publish it again"
    )]
    Disconnected {
        /// How long the publish waited.
        waited: Duration,
    },

    /// No queue is bound for the event: with `mandatory` publishing it is returned, not dropped.
    #[error(
        "event {routing_key:?} was not routed: no queue bound to exchange {exchange:?} matches it; add a binding in the Topology or check the event type"
    )]
    Unroutable {
        /// The exchange published to.
        exchange: String,
        /// The routing key (the event type).
        routing_key: String,
    },

    /// A declaration conflicts with what already exists on the broker.
    #[error(
        "{what} already exists with other settings: {detail}; delete it or change the declaration to match"
    )]
    TopologyMismatch {
        /// The exchange or queue.
        what: String,
        /// What differs, as the broker said it.
        detail: String,
    },

    /// The topology itself is invalid (bad name or pattern).
    #[error("invalid topology: {0}")]
    InvalidTopology(String),

    /// A subscription names a queue that the hub's topology does not declare.
    #[error(
        "queue {queue:?} is not declared by this hub's topology; add it with Topology::service"
    )]
    UnknownQueue {
        /// The queue name.
        queue: String,
    },

    /// An encoded event is larger than the configured limit.
    #[error(
        "event of {size} bytes exceeds the {limit}-byte limit (TIDEWELL_EVENT_HUB_MAX_MESSAGE_SIZE)"
    )]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// Encoding or decoding an envelope failed.
    #[error(transparent)]
    Envelope(#[from] tidewell_core::Error),

    /// The URL names no backend this build supports.
    #[error(
        "unsupported event hub URL scheme {scheme:?}: use amqp:// or amqps:// (feature \"amqp\") or memory://"
    )]
    UnsupportedUrl {
        /// The scheme found.
        scheme: String,
    },

    /// The hub is shutting down and accepts no new work.
    #[error("the event hub is shutting down; no new events are accepted")]
    ShuttingDown,

    /// Handlers were still running when the shutdown grace period ended.
    #[error(
        "{remaining} subscription(s) still busy after the {grace:?} grace period; their unacknowledged events will be redelivered"
    )]
    ShutdownTimeout {
        /// How many subscription tasks were still running.
        remaining: usize,
        /// The grace period.
        grace: Duration,
    },

    /// The broker refused or failed an operation.
    #[error("broker operation {operation} failed: {source}")]
    Broker {
        /// What was attempted.
        operation: &'static str,
        /// What the broker or client reported.
        #[source]
        source: BoxError,
    },

    /// The Redis de-duplication store failed.
    #[error("de-duplication store failed: {0}")]
    Dedup(#[source] BoxError),

    /// Configuration from the environment is invalid.
    #[error(transparent)]
    Config(tidewell_core::Error),

    /// The outbox's database refused or failed an operation (feature `outbox`).
    #[error(
        "outbox: could not {operation}: {source}; check the database URL and that the database is up"
    )]
    Outbox {
        /// What was attempted.
        operation: &'static str,
        /// What the database reported.
        #[source]
        source: BoxError,
    },
}

impl Error {
    pub(crate) fn broker(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Broker {
            operation,
            source: source.into(),
        }
    }
}
