//! What every Tidewell HTTP answer shares (feature `http`): the request id headers and the one
//! JSON error shape, `{"error": {"code", "message", "request_id"}}`, that the proxy, the
//! WebSocket upgrade and the services all answer with, so a client reads every error the same
//! way.
//!
//! ```
//! use tidewell_core::http::{error_body, request_id_of, CORRELATION_HEADER};
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert(CORRELATION_HEADER, http::HeaderValue::from_static("req-7"));
//! let body = error_body("not_found", "no such payment", request_id_of(&headers));
//! let json: serde_json::Value = serde_json::from_str(&body)?;
//! assert_eq!(json["error"]["code"], "not_found");
//! assert_eq!(json["error"]["request_id"], "req-7");
//! # Ok::<(), serde_json::Error>(())
//! ```

use http::{HeaderMap, HeaderName};

/// The correlation id of a request, kept across every hop (`x-correlation-id`).
pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The request id a client may send and gets back (`x-request-id`).
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The JSON error body: `{"error": {"code", "message", "request_id"}}`.
pub fn error_body(code: &str, message: &str, request_id: &str) -> String {
    serde_json::json!({
        "error": { "code": code, "message": message, "request_id": request_id }
    })
    .to_string()
}

/// The request's id as it arrived: `x-correlation-id` (which a correlation layer in front
/// always sets), else `x-request-id`, else `""`.
pub fn request_id_of(headers: &HeaderMap) -> &str {
    [CORRELATION_HEADER, REQUEST_ID_HEADER]
        .iter()
        .find_map(|name| headers.get(name)?.to_str().ok())
        .unwrap_or_default()
}
