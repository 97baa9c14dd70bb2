//! The HTTP handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row as _};
use tidewell_auth::{Claims, Verifier};
use tidewell_cache::{Cache, Key, Namespace, Tag};
use tidewell_event_hub::Hub;
use tidewell_event_hub::outbox::Outbox;
use tidewell_service_kit::openapi::ErrorBody;
use tidewell_service_kit::{ApiError, AuthState, AuthUser, JsonBody, now_ms};

use crate::events::{PaymentCreated, PaymentUpdated};
use crate::money::{self, Amount};

/// What every handler shares.
pub(crate) struct State {
    pub(crate) db: AnyPool,
    pub(crate) outbox: Outbox,
    pub(crate) hub: Hub,
    pub(crate) verifier: Verifier,
    pub(crate) cache: Cache,
    pub(crate) reads: Namespace,
    pub(crate) ttl: Duration,
    pub(crate) max_in_flight: usize,
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

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

/// A payment as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Payment {
    id: String,
    user_id: String,
    amount: String,
    amount_cents: i64,
    currency: String,
    description: String,
    status: String,
    created_at_ms: i64,
    updated_at_ms: i64,
}

fn payment_of(row: &sqlx::any::AnyRow) -> Result<Payment, sqlx::Error> {
    let cents: i64 = row.try_get("amount_cents")?;
    Ok(Payment {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        amount: money::decimal(cents),
        amount_cents: cents,
        currency: row.try_get("currency")?,
        description: row.try_get("description")?,
        status: row.try_get("status")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

fn is_admin(c: &Claims) -> bool {
    c.has_role("admin")
}

/// A new payment.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Create {
    /// More than 0, at most two decimals: `"12.50"` or `12.5`.
    #[schema(value_type = String, example = "12.50")]
    amount: Amount,
    /// ISO 4217, e.g. `EUR`.
    currency: String,
    #[serde(default)]
    description: String,
}

/// Creates a pending payment for the caller.
#[utoipa::path(post, path = "/api/payments", tag = "payments", request_body = Create,
    security(("bearer" = [])),
    responses((status = 201, body = Payment), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
    JsonBody(c): JsonBody<Create>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    let cents =
        money::cents(&c.amount).map_err(|m| ApiError::unprocessable("invalid_amount", m))?;
    let currency =
        money::currency(&c.currency).map_err(|m| ApiError::unprocessable("invalid_currency", m))?;
    let description = c.description.trim().to_owned();
    if description.chars().count() > 500 || description.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_description",
            "the description has at most 500 characters and no control characters",
        ));
    }
    let now = now_ms();
    let payment = Payment {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: claims.sub.clone(),
        amount: money::decimal(cents),
        amount_cents: cents,
        currency,
        description,
        status: "pending".into(),
        created_at_ms: now,
        updated_at_ms: now,
    };
    let event = s.hub.envelope(PaymentCreated {
        payment_id: payment.id.clone(),
        user_id: payment.user_id.clone(),
        amount_cents: cents,
        currency: payment.currency.clone(),
        status: payment.status.clone(),
    });
    // The row and its event in one statement on PostgreSQL (one round trip).
    let insert = sqlx::query(
        "INSERT INTO payments (id, user_id, amount_cents, currency, description, status, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(payment.id.clone())
    .bind(payment.user_id.clone())
    .bind(cents)
    .bind(payment.currency.clone())
    .bind(payment.description.clone())
    .bind(payment.status.clone())
    .bind(now);
    s.outbox.write(insert, &event).await.map_err(internal)?;
    invalidate(&s, &[Tag::new("user").part(&payment.user_id)]).await;
    Ok((StatusCode::CREATED, Json(payment)))
}

/// Drops cached reads; a failure is logged (entries expire with their TTL).
async fn invalidate(s: &State, tags: &[Tag]) {
    if let Err(error) = s.reads.invalidate_tags(tags).await {
        tracing::warn!(%error, "cache invalidation failed; entries expire with their TTL");
    }
}

/// Filters and paging.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `pending`, `completed`, `failed` or `cancelled`.
    #[serde(default)]
    status: Option<String>,
    /// 1 to 100 (default 20).
    #[serde(default)]
    limit: Option<u32>,
    /// 0 to 100000.
    #[serde(default)]
    offset: Option<u32>,
}

/// A page of payments.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Page {
    items: Vec<Payment>,
    limit: u32,
    offset: u32,
    total: i64,
}

const STATUSES: [&str; 4] = ["pending", "completed", "failed", "cancelled"];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LoadError(String);

/// The caller's payments, newest first.
#[utoipa::path(get, path = "/api/payments", tag = "payments", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn list(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(20);
    let offset = q.offset.unwrap_or(0);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            "limit is 1 to 100",
        ));
    }
    if offset > 100_000 {
        return Err(ApiError::unprocessable(
            "invalid_offset",
            "offset is 0 to 100000",
        ));
    }
    if let Some(st) = &q.status
        && !STATUSES.contains(&st.as_str())
    {
        return Err(ApiError::unprocessable(
            "invalid_status",
            "status is pending, completed, failed or cancelled",
        ));
    }
    let user = claims.sub.clone();
    let key = Key::new("list")
        .part(&user)
        .part(q.status.as_deref().unwrap_or("all"))
        .part(limit)
        .part(offset);
    let db = s.db.clone();
    let status = q.status.clone();
    let owner = user.clone();
    let page = s
        .reads
        .get_or_load(
            &key,
            s.ttl,
            &[Tag::new("user").part(&user)],
            move || async move {
                load_page(&db, &owner, status.as_deref(), limit, offset)
                    .await
                    .map_err(|e| LoadError(e.to_string()))
            },
        )
        .await
        .map_err(internal)?;
    Ok(Json(page))
}

async fn load_page(
    db: &AnyPool,
    user: &str,
    status: Option<&str>,
    limit: u32,
    offset: u32,
) -> Result<Page, sqlx::Error> {
    let filter = status.unwrap_or("");
    let rows = sqlx::query(
        "SELECT id, user_id, amount_cents, currency, description, status, created_at, updated_at \
         FROM payments WHERE user_id = $1 AND ($2 = '' OR status = $2) \
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
    )
    .bind(user.to_owned())
    .bind(filter.to_owned())
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(db)
    .await?;
    let total: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM payments WHERE user_id = $1 AND ($2 = '' OR status = $2)",
    )
    .bind(user.to_owned())
    .bind(filter.to_owned())
    .fetch_one(db)
    .await?
    .try_get("n")?;
    Ok(Page {
        items: rows.iter().map(payment_of).collect::<Result<_, _>>()?,
        limit,
        offset,
        total,
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

async fn load_one(s: &State, id: &str) -> Result<Option<Payment>, ApiError> {
    let key = Key::new("payment").part(id);
    let db = s.db.clone();
    let pid = id.to_owned();
    // The owner is unknown before the load: tag by payment; the owner's tag is added by the
    // list reads. A status change invalidates `payment:<id>`.
    s.reads
        .get_or_load(
            &key,
            s.ttl,
            &[Tag::new("payment").part(id)],
            move || async move {
                let row = sqlx::query(
                    "SELECT id, user_id, amount_cents, currency, description, status, created_at, \
                 updated_at FROM payments WHERE id = $1",
                )
                .bind(pid)
                .fetch_optional(&db)
                .await
                .map_err(|e| LoadError(e.to_string()))?;
                row.as_ref()
                    .map(payment_of)
                    .transpose()
                    .map_err(|e| LoadError(e.to_string()))
            },
        )
        .await
        .map_err(internal)
}

/// One of the caller's payments (another user's is a 404, like a missing one).
#[utoipa::path(get, path = "/api/payments/{id}", tag = "payments",
    params(("id" = String, Path, description = "The payment id")),
    security(("bearer" = [])),
    responses((status = 200, body = Payment), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn get_one(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Payment>, ApiError> {
    let not_found = || ApiError::not_found("no such payment among yours");
    if !valid_id(&id) {
        return Err(not_found());
    }
    match load_one(&s, &id).await? {
        // Another user's payment is answered exactly like a missing one.
        Some(p) if p.user_id == claims.sub || is_admin(&claims) => Ok(Json(p)),
        _ => Err(not_found()),
    }
}

/// The new status.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetStatus {
    /// `completed`, `failed` or `cancelled` (from `pending` only).
    status: String,
}

/// Moves a pending payment to completed, failed or cancelled; anything else is a 409.
#[utoipa::path(patch, path = "/api/payments/{id}/status", tag = "payments", request_body = SetStatus,
    params(("id" = String, Path, description = "The payment id")),
    security(("bearer" = [])),
    responses((status = 200, body = Payment), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn set_status(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<SetStatus>,
) -> Result<Json<Payment>, ApiError> {
    let not_found = || ApiError::not_found("no such payment among yours");
    if !STATUSES.contains(&b.status.as_str()) {
        return Err(ApiError::unprocessable(
            "invalid_status",
            "status is completed, failed or cancelled",
        ));
    }
    if !valid_id(&id) {
        return Err(not_found());
    }
    let mut tx = s.db.begin().await.map_err(internal)?;
    let row = sqlx::query(
        "SELECT id, user_id, amount_cents, currency, description, status, created_at, updated_at \
         FROM payments WHERE id = $1",
    )
    .bind(id.clone())
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?
    .ok_or_else(not_found)?;
    let mut payment = payment_of(&row).map_err(internal)?;
    if payment.user_id != claims.sub && !is_admin(&claims) {
        return Err(not_found());
    }
    if payment.status != "pending" || b.status == "pending" {
        return Err(ApiError::conflict(
            "illegal_transition",
            format!(
                "a {} payment cannot become {}; only pending payments change, to completed, \
                 failed or cancelled",
                payment.status, b.status
            ),
        ));
    }
    let now = now_ms();
    // Guarded by the status too: two concurrent changes cannot both win.
    let done = sqlx::query(
        "UPDATE payments SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(b.status.clone())
    .bind(now)
    .bind(id.clone())
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    if done.rows_affected() != 1 {
        return Err(ApiError::conflict(
            "illegal_transition",
            "the payment changed meanwhile; read it again",
        ));
    }
    let from = std::mem::replace(&mut payment.status, b.status.clone());
    payment.updated_at_ms = now;
    let event = s.hub.envelope(PaymentUpdated {
        payment_id: id.clone(),
        user_id: payment.user_id.clone(),
        from,
        status: b.status,
    });
    s.outbox.add(&mut tx, &event).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    s.outbox.notify();
    invalidate(
        &s,
        &[
            Tag::new("payment").part(&id),
            Tag::new("user").part(&payment.user_id),
        ],
    )
    .await;
    Ok(Json(payment))
}
