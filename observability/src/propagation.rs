//! W3C trace context through any carrier: HTTP headers here, AMQP headers in the event hub.

/// Somewhere string headers can be read and written: HTTP headers, AMQP headers, WebSocket frame
/// metadata.
pub trait Carrier {
    /// The value of `name`, if present and text.
    fn get(&self, name: &str) -> Option<&str>;
    /// Sets `name` to `value` (dropped if the carrier cannot hold it).
    fn set(&mut self, name: &str, value: &str);
}

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
/// use tidewell_observability::is_valid_traceparent;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_http_headers() {
        let mut headers = http::HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(inject_traceparent(&mut headers, tp));
        assert_eq!(extract_traceparent(&headers).as_deref(), Some(tp));
        assert!(!inject_traceparent(&mut headers, "00-xyz"));
        headers.insert("traceparent", http::HeaderValue::from_static("01-bad"));
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
