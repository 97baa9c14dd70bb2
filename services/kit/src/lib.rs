//! What every Tidewell reference service shares, so that each service is mostly its own routes:
//!
//! - [`ApiError`]: every error is `{"error": {"code", "message", "request_id"}}` with the right
//!   status; the request id is the correlation id of the request ([`serve`] sets it up).
//! - [`JsonBody`]: strict JSON input. Malformed JSON is a 400, a body of the wrong shape (a
//!   missing field, a wrong type, an unknown field with `#[serde(deny_unknown_fields)]`) a 422, a
//!   body over the limit a 413; never a 500.
//! - [`AuthUser`]: the verified claims of the `Authorization: Bearer` token, or a 401.
//! - [`CommonConfig`]: the settings every service has (address, database, JWT secret), read
//!   from the variables its [`CommonVars`] name.
//! - [`database`]: a Postgres or SQLite pool (sqlx `Any`) with the service's migrations run;
//!   [`start_outbox`]: the transactional outbox and its relay to the hub.
//! - [`StartError`]: why a service could not start (its secret, its database or hub, its own
//!   part).
//! - [`serve`]: correlation ids, request ids in errors, graceful shutdown.
//! - [`Service`] and [`run_service`]: a service's binary (command line, telemetry, event hub,
//!   serving until a signal) in one call; [`run`] for any other program.
//! - `test_support` (feature `test-support`): what the services' tests share.
//! - [`Ops`]: `/metrics` (`service` label on every series), `/healthz` and `/readyz` (each
//!   dependency checked with a timeout, answered as JSON).
//! - [`openapi`]: the error schema and the bearer scheme every service's OpenAPI document
//!   (utoipa, at `/openapi.json`) shares.
//!
//! ```
//! use axum::{Router, routing::post};
//! use serde::Deserialize;
//! use tidewell_service_kit::{ApiError, JsonBody};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Greet { name: String }
//!
//! async fn greet(JsonBody(g): JsonBody<Greet>) -> Result<String, ApiError> {
//!     if g.name.is_empty() {
//!         return Err(ApiError::unprocessable("invalid_name", "name must not be empty"));
//!     }
//!     Ok(format!("hello {}", g.name))
//! }
//! let app: Router = Router::new().route("/greet", post(greet));
//! ```

mod auth;
mod config;
mod db;
mod error;
mod extract;
mod housekeeping;
pub mod openapi;
mod ops;
mod program;
mod serve;
mod serve_tls;
mod startup;
#[cfg(feature = "test-support")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-support")))]
pub mod test_support;

pub use auth::{AUDIENCE, AuthState, AuthUser, ISSUER, issuer, verifier};
pub use config::{CommonConfig, CommonVars, JWT_SECRET, NODE_ID, node_id};
pub use db::{database, now_ms, prune_outbox, start_outbox, start_relay};
pub use error::{ApiError, request_id};
pub use extract::JsonBody;
pub use ops::{CHECK_TIMEOUT, Ops, Readiness};
pub use program::{Service, run, run_service};
pub use serve::{
    ListenError, PeerAddr, ServiceListener, layers, listen, nodelay, serve, shed_load,
    shutdown_signal,
};
pub use serve_tls::serve_tls;
pub use startup::StartError;
