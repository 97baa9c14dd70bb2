//! JSON errors that carry the request id.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

tokio::task_local! {
    /// The correlation id of the request being handled.
    static REQUEST_ID: String;
}

/// An error answer: `{"error": {"code", "message", "request_id"}}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: the request was read and is invalid.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 500: logs `error` with the request id; the answer says only that it failed.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, request_id = current().as_deref().unwrap_or("-"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; quote the request id when reporting it",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = current().unwrap_or_default();
        let body = tidewell_core::http::error_body(self.code, &self.message, &id);
        (
            self.status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// Middleware (`axum::middleware::from_fn(request_id)`, [`serve`](crate::serve) adds it): makes
/// the request's correlation id (from `CorrelationLayer`, else `x-correlation-id` /
/// `x-request-id`, else a new one) the `request_id` of every [`ApiError`] answered for it.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = tidewell_observability::correlation_id_of(req.headers());
    REQUEST_ID.scope(id.to_string(), next.run(req)).await
}
