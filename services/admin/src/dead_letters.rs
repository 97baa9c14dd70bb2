//! The operator's dead-letter tools (admin role): list what waits in a service queue's
//! dead-letter queue without removing it, and replay it into that queue.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as AxumState};
use serde::{Deserialize, Serialize};
use tidewell_event_hub::{DeadLetter, Error as HubError};
use tidewell_service_kit::openapi::ErrorBody;
use tidewell_service_kit::{ApiError, AuthUser, JsonBody};

use crate::api::{State, admin};

type S = AxumState<Arc<State>>;

/// How long a listing or replay waits for the first dead letter.
const WAIT: Duration = Duration::from_millis(500);

/// Which queue, how many.
#[derive(Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Pick {
    /// The service queue, e.g. `admin.events`.
    queue: String,
    /// 1 to 100 (default 20).
    #[serde(default)]
    limit: Option<u32>,
}

impl Pick {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.unwrap_or(20) {
            n @ 1..=100 => Ok(n as usize),
            _ => Err(ApiError::unprocessable(
                "invalid_limit",
                "limit is 1 to 100",
            )),
        }
    }
}

/// One dead letter.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Letter {
    message_id: String,
    event_type: String,
    /// `retries-exhausted`, `permanent`, `poison`, `too-large` or `broker`.
    reason: String,
    handler: Option<String>,
    attempts: u32,
    last_error: Option<String>,
    correlation_id: Option<String>,
    source: Option<String>,
    /// The event as it was published (null if it is not JSON).
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

impl From<DeadLetter> for Letter {
    fn from(d: DeadLetter) -> Self {
        Self {
            event: serde_json::from_slice(&d.body).unwrap_or(serde_json::Value::Null),
            message_id: d.message_id,
            event_type: d.event_type,
            reason: d.reason.as_str().to_owned(),
            handler: d.handler,
            attempts: d.attempts,
            last_error: d.last_error,
            correlation_id: d.correlation_id,
            source: d.source,
        }
    }
}

/// What a listing answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Listing {
    queue: String,
    /// How many wait in the dead-letter queue.
    waiting: u64,
    /// The first of them (up to the limit), left in place.
    letters: Vec<Letter>,
}

/// What a replay answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Replayed {
    queue: String,
    /// The message ids sent back to the queue.
    replayed: Vec<String>,
}

fn hub_error(queue: &str, e: HubError) -> ApiError {
    match e {
        HubError::UnknownQueue { .. } => ApiError::not_found(format!(
            "no service queue {queue:?} here; the platform knows every queue, a standalone admin service only its own"
        )),
        other => ApiError::internal(other),
    }
}

/// The dead letters of a service queue, left where they are (admin role).
#[utoipa::path(get, path = "/api/admin/dead-letters", tag = "admin", params(Pick),
    security(("bearer" = [])),
    responses((status = 200, body = Listing), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn list(
    AxumState(s): S,
    AuthUser(c): AuthUser,
    q: Result<Query<Pick>, QueryRejection>,
) -> Result<Json<Listing>, ApiError> {
    admin(&c)?;
    let Query(q) = q.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let limit = q.limit()?;
    let waiting = s
        .hub
        .dead_letter_depth(&q.queue)
        .await
        .map_err(|e| hub_error(&q.queue, e))?;
    let letters = s
        .hub
        .peek_dead_letters(&q.queue, limit, WAIT)
        .await
        .map_err(|e| hub_error(&q.queue, e))?;
    Ok(Json(Listing {
        queue: q.queue,
        waiting,
        letters: letters.into_iter().map(Letter::from).collect(),
    }))
}

/// Sends up to `limit` dead letters back to their service queue (admin role): each is handled
/// again from attempt 1, once the cause is fixed.
#[utoipa::path(post, path = "/api/admin/dead-letters/replay", tag = "admin", request_body = Pick,
    security(("bearer" = [])),
    responses((status = 200, body = Replayed), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn replay(
    AxumState(s): S,
    AuthUser(c): AuthUser,
    JsonBody(q): JsonBody<Pick>,
) -> Result<Json<Replayed>, ApiError> {
    admin(&c)?;
    let limit = q.limit()?;
    let done = s
        .hub
        .replay_dead_letters(&q.queue, limit, WAIT)
        .await
        .map_err(|e| hub_error(&q.queue, e))?;
    tracing::info!(queue = %q.queue, replayed = done.len(), admin = %c.sub, "dead letters replayed");
    Ok(Json(Replayed {
        queue: q.queue,
        replayed: done.into_iter().map(|d| d.message_id).collect(),
    }))
}
