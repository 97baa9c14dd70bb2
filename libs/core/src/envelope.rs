//! The event envelope: the wire contract of every Tidewell event (see `docs/events.md`).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;

/// A payload type that travels as a Tidewell event.
///
/// `TYPE` is the dotted event type (`<service>.<entity>.<what happened>`), `VERSION` the version of
/// the payload schema this Rust type describes. An invalid `TYPE` fails the build when
/// [`Envelope::new`] is used with it.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tidewell_core::{Envelope, Event, serde_json};
///
/// /// Version 2 split `name` into `first` and `last`.
/// #[derive(Debug, Serialize, Deserialize)]
/// struct UserCreated { id: u64, first: String, last: String }
///
/// impl Event for UserCreated {
///     const TYPE: &'static str = "auth.user.created";
///     const VERSION: u16 = 2;
///
///     fn upcast(version: u16, payload: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
///         #[derive(Deserialize)]
///         struct V1 { id: u64, name: String }
///         (version == 1).then(|| {
///             let v1: V1 = serde_json::from_value(payload)?;
///             let (first, last) = v1.name.split_once(' ').unwrap_or((&v1.name, ""));
///             Ok(UserCreated { id: v1.id, first: first.into(), last: last.into() })
///         })
///     }
/// }
///
/// let v1 = br#"{"id":"0190b3a4-7c4e-7d2a-9f1e-2b3c4d5e6f70","type":"auth.user.created","version":1,
///   "source":"auth","occurred_at":"2026-11-26T10:00:00Z","correlation_id":"req-1",
///   "payload":{"id":7,"name":"Ada Lovelace"}}"#;
/// let event = Envelope::<UserCreated>::from_json(v1)?;
/// assert_eq!(event.payload().last, "Lovelace");
/// assert_eq!(event.version(), 2, "upcast envelopes carry the version they now hold");
/// # Ok::<(), tidewell_core::Error>(())
/// ```
pub trait Event: Serialize + DeserializeOwned {
    /// The dotted event type, e.g. `payments.payment.created`.
    const TYPE: &'static str;
    /// The payload schema version this type describes.
    const VERSION: u16;

    /// Turns the payload of an older `version` into this type.
    ///
    /// Return `None` for a version you do not accept (the decode then fails with
    /// [`Error::UnsupportedVersion`]). The default accepts no older version.
    fn upcast(version: u16, payload: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        let _ = (version, payload);
        None
    }
}

/// Whether `ty` is a valid event type: two or more dot-separated segments, each starting with a
/// lowercase ASCII letter followed by lowercase letters, digits or `_`; at most 128 bytes.
///
/// ```
/// use tidewell_core::is_valid_event_type;
/// assert!(is_valid_event_type("payments.payment.created"));
/// assert!(!is_valid_event_type("Payments.Created"));
/// assert!(!is_valid_event_type("payments"));
/// ```
pub const fn is_valid_event_type(ty: &str) -> bool {
    let bytes = ty.as_bytes();
    if bytes.is_empty() || bytes.len() > 128 {
        return false;
    }
    let mut segments = 1;
    let mut at_segment_start = true;
    let mut rest = bytes;
    while let [b, tail @ ..] = rest {
        let b = *b;
        if at_segment_start {
            if !b.is_ascii_lowercase() {
                return false;
            }
            at_segment_start = false;
        } else if b == b'.' {
            segments += 1;
            at_segment_start = true;
        } else if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        rest = tail;
    }
    !at_segment_start && segments >= 2
}

/// A correlation id: ties together everything done for one request or one chain of events.
///
/// 1 to 128 visible ASCII characters, without `"`, `,`, `;` or `\`, so it can travel in an HTTP
/// header, an AMQP property and a log line unchanged. [`CorrelationId::new`] makes a UUID v7.
///
/// ```
/// use tidewell_core::CorrelationId;
/// let id: CorrelationId = "req-7f3a".parse()?;
/// assert_eq!(id.as_str(), "req-7f3a");
/// assert!("has space".parse::<CorrelationId>().is_err());
/// # Ok::<(), tidewell_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct CorrelationId(
    /// Always valid UTF-8 (checked visible ASCII). Shared bytes, so an HTTP header value can be
    /// made from it without a copy ([`CorrelationId::to_header_value`]).
    bytes::Bytes,
);

impl CorrelationId {
    /// The longest accepted correlation id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// A fresh correlation id: a UUID v7 (so ids sort by creation time, to the millisecond).
    ///
    /// Made on the request path of every server, so it is cheap: the clock and 74 bits from a
    /// per-thread generator, no lock and no formatting machinery. The random bits make ids unique,
    /// not secret: a correlation id is echoed to clients and is never a credential.
    pub fn new() -> Self {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        fast_uuid_v7().hyphenated().encode_lower(&mut buf);
        // One allocation holding the text; clones (the echoed header) share it by reference
        // count. (`copy_from_slice` would allocate once more on the first clone.)
        Self(bytes::Bytes::from_owner(Hyphenated(buf)))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        // Never empty in practice: the bytes were checked (or made) as visible ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id as an HTTP header value, sharing its bytes (no copy).
    ///
    /// ```
    /// let id: tidewell_core::CorrelationId = "req-7f3a".parse()?;
    /// assert_eq!(id.to_header_value(), "req-7f3a");
    /// # Ok::<(), tidewell_core::Error>(())
    /// ```
    #[cfg(feature = "http")]
    pub fn to_header_value(&self) -> http::HeaderValue {
        // Visible ASCII is always a valid header value; the fallback is never taken.
        http::HeaderValue::from_maybe_shared(self.0.clone())
            .unwrap_or_else(|_| http::HeaderValue::from_static("invalid"))
    }

    /// Whether `s` would parse as a correlation id, without making one (no allocation).
    ///
    /// ```
    /// use tidewell_core::CorrelationId;
    /// assert!(CorrelationId::is_valid("req-7f3a"));
    /// assert!(!CorrelationId::is_valid("has space"));
    /// ```
    pub fn is_valid(s: &str) -> bool {
        Self::check(s).is_ok()
    }

    fn check(s: &str) -> Result<(), Error> {
        let reason = if s.is_empty() {
            "it is empty"
        } else if s.len() > Self::MAX_LEN {
            "it is longer than 128 bytes"
        } else if !s
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
        {
            "it holds a character that is not allowed"
        } else {
            return Ok(());
        };
        Err(Error::InvalidCorrelationId { reason })
    }
}

/// A UUID v7 from the system clock and the thread's `fastrand` generator: 48 bits of
/// milliseconds, version, 12 + 62 random bits, variant (RFC 9562 §5.7).
fn fast_uuid_v7() -> Uuid {
    let ms = unix_millis();
    let rand = fastrand::u128(..);
    let high = (u128::from(ms & 0xFFFF_FFFF_FFFF) << 80) | (0x7 << 76);
    let rand_a = (rand >> 64) & 0xFFF; // 12 bits
    let rand_b = rand & 0x3FFF_FFFF_FFFF_FFFF; // 62 bits
    Uuid::from_u128(high | (rand_a << 64) | (0b10 << 62) | rand_b)
}

/// Milliseconds since the Unix epoch, for UUID v7 timestamps. On Linux from the coarse real-time
/// clock: the time of the kernel's last tick (1-4 ms old), read without the TSC, a fifth of the
/// cost of the precise clock (4 ns against 23 ns here), on every request that brings no id. Ids
/// still sort by creation time, to within a tick.
fn unix_millis() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let ms = u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000_000;
        secs.saturating_mul(1000).saturating_add(ms)
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The text of a fresh UUID: always ASCII, owned by the id's [`bytes::Bytes`].
struct Hyphenated([u8; uuid::fmt::Hyphenated::LENGTH]);

impl AsRef<[u8]> for Hyphenated {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::str::FromStr for CorrelationId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::check(s)?;
        Ok(Self(bytes::Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for CorrelationId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::check(&s)?;
        Ok(Self(bytes::Bytes::from(s)))
    }
}

impl Serialize for CorrelationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl From<CorrelationId> for String {
    fn from(id: CorrelationId) -> String {
        id.as_str().to_owned()
    }
}

impl From<Uuid> for CorrelationId {
    fn from(id: Uuid) -> Self {
        Self(bytes::Bytes::from(id.to_string()))
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({:?})", self.as_str())
    }
}

/// An event as it travels: identity, type and version, provenance, and the payload.
///
/// Build one with [`Envelope::new`], encode it with [`Envelope::to_json`], decode it with
/// [`Envelope::from_json`] (or [`RawEnvelope::parse`] then [`RawEnvelope::decode`] when the type
/// is known only at run time). The JSON form is documented in `docs/events.md`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    version: u16,
    source: String,
    #[serde(with = "utc_rfc3339")]
    occurred_at: OffsetDateTime,
    correlation_id: CorrelationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    payload: T,
}

/// An envelope whose payload is still JSON: what a router reads before it knows the Rust type.
pub type RawEnvelope = Envelope<serde_json::Value>;

impl<T> Envelope<T> {
    /// The envelope id, a UUID v7; also the AMQP `message_id` and the de-duplication key.
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The dotted event type, e.g. `payments.payment.created`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The payload schema version.
    pub fn version(&self) -> u16 {
        self.version
    }
    /// The service that emitted the event.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// When the event happened, in UTC.
    pub fn occurred_at(&self) -> OffsetDateTime {
        self.occurred_at
    }
    /// The correlation id of the request or chain this event belongs to.
    pub fn correlation_id(&self) -> &CorrelationId {
        &self.correlation_id
    }
    /// The id of the event that caused this one, if any.
    pub fn causation_id(&self) -> Option<Uuid> {
        self.causation_id
    }
    /// The W3C `traceparent` of the span that emitted the event, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }
    /// The payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }
    /// Takes the payload out of the envelope.
    pub fn into_payload(self) -> T {
        self.payload
    }

    /// Sets the correlation id (by default a fresh one).
    #[must_use]
    pub fn with_correlation_id(mut self, id: CorrelationId) -> Self {
        self.correlation_id = id;
        self
    }

    /// Sets the W3C `traceparent` header value of the emitting span.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Marks this event as caused by `cause`: takes its correlation id and records its id as the
    /// causation id.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use tidewell_core::{Envelope, Event};
    /// # #[derive(Serialize, Deserialize)] struct Paid;
    /// # impl Event for Paid { const TYPE: &'static str = "payments.payment.completed"; const VERSION: u16 = 1; }
    /// # #[derive(Serialize, Deserialize)] struct Mailed;
    /// # impl Event for Mailed { const TYPE: &'static str = "mail.receipt.sent"; const VERSION: u16 = 1; }
    /// let paid = Envelope::new("payments", Paid);
    /// let mailed = Envelope::new("mail", Mailed).caused_by(&paid);
    /// assert_eq!(mailed.correlation_id(), paid.correlation_id());
    /// assert_eq!(mailed.causation_id(), Some(paid.id()));
    /// ```
    #[must_use]
    pub fn caused_by<U>(mut self, cause: &Envelope<U>) -> Self {
        self.correlation_id = cause.correlation_id.clone();
        self.causation_id = Some(cause.id);
        self
    }

    /// Separates the header fields from the payload.
    fn split(self) -> (Envelope<()>, T) {
        let head = Envelope {
            id: self.id,
            event_type: self.event_type,
            version: self.version,
            source: self.source,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            traceparent: self.traceparent,
            payload: (),
        };
        (head, self.payload)
    }
}

impl Envelope<()> {
    fn with_payload<U>(self, payload: U, version: u16) -> Envelope<U> {
        Envelope {
            id: self.id,
            event_type: self.event_type,
            version,
            source: self.source,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            traceparent: self.traceparent,
            payload,
        }
    }
}

impl<E: Event> Envelope<E> {
    /// A new envelope for `payload`, emitted by `source` now, with a fresh id and correlation id.
    pub fn new(source: impl Into<String>, payload: E) -> Self {
        const {
            assert!(
                is_valid_event_type(E::TYPE),
                "Event::TYPE must be two or more dot-separated lowercase segments"
            );
        }
        Self {
            id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            source: source.into(),
            occurred_at: OffsetDateTime::now_utc(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            traceparent: None,
            payload,
        }
    }

    /// Encodes the envelope as JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|source| Error::Encode {
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// Decodes JSON bytes into an envelope of `E`, upcasting an older version through
    /// [`Event::upcast`].
    ///
    /// Fails with [`Error::UnexpectedEventType`] for another type, [`Error::UnsupportedVersion`]
    /// for a version that cannot be read, and [`Error::MalformedEnvelope`] or
    /// [`Error::MalformedPayload`] for bytes that do not fit.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        RawEnvelope::parse(bytes)?.decode()
    }
}

impl RawEnvelope {
    /// Parses JSON bytes into an envelope whose payload is still JSON, checking the envelope
    /// fields (id, type, version, source, time, correlation id) but not the payload.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let raw: RawEnvelope =
            serde_json::from_slice(bytes).map_err(|source| Error::MalformedEnvelope { source })?;
        if !is_valid_event_type(&raw.event_type) {
            return Err(Error::InvalidEventType {
                found: raw.event_type.chars().take(128).collect(),
            });
        }
        Ok(raw)
    }

    /// Decodes the payload as `E`, upcasting an older version through [`Event::upcast`].
    ///
    /// On success the envelope carries `E::VERSION`, the version its payload now holds.
    pub fn decode<E: Event>(self) -> Result<Envelope<E>, Error> {
        if self.event_type != E::TYPE {
            return Err(Error::UnexpectedEventType {
                expected: E::TYPE,
                found: self.event_type,
            });
        }
        let version = self.version;
        let (head, payload) = self.split();
        let decoded = match version.cmp(&E::VERSION) {
            std::cmp::Ordering::Equal => Some(serde_json::from_value(payload)),
            std::cmp::Ordering::Less => E::upcast(version, payload),
            std::cmp::Ordering::Greater => None,
        };
        match decoded {
            Some(Ok(payload)) => Ok(head.with_payload(payload, E::VERSION)),
            Some(Err(source)) => Err(Error::MalformedPayload {
                event_type: head.event_type,
                version,
                source,
            }),
            None => Err(Error::UnsupportedVersion {
                event_type: head.event_type,
                found: version,
                supported: E::VERSION,
            }),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Envelope<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("type", &self.event_type)
            .field("version", &self.version)
            .field("source", &self.source)
            .field("occurred_at", &self.occurred_at)
            .field("correlation_id", &self.correlation_id)
            .field("causation_id", &self.causation_id)
            .field("traceparent", &self.traceparent)
            .field("payload", &self.payload)
            .finish()
    }
}

/// RFC 3339 on the wire; any offset accepted on read and normalised to UTC.
mod utc_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::{OffsetDateTime, UtcOffset};

    pub(super) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t
            .to_offset(UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(|t| t.to_offset(UtcOffset::UTC))
            .map_err(|e| serde::de::Error::custom(format_args!("occurred_at: {e}")))
    }
}

#[cfg(test)]
mod tests;
