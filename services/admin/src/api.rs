//! The HTTP handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as AxumState};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row as _};
use tidewell_auth::{Claims, Verifier};
use tidewell_service_kit::openapi::ErrorBody;
use tidewell_service_kit::{ApiError, AuthState, AuthUser};

/// What every handler shares.
pub(crate) struct State {
    pub(crate) db: AnyPool,
    pub(crate) verifier: Verifier,
    /// For the dead-letter tools.
    pub(crate) hub: tidewell_event_hub::Hub,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl AuthState for State {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

type S = AxumState<Arc<State>>;

pub(crate) fn admin(c: &Claims) -> Result<(), ApiError> {
    if c.has_role("admin") {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs the admin role"))
    }
}

/// Filter and paging.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    /// Only events of this type (audit log).
    #[serde(default, rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// 1 to 200 (default 50).
    #[serde(default)]
    limit: Option<u32>,
    /// 0 to 1000000.
    #[serde(default)]
    offset: Option<u32>,
}

fn bounds(q: &Page) -> Result<(i64, i64), ApiError> {
    let limit = q.limit.unwrap_or(50);
    let offset = q.offset.unwrap_or(0);
    if !(1..=200).contains(&limit) || offset > 1_000_000 {
        return Err(ApiError::unprocessable(
            "invalid_page",
            "limit is 1 to 200, offset 0 to 1000000",
        ));
    }
    Ok((i64::from(limit), i64::from(offset)))
}

/// One audit entry.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEntry {
    event_id: String,
    event_type: String,
    source: String,
    occurred_at: String,
    correlation_id: String,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

/// The audit log, newest first (admin role).
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(Page), security(("bearer" = [])),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn audit(
    AxumState(s): S,
    AuthUser(c): AuthUser,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    admin(&c)?;
    let Query(q) = q.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let (limit, offset) = bounds(&q)?;
    let rows = sqlx::query(
        "SELECT event_id, event_type, source, occurred_at, correlation_id, payload FROM audit_log \
         WHERE ($1 = '' OR event_type = $1) ORDER BY received_at DESC, event_id DESC \
         LIMIT $2 OFFSET $3",
    )
    .bind(q.event_type.unwrap_or_default())
    .bind(limit)
    .bind(offset)
    .fetch_all(&s.db)
    .await
    .map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let payload: String = r.try_get("payload").map_err(ApiError::internal)?;
        out.push(AuditEntry {
            event_id: r.try_get("event_id").map_err(ApiError::internal)?,
            event_type: r.try_get("event_type").map_err(ApiError::internal)?,
            source: r.try_get("source").map_err(ApiError::internal)?,
            occurred_at: r.try_get("occurred_at").map_err(ApiError::internal)?,
            correlation_id: r.try_get("correlation_id").map_err(ApiError::internal)?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(Json(out))
}

/// One user.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct UserRow {
    user_id: String,
    email: String,
    name: String,
    role: String,
    logins: i64,
    last_login_at_ms: Option<i64>,
}

/// The users (admin role).
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(Page), security(("bearer" = [])),
    responses((status = 200, body = Vec<UserRow>), (status = 403, body = ErrorBody)))]
pub(crate) async fn users(
    AxumState(s): S,
    AuthUser(c): AuthUser,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<UserRow>>, ApiError> {
    admin(&c)?;
    let Query(q) = q.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let (limit, offset) = bounds(&q)?;
    let rows = sqlx::query(
        "SELECT user_id, email, name, role, logins, last_login_at FROM users \
         WHERE deleted = 0 AND email <> '' ORDER BY created_at DESC, user_id LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(&s.db)
    .await
    .map_err(ApiError::internal)?;
    rows.iter()
        .map(|r| {
            Ok(UserRow {
                user_id: r.try_get("user_id")?,
                email: r.try_get("email")?,
                name: r.try_get("name")?,
                role: r.try_get("role")?,
                logins: r.try_get("logins")?,
                last_login_at_ms: r.try_get("last_login_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map(Json)
        .map_err(ApiError::internal)
}

/// Dashboard figures.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Dashboard {
    users: i64,
    logins: i64,
    events: i64,
    payments_created: i64,
    payments_updated: i64,
    sessions_revoked: i64,
}

/// Figures (admin role).
#[utoipa::path(get, path = "/api/admin/dashboard", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Dashboard), (status = 403, body = ErrorBody)))]
pub(crate) async fn dashboard(
    AxumState(s): S,
    AuthUser(c): AuthUser,
) -> Result<Json<Dashboard>, ApiError> {
    admin(&c)?;
    let count = |sql: &'static str| {
        let db = s.db.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(&db)
                .await
                .and_then(|r| r.try_get::<i64, _>("n"))
                .map_err(ApiError::internal)
        }
    };
    let by_type = |t: &'static str| {
        let db = s.db.clone();
        async move {
            sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE event_type = $1")
                .bind(t)
                .fetch_one(&db)
                .await
                .and_then(|r| r.try_get::<i64, _>("n"))
                .map_err(ApiError::internal)
        }
    };
    Ok(Json(Dashboard {
        users: count("SELECT COUNT(*) AS n FROM users WHERE deleted = 0 AND email <> ''").await?,
        logins: by_type("auth.user.login").await?,
        events: count("SELECT COUNT(*) AS n FROM audit_log").await?,
        payments_created: by_type("payments.payment.created").await?,
        payments_updated: by_type("payments.payment.updated").await?,
        sessions_revoked: by_type("auth.session.revoked").await?,
    }))
}
