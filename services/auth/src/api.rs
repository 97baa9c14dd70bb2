//! The HTTP handlers.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row as _};
use tidewell_auth::{Claims, Issuer, Verifier};
use tidewell_core::Envelope;
use tidewell_event_hub::Hub;
use tidewell_event_hub::outbox::Outbox;
use tidewell_service_kit::openapi::ErrorBody;
use tidewell_service_kit::{ApiError, AuthState, AuthUser, JsonBody};
use tidewell_session_sync::server::{
    DeviceRegistry, NewDevice, RevokeReason, RevokedSessions, SessionRevoked,
};

use crate::events::{UserCreated, UserDeleted, UserLoggedIn, UserLoggedOut, UserUpdated};
use crate::passwords;
use crate::tokens::{digest, new_refresh_token, now_ms};

/// What every handler shares.
pub(crate) struct State {
    pub(crate) db: AnyPool,
    pub(crate) outbox: Outbox,
    pub(crate) hub: Hub,
    pub(crate) issuer: Issuer,
    pub(crate) verifier: Verifier,
    pub(crate) devices: DeviceRegistry,
    pub(crate) revoked: RevokedSessions,
    pub(crate) refresh_ttl: Duration,
    pub(crate) access_ttl: Duration,
    pub(crate) admin_emails: Vec<String>,
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
    fn permits(&self, claims: &Claims) -> bool {
        self.revoked.permits(claims)
    }
}

type S = AxumState<Arc<State>>;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

/// A user as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct UserView {
    id: String,
    email: String,
    name: String,
    role: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    email: String,
    password: String,
    name: String,
}

#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = Register,
    responses((status = 201, body = UserView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn register(
    AxumState(s): S,
    JsonBody(r): JsonBody<Register>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let email =
        passwords::email(&r.email).map_err(|m| ApiError::unprocessable("invalid_email", m))?;
    passwords::policy(&r.password).map_err(|m| ApiError::unprocessable("weak_password", m))?;
    let name = r.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "the name must be 1 to 100 characters without control characters",
        ));
    }
    let password = r.password;
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let role = if s.admin_emails.contains(&email) {
        "admin"
    } else {
        "user"
    };
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let mut tx = s.db.begin().await.map_err(internal)?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, name, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (email) DO NOTHING",
    )
    .bind(id.clone())
    .bind(email.clone())
    .bind(hash)
    .bind(name.clone())
    .bind(role)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "email_taken",
            "an account with this email exists; sign in instead",
        ));
    }
    let event = s.hub.envelope(UserCreated {
        user_id: id.clone(),
        email: email.clone(),
        name: name.clone(),
        role: role.into(),
    });
    s.outbox.add(&mut tx, &event).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    s.outbox.notify();
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            id,
            email,
            name,
            role: role.into(),
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    email: String,
    password: String,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    device_name: Option<String>,
}

/// Tokens for a session.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Tokens {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
    session_id: String,
    device_id: String,
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = Tokens), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn login(
    AxumState(s): S,
    headers: HeaderMap,
    JsonBody(l): JsonBody<Login>,
) -> Result<Json<Tokens>, ApiError> {
    let refused = || ApiError::unauthorized("wrong email or password");
    let email = passwords::email(&l.email).map_err(|_| refused())?;
    let row = sqlx::query("SELECT id, password_hash, role FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(&s.db)
        .await
        .map_err(internal)?;
    let (user_id, stored, role) = match &row {
        Some(r) => (
            r.try_get::<String, _>("id").map_err(internal)?,
            r.try_get::<String, _>("password_hash").map_err(internal)?,
            r.try_get::<String, _>("role").map_err(internal)?,
        ),
        None => (String::new(), passwords::decoy().to_owned(), String::new()),
    };
    let password = l.password;
    let ok = tokio::task::spawn_blocking(move || passwords::verify(&password, &stored))
        .await
        .map_err(internal)?;
    if row.is_none() || !ok {
        return Err(refused());
    }
    let device_id = match l.device_id {
        Some(d)
            if !d.is_empty()
                && d.len() <= 64
                && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            d
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_device_id",
                "device_id must be 1 to 64 letters, digits or dashes (getDeviceId() gives one)",
            ));
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let session_id = uuid::Uuid::now_v7().to_string();
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut device = NewDevice::new(&user_id, &device_id, &session_id, ua);
    if let Some(name) = l.device_name.filter(|n| !n.trim().is_empty()) {
        device.name = name;
    }
    s.devices.register(device).await.map_err(internal)?;
    let mut tx = s.db.begin().await.map_err(internal)?;
    let refresh = insert_refresh(&s, &mut tx, &session_id, &user_id, &device_id).await?;
    let event = s.hub.envelope(UserLoggedIn {
        user_id: user_id.clone(),
        session_id: session_id.clone(),
        device_id: device_id.clone(),
    });
    s.outbox.add(&mut tx, &event).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    s.outbox.notify();
    Ok(Json(tokens(
        &s,
        &user_id,
        &role,
        &session_id,
        &device_id,
        refresh,
    )?))
}

async fn insert_refresh(
    s: &State,
    tx: &mut sqlx::AnyConnection,
    session_id: &str,
    user_id: &str,
    device_id: &str,
) -> Result<String, ApiError> {
    let token = new_refresh_token().map_err(internal)?;
    let ttl = i64::try_from(s.refresh_ttl.as_millis()).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family, user_id, device_id, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(digest(&token))
    .bind(session_id.to_owned())
    .bind(user_id.to_owned())
    .bind(device_id.to_owned())
    .bind(now_ms().saturating_add(ttl))
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    Ok(token)
}

fn tokens(
    s: &State,
    user_id: &str,
    role: &str,
    session_id: &str,
    device_id: &str,
    refresh: String,
) -> Result<Tokens, ApiError> {
    let mut claims = s.issuer.claims_for(user_id);
    claims.roles = vec![role.to_owned()];
    claims.sid = Some(session_id.to_owned());
    claims.did = Some(device_id.to_owned());
    let access = s.issuer.sign(&claims).map_err(internal)?;
    Ok(Tokens {
        access_token: access.into_string(),
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: s.access_ttl.as_secs(),
        session_id: session_id.to_owned(),
        device_id: device_id.to_owned(),
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refresh {
    refresh_token: String,
}

#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = Refresh,
    responses((status = 200, body = Tokens), (status = 401, body = ErrorBody)))]
pub(crate) async fn refresh(
    AxumState(s): S,
    JsonBody(r): JsonBody<Refresh>,
) -> Result<Json<Tokens>, ApiError> {
    let hash = digest(&r.refresh_token);
    let now = now_ms();
    let row = sqlx::query(
        "SELECT t.family, t.user_id, t.device_id, t.expires_at, t.used_at, t.revoked_at, u.role \
         FROM refresh_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
    )
    .bind(hash.clone())
    .fetch_optional(&s.db)
    .await
    .map_err(internal)?
    .ok_or_else(|| ApiError::unauthorized("unknown refresh token; sign in again"))?;
    let family: String = row.try_get("family").map_err(internal)?;
    let user_id: String = row.try_get("user_id").map_err(internal)?;
    let device_id: String = row.try_get("device_id").map_err(internal)?;
    let role: String = row.try_get("role").map_err(internal)?;
    let expires_at: i64 = row.try_get("expires_at").map_err(internal)?;
    if row
        .try_get::<Option<i64>, _>("revoked_at")
        .map_err(internal)?
        .is_some()
    {
        return Err(ApiError::unauthorized(
            "this session was revoked; sign in again",
        ));
    }
    if expires_at <= now {
        return Err(ApiError::unauthorized(
            "the refresh token expired; sign in again",
        ));
    }
    let mut tx = s.db.begin().await.map_err(internal)?;
    // Exactly one use: the row is claimed only if nobody used it before.
    let claimed = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(hash)
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    if claimed.rows_affected() == 0 {
        // Used before: a stolen copy, or a second tab without refreshOnce. Revoke the session.
        drop(tx);
        revoke_session(&s, &user_id, &device_id, &family, RevokeReason::Revoked).await?;
        tracing::warn!(
            user_id,
            session_id = family,
            "refresh token reuse: session revoked"
        );
        return Err(ApiError::unauthorized(
            "this refresh token was already used; the session is revoked, sign in again",
        ));
    }
    let refresh = insert_refresh(&s, &mut tx, &family, &user_id, &device_id).await?;
    tx.commit().await.map_err(internal)?;
    // ok to ignore: `touch` only keeps "last active" fresh; a device revoked meanwhile is caught
    // by the session check on the next request
    let _ = s.devices.touch(&user_id, &device_id).await;
    Ok(Json(tokens(
        &s, &user_id, &role, &family, &device_id, refresh,
    )?))
}

/// Revokes session `family`: its refresh tokens, the device in the registry, the cache of
/// revoked sessions, and `auth.session.revoked` through the outbox.
async fn revoke_session(
    s: &State,
    user_id: &str,
    device_id: &str,
    family: &str,
    reason: RevokeReason,
) -> Result<(), ApiError> {
    let mut tx = s.db.begin().await.map_err(internal)?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(family.to_owned())
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    let event: Envelope<SessionRevoked> = s
        .hub
        .envelope(SessionRevoked::new(user_id, device_id, family, reason));
    s.outbox.add(&mut tx, &event).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    s.outbox.notify();
    s.revoked.insert(family);
    Ok(())
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub(crate) async fn logout(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
) -> Result<StatusCode, ApiError> {
    let sid = claims
        .sid
        .clone()
        .ok_or_else(|| ApiError::unprocessable("no_session", "this token has no session"))?;
    let mut tx = s.db.begin().await.map_err(internal)?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(sid.clone())
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    let event = s.hub.envelope(UserLoggedOut {
        user_id: claims.sub.clone(),
        session_id: sid.clone(),
    });
    s.outbox.add(&mut tx, &event).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    s.outbox.notify();
    s.revoked.insert(sid);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub(crate) async fn me(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
) -> Result<Json<UserView>, ApiError> {
    let row = sqlx::query("SELECT id, email, name, role FROM users WHERE id = $1")
        .bind(claims.sub)
        .fetch_optional(&s.db)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))?;
    Ok(Json(UserView {
        id: row.try_get("id").map_err(internal)?,
        email: row.try_get("email").map_err(internal)?,
        name: row.try_get("name").map_err(internal)?,
        role: row.try_get("role").map_err(internal)?,
    }))
}

/// Account changes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateMe {
    /// The new display name.
    name: String,
}

/// Changes the account's name; publishes `auth.user.updated`.
#[utoipa::path(patch, path = "/api/auth/me", tag = "auth", request_body = UpdateMe,
    security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn update_me(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
    JsonBody(u): JsonBody<UpdateMe>,
) -> Result<Json<UserView>, ApiError> {
    let name = u.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "the name must be 1 to 100 characters without control characters",
        ));
    }
    let mut tx = s.db.begin().await.map_err(internal)?;
    let row = sqlx::query(
        "UPDATE users SET name = $1, updated_at = $2 WHERE id = $3 RETURNING id, email, name, role",
    )
    .bind(name)
    .bind(now_ms())
    .bind(claims.sub.clone())
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?
    .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))?;
    let user = UserView {
        id: row.try_get("id").map_err(internal)?,
        email: row.try_get("email").map_err(internal)?,
        name: row.try_get("name").map_err(internal)?,
        role: row.try_get("role").map_err(internal)?,
    };
    let event = s.hub.envelope(UserUpdated {
        user_id: user.id.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
    });
    s.outbox.add(&mut tx, &event).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    s.outbox.notify();
    Ok(Json(user))
}

/// Deletes the account: every session is revoked (`auth.session.revoked` each), then
/// `auth.user.deleted`.
#[utoipa::path(delete, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub(crate) async fn delete_me(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
) -> Result<StatusCode, ApiError> {
    let sessions = sqlx::query(
        "SELECT DISTINCT family, device_id FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(claims.sub.clone())
    .fetch_all(&s.db)
    .await
    .map_err(internal)?;
    for row in sessions {
        let family: String = row.try_get("family").map_err(internal)?;
        let device: String = row.try_get("device_id").map_err(internal)?;
        // ok to ignore: the device may already be revoked; the session revocation follows
        let _ = s.devices.revoke(&claims.sub, &device).await;
        revoke_session(&s, &claims.sub, &device, &family, RevokeReason::Revoked).await?;
    }
    let mut tx = s.db.begin().await.map_err(internal)?;
    let gone = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(claims.sub.clone())
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::unauthorized("this account no longer exists"));
    }
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
        .bind(claims.sub.clone())
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    let event = s.hub.envelope(UserDeleted {
        user_id: claims.sub.clone(),
    });
    s.outbox.add(&mut tx, &event).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    s.outbox.notify();
    if let Some(sid) = claims.sid {
        s.revoked.insert(sid);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A device as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceView {
    device_id: String,
    name: String,
    device_type: String,
    last_active_at_ms: u64,
    current: bool,
}

#[utoipa::path(get, path = "/api/auth/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Vec<DeviceView>), (status = 401, body = ErrorBody)))]
pub(crate) async fn devices(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let list = s.devices.list(&claims.sub).await.map_err(internal)?;
    Ok(Json(
        list.into_iter()
            .map(|d| DeviceView {
                current: claims.did.as_deref() == Some(d.device_id.as_str()),
                device_id: d.device_id,
                name: d.name,
                device_type: d.device_type.as_str().into(),
                last_active_at_ms: d.last_active_at_ms,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/auth/devices/{device_id}/revoke", tag = "devices",
    params(("device_id" = String, Path, description = "One of the caller's devices")),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device = match s.devices.revoke(&claims.sub, &device_id).await {
        Ok(d) => d,
        Err(tidewell_session_sync::Error::DeviceNotFound { .. }) => {
            return Err(ApiError::not_found("no such device among yours"));
        }
        Err(tidewell_session_sync::Error::InvalidArgument(m)) => {
            return Err(ApiError::unprocessable("invalid_device_id", m));
        }
        Err(e) => return Err(internal(e)),
    };
    revoke_session(
        &s,
        &claims.sub,
        &device.device_id,
        &device.session_id,
        RevokeReason::Revoked,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer of revoke-others.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Revoked {
    revoked: Vec<String>,
}

#[utoipa::path(post, path = "/api/auth/devices/revoke-others", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody)))]
pub(crate) async fn revoke_others(
    AxumState(s): S,
    AuthUser(claims): AuthUser,
) -> Result<Json<Revoked>, ApiError> {
    let keep = claims
        .did
        .clone()
        .ok_or_else(|| ApiError::unprocessable("no_device", "this token has no device"))?;
    let others = s
        .devices
        .revoke_others(&claims.sub, &keep)
        .await
        .map_err(internal)?;
    let mut revoked = Vec::with_capacity(others.len());
    for d in others {
        revoke_session(
            &s,
            &claims.sub,
            &d.device_id,
            &d.session_id,
            RevokeReason::RevokedOthers,
        )
        .await?;
        revoked.push(d.device_id);
    }
    Ok(Json(Revoked { revoked }))
}
