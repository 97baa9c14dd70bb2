//! The message both backends carry, and the headers Tidewell sets on it.

use std::collections::BTreeMap;

use bytes::Bytes;

use tidewell_core::propagation::Carrier;

use crate::Error;

/// Header: which handler run this delivery is (1 for the first).
pub(crate) const ATTEMPT: &str = "x-tidewell-attempt";
/// Header: the error of the previous handler run.
pub(crate) const LAST_ERROR: &str = "x-tidewell-last-error";
/// Header: why a message was dead-lettered.
pub(crate) const DEAD_REASON: &str = "x-tidewell-dead-reason";
/// Header: the handler that dead-lettered it.
pub(crate) const HANDLER: &str = "x-tidewell-handler";
/// Header: the queue it was consumed from.
pub(crate) const QUEUE: &str = "x-tidewell-queue";
/// Header: W3C trace context of the publishing span.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// The longest error text kept in a header.
const MAX_HEADER_TEXT: usize = 1_024;

/// A header value: text or an integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderValue {
    Text(String),
    Int(i64),
}

/// A message as published and delivered, independent of the backend.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub(crate) body: Bytes,
    pub(crate) message_id: String,
    pub(crate) event_type: String,
    pub(crate) correlation_id: Option<String>,
    pub(crate) app_id: Option<String>,
    /// Unix seconds; carried by AMQP, not kept by the in-memory broker's readers.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) timestamp: Option<u64>,
    pub(crate) headers: BTreeMap<String, HeaderValue>,
}

impl Message {
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        match self.headers.get(name) {
            Some(HeaderValue::Text(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        match self.headers.get(name) {
            Some(HeaderValue::Int(i)) => Some(*i),
            Some(HeaderValue::Text(s)) => s.parse().ok(),
            None => None,
        }
    }

    /// The handler run this delivery is, from 1; a missing or nonsensical header counts as 1.
    pub(crate) fn attempt(&self) -> u32 {
        self.int(ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1)
    }

    pub(crate) fn set_text(&mut self, name: &str, value: &str) {
        let mut value = value.to_owned();
        if value.len() > MAX_HEADER_TEXT {
            let mut cut = MAX_HEADER_TEXT;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
        }
        self.headers
            .insert(name.to_owned(), HeaderValue::Text(value));
    }

    pub(crate) fn set_int(&mut self, name: &str, value: i64) {
        self.headers
            .insert(name.to_owned(), HeaderValue::Int(value));
    }
}

impl Carrier for Message {
    fn get(&self, name: &str) -> Option<&str> {
        self.text(name)
    }

    fn set(&mut self, name: &str, value: &str) {
        self.set_text(name, value);
    }
}

/// A received message and the means to settle it.
pub(crate) struct Delivery {
    pub(crate) message: Message,
    pub(crate) redelivered: bool,
    pub(crate) acker: Box<dyn Acker>,
}

/// Settles one delivery on the backend it came from.
pub(crate) trait Acker: Send + Sync {
    /// The message is done: remove it from the queue.
    fn ack(&self) -> futures_util::future::BoxFuture<'_, Result<(), Error>>;
    /// Give it back to the queue (`requeue`) or dead-letter it through the queue's DLX.
    fn reject(&self, requeue: bool) -> futures_util::future::BoxFuture<'_, Result<(), Error>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            body: Bytes::from_static(b"{}"),
            message_id: "m".into(),
            event_type: "a.b".into(),
            correlation_id: None,
            app_id: None,
            timestamp: None,
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn attempt_defaults_to_one_and_ignores_nonsense() {
        let mut m = message();
        assert_eq!(m.attempt(), 1);
        m.set_int(ATTEMPT, 3);
        assert_eq!(m.attempt(), 3);
        for bad in [0, -5, i64::MAX] {
            m.set_int(ATTEMPT, bad);
            assert_eq!(m.attempt(), 1, "{bad}");
        }
        m.set_text(ATTEMPT, "x");
        assert_eq!(m.attempt(), 1);
    }

    #[test]
    fn header_text_is_bounded_on_a_char_boundary() {
        let mut m = message();
        m.set_text(LAST_ERROR, &"é".repeat(1_000));
        let kept = m.text(LAST_ERROR).unwrap();
        assert!(kept.len() <= MAX_HEADER_TEXT && kept.chars().all(|c| c == 'é'));
    }
}
