//! W3C trace context through any carrier: HTTP headers, AMQP headers (in the event hub), WebSocket
//! frame metadata.
//!
//! [`Carrier`] is the one trait every transport implements. With the feature `otel`,
//! [`inject_span`] writes a span's OpenTelemetry context into a carrier through the global
//! propagator (W3C `traceparent`/`tracestate`, and `baggage` if installed) and [`set_span_parent`]
//! makes a span the child of the context a carrier brought. Without `otel` both do nothing, so a
//! library calls them unconditionally and costs nothing when tracing export is off.

use std::collections::{BTreeMap, HashMap};

/// Somewhere string headers can be read and written: HTTP headers, AMQP headers, WebSocket frame
/// metadata.
pub trait Carrier {
    /// The value of `name`, if present and text.
    fn get(&self, name: &str) -> Option<&str>;
    /// Sets `name` to `value` (dropped if the carrier cannot hold it).
    fn set(&mut self, name: &str, value: &str);
}

impl Carrier for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }

    fn set(&mut self, name: &str, value: &str) {
        self.insert(name.to_owned(), value.to_owned());
    }
}

impl Carrier for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }

    fn set(&mut self, name: &str, value: &str) {
        self.insert(name.to_owned(), value.to_owned());
    }
}

#[cfg(feature = "http")]
impl Carrier for http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        self.get(name)?.to_str().ok()
    }

    fn set(&mut self, name: &str, value: &str) {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            self.insert(n, v);
        }
    }
}

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";

/// Whether `value` is a well-formed W3C `traceparent` (version 00): `00-<32 hex trace id, not all
/// zero>-<16 hex span id, not all zero>-<2 hex flags>`.
///
/// ```
/// use tidewell_core::propagation::is_valid_traceparent;
/// assert!(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("garbage"));
/// ```
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    matches!(parts.as_slice(), [v, t, s, f]
        if *v == "00" && hex(t, 32) && nonzero(t) && hex(s, 16) && nonzero(s) && hex(f, 2))
}

/// Reads a valid `traceparent` from `carrier` (an invalid one is ignored, never trusted).
pub fn extract_traceparent(carrier: &impl Carrier) -> Option<String> {
    carrier
        .get(TRACEPARENT)
        .filter(|v| is_valid_traceparent(v))
        .map(str::to_owned)
}

/// Writes `traceparent` into `carrier` if it is valid; returns whether it did.
pub fn inject_traceparent(carrier: &mut impl Carrier, traceparent: &str) -> bool {
    if is_valid_traceparent(traceparent) {
        carrier.set(TRACEPARENT, traceparent);
        true
    } else {
        false
    }
}

/// Writes `span`'s OpenTelemetry context into `carrier` through the global propagator (set by
/// `tidewell_observability::init`). Does nothing without the feature `otel`, or when `span` is
/// not recorded by an OpenTelemetry layer.
#[cfg(feature = "otel")]
pub fn inject_span(span: &tracing::Span, carrier: &mut impl Carrier) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Injector(carrier));
    });
}

/// Writes `span`'s OpenTelemetry context into `carrier` (does nothing: feature `otel` is off).
#[cfg(not(feature = "otel"))]
pub fn inject_span(_span: &tracing::Span, _carrier: &mut impl Carrier) {}

/// The W3C `traceparent` of `span` (through the global propagator), to store with work that
/// runs later elsewhere, an outbox row say. `None` without the feature `otel`, or when no
/// OpenTelemetry layer records `span`.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier = BTreeMap::new();
    inject_span(span, &mut carrier);
    extract_traceparent(&carrier)
}

/// Makes `span` a child of the remote context `carrier` brought (W3C `traceparent`, checked by the
/// propagator; an invalid one is ignored and `span` keeps its local parent). Does nothing without
/// the feature `otel`.
#[cfg(feature = "otel")]
pub fn set_span_parent(span: &tracing::Span, carrier: &impl Carrier) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() || carrier.get(TRACEPARENT).is_none() {
        return; // the common cases (tracing off, a request that starts a trace) cost nothing
    }
    let context =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extractor(carrier)));
    if context.span().span_context().is_valid() {
        // ok to ignore: fails only when no OpenTelemetry layer records this span
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the context `carrier` brought (does nothing: feature `otel` is off).
#[cfg(not(feature = "otel"))]
pub fn set_span_parent(_span: &tracing::Span, _carrier: &impl Carrier) {}

/// Marks `span` failed: status `ERROR` with `error` as its description, and an `exception` event
/// carrying `exception.message`, which OTLP backends (Jaeger, Tempo, Sentry's OTLP intake) show as
/// the span's error. Does nothing without the feature `otel`; log the error as well.
#[cfg(feature = "otel")]
pub fn record_error(span: &tracing::Span, error: &dyn std::fmt::Display) {
    use opentelemetry::KeyValue;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() {
        return; // nothing records it: do not even format the error
    }
    let message = error.to_string();
    span.add_event(
        "exception",
        vec![KeyValue::new("exception.message", message.clone())],
    );
    span.set_status(opentelemetry::trace::Status::error(message));
}

/// Marks `span` failed (does nothing: feature `otel` is off).
#[cfg(not(feature = "otel"))]
pub fn record_error(_span: &tracing::Span, _error: &dyn std::fmt::Display) {}

#[cfg(feature = "otel")]
struct Injector<'a, C: ?Sized>(&'a mut C);

#[cfg(feature = "otel")]
impl<C: Carrier + ?Sized> opentelemetry::propagation::Injector for Injector<'_, C> {
    fn set(&mut self, key: &str, value: String) {
        self.0.set(key, &value);
    }
}

#[cfg(feature = "otel")]
struct Extractor<'a, C: ?Sized>(&'a C);

#[cfg(feature = "otel")]
impl<C: Carrier + ?Sized> opentelemetry::propagation::Extractor for Extractor<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_map() {
        let mut headers = HashMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(inject_traceparent(&mut headers, tp));
        assert_eq!(extract_traceparent(&headers).as_deref(), Some(tp));
        assert!(!inject_traceparent(&mut headers, "00-xyz"));
        headers.insert("traceparent".into(), "01-bad".into());
        assert_eq!(
            extract_traceparent(&headers),
            None,
            "an invalid incoming value is dropped"
        );
    }

    #[test]
    fn validation_rules() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
    }
}
