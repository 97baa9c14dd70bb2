//! What every service's OpenAPI document shares.

use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The error body every endpoint answers with (documentation of [`ApiError`](crate::ApiError)).
#[derive(Debug, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The fields of an error.
#[derive(Debug, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`invalid_body`, `unauthorized`, `not_found`, ...).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// The request's correlation id, to quote when reporting it.
    pub request_id: Option<String>,
}

/// Adds the `bearer` security scheme (the access tokens of the auth service).
#[derive(Debug)]
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}
