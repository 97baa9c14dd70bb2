use std::time::Duration;

/// Everything that can go wrong in `tidewell-core`.
///
/// Messages are lowercase, say what failed and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A TLS setting cannot be used: a CA, certificate or key file is missing, unreadable or not
    /// PEM.
    #[error("TLS configuration: {reason}")]
    Tls {
        /// What is wrong, naming the file.
        reason: String,
    },

    /// Redis did not accept a connection (feature `redis`).
    #[error("cannot connect to Redis at {url}: {reason}; check the URL and that Redis is up")]
    RedisConnect {
        /// The URL, password hidden.
        url: String,
        /// What the client reported (a refused certificate explained).
        reason: String,
    },

    /// The bytes are not an event envelope (invalid JSON or a missing field).
    #[error(
        "malformed event envelope: {source}; expected the JSON form documented in docs/events.md"
    )]
    MalformedEnvelope {
        /// What the JSON parser reported.
        #[source]
        source: serde_json::Error,
    },

    /// The envelope's `type` is not a dotted lowercase name such as `payments.payment.created`.
    #[error(
        "invalid event type {found:?}: expected two or more dot-separated lowercase segments, e.g. \"payments.payment.created\""
    )]
    InvalidEventType {
        /// The type that was found (truncated to 128 characters).
        found: String,
    },

    /// The envelope holds another event type than the one asked for.
    #[error("unexpected event type {found:?}: this decoder accepts only {expected:?}")]
    UnexpectedEventType {
        /// The type the decoder accepts.
        expected: &'static str,
        /// The type that was found.
        found: String,
    },

    /// The envelope's version is newer than the code knows, or older with no upcast for it.
    #[error(
        "unsupported version {found} of event {event_type:?}: this consumer handles version {supported}{hint}",
        hint = if *found < *supported { "; implement Event::upcast to accept older versions" } else { "; deploy the newer consumer" }
    )]
    UnsupportedVersion {
        /// The event type.
        event_type: String,
        /// The version that was found.
        found: u16,
        /// The version the consumer handles.
        supported: u16,
    },

    /// The payload does not match the event's schema for that version.
    #[error(
        "payload of event {event_type:?} version {version} does not match its schema: {source}"
    )]
    MalformedPayload {
        /// The event type.
        event_type: String,
        /// The version the payload claimed.
        version: u16,
        /// What the JSON parser reported.
        #[source]
        source: serde_json::Error,
    },

    /// A payload could not be encoded to JSON (for example a map with non-string keys).
    #[error("cannot encode the payload of event {event_type:?} as JSON: {source}")]
    Encode {
        /// The event type.
        event_type: String,
        /// What the JSON encoder reported.
        #[source]
        source: serde_json::Error,
    },

    /// A correlation id is empty, too long or holds characters that cannot travel in a header.
    #[error(
        "invalid correlation id: {reason}; use 1 to 128 visible ASCII characters without quotes, commas, semicolons or backslashes"
    )]
    InvalidCorrelationId {
        /// Why it was refused.
        reason: &'static str,
    },

    /// A backoff was configured with values that cannot work.
    #[error("invalid backoff: {reason}")]
    InvalidBackoff {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An environment variable holds a value of the wrong form.
    #[error("environment variable {name} is invalid: {reason}; expected {expected}")]
    InvalidVar {
        /// The variable's name.
        name: String,
        /// The expected form, e.g. `a duration such as "250ms" or "30s"`.
        expected: &'static str,
        /// Why the value was refused (never the value itself when it could hold a secret).
        reason: String,
    },

    /// A required environment variable is not set.
    #[error("environment variable {name} is not set; expected {expected}")]
    MissingVar {
        /// The variable's name.
        name: String,
        /// The expected form.
        expected: &'static str,
    },

    /// Installing the SIGINT/SIGTERM handlers failed.
    #[error("cannot listen for shutdown signals: {source}")]
    Signal {
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },

    /// Tasks were still running when the shutdown grace period ended.
    #[error(
        "{remaining} task(s) still running after the {grace:?} shutdown grace period; they were left to be dropped"
    )]
    DrainTimeout {
        /// How many tasks were still running.
        remaining: usize,
        /// The grace period that ran out.
        grace: Duration,
    },
}
