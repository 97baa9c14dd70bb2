//! The HTTP handlers and the profile store.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State as AxumState;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row as _};
use tidewell_auth::Verifier;
use tidewell_cache::{Key, Namespace, Tag};
use tidewell_service_kit::openapi::ErrorBody;
use tidewell_service_kit::{ApiError, AuthState, AuthUser, JsonBody, now_ms};

/// What every handler shares.
pub(crate) struct State {
    pub(crate) db: AnyPool,
    pub(crate) verifier: Verifier,
    pub(crate) reads: Namespace,
    pub(crate) ttl: Duration,
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

/// Makes the profile of a new user; nothing if it exists (redeliveries).
pub(crate) async fn create_profile(
    db: &AnyPool,
    user_id: &str,
    name: &str,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO profiles (user_id, display_name, bio, theme, language, notifications, \
         created_at, updated_at) VALUES ($1, $2, '', 'system', 'en', 1, $3, $3) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id.to_owned())
    .bind(name.to_owned())
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the profile of a deleted user: its row becomes a tombstone (personal fields blanked)
/// so that a late `auth.user.created` cannot bring it back; also made when there was no profile.
pub(crate) async fn delete_profile(db: &AnyPool, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO profiles (user_id, display_name, bio, theme, language, notifications, \
         created_at, updated_at, deleted) VALUES ($1, '', '', 'system', 'en', 0, $2, $2, 1) \
         ON CONFLICT (user_id) DO UPDATE SET deleted = 1, display_name = '', bio = '', \
         updated_at = $2",
    )
    .bind(user_id.to_owned())
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(())
}

impl State {
    /// Drops the cached reads of `user`; a failure leaves them until their TTL.
    pub(crate) async fn forget(&self, user: &str) {
        invalidate(self, user).await;
    }
}

/// A profile as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Profile {
    user_id: String,
    display_name: String,
    bio: String,
    preferences: Preferences,
    updated_at_ms: i64,
}

/// Preferences.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Preferences {
    theme: String,
    language: String,
    notifications: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LoadError(String);

async fn load(s: &State, user: &str) -> Result<Option<Profile>, ApiError> {
    let db = s.db.clone();
    let u = user.to_owned();
    s.reads
        .get_or_load(
            &Key::new("profile").part(user),
            s.ttl,
            &[Tag::new("user").part(user)],
            move || async move {
                let row = sqlx::query(
                    "SELECT user_id, display_name, bio, theme, language, notifications, updated_at \
                     FROM profiles WHERE user_id = $1 AND deleted = 0",
                )
                .bind(u)
                .fetch_optional(&db)
                .await
                .map_err(|e| LoadError(e.to_string()))?;
                row.map(|r| -> Result<Profile, sqlx::Error> {
                    Ok(Profile {
                        user_id: r.try_get("user_id")?,
                        display_name: r.try_get("display_name")?,
                        bio: r.try_get("bio")?,
                        preferences: Preferences {
                            theme: r.try_get("theme")?,
                            language: r.try_get("language")?,
                            notifications: r.try_get::<i64, _>("notifications")? != 0,
                        },
                        updated_at_ms: r.try_get("updated_at")?,
                    })
                })
                .transpose()
                .map_err(|e| LoadError(e.to_string()))
            },
        )
        .await
        .map_err(ApiError::internal)
}

fn missing() -> ApiError {
    ApiError::not_found("no profile yet: it is made from auth.user.created, shortly after sign-up")
}

/// The caller's profile (404 until `auth.user.created` was handled).
#[utoipa::path(get, path = "/api/profile/me", tag = "profile", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_me(
    AxumState(s): S,
    AuthUser(c): AuthUser,
) -> Result<Json<Profile>, ApiError> {
    load(&s, &c.sub).await?.map(Json).ok_or_else(missing)
}

/// Fields to change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Update {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    bio: Option<String>,
}

fn text(value: &str, field: &'static str, min: usize, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    let n = v.chars().count();
    if n < min || n > max || v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} must be {min} to {max} characters without control characters"),
        ));
    }
    Ok(v.to_owned())
}

/// Changes the display name or the bio.
#[utoipa::path(patch, path = "/api/profile/me", tag = "profile", request_body = Update, security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn update_me(
    AxumState(s): S,
    AuthUser(c): AuthUser,
    JsonBody(u): JsonBody<Update>,
) -> Result<Json<Profile>, ApiError> {
    let current = load(&s, &c.sub).await?.ok_or_else(missing)?;
    let name = match &u.display_name {
        Some(n) => text(n, "display_name", 1, 100)?,
        None => current.display_name,
    };
    let bio = match &u.bio {
        Some(b) => text(b, "bio", 0, 500)?,
        None => current.bio,
    };
    sqlx::query(
        "UPDATE profiles SET display_name = $1, bio = $2, updated_at = $3 \
         WHERE user_id = $4 AND deleted = 0",
    )
    .bind(name)
    .bind(bio)
    .bind(now_ms())
    .bind(c.sub.clone())
    .execute(&s.db)
    .await
    .map_err(ApiError::internal)?;
    invalidate(&s, &c.sub).await;
    load(&s, &c.sub).await?.map(Json).ok_or_else(missing)
}

async fn invalidate(s: &State, user: &str) {
    if let Err(error) = s
        .reads
        .invalidate_tags(&[Tag::new("user").part(user)])
        .await
    {
        tracing::warn!(%error, "cache invalidation failed; entries expire with their TTL");
    }
}

/// The caller's preferences.
#[utoipa::path(get, path = "/api/profile/me/preferences", tag = "profile", security(("bearer" = [])),
    responses((status = 200, body = Preferences), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_preferences(
    AxumState(s): S,
    AuthUser(c): AuthUser,
) -> Result<Json<Preferences>, ApiError> {
    load(&s, &c.sub)
        .await?
        .map(|p| Json(p.preferences))
        .ok_or_else(missing)
}

/// Replaces the preferences.
#[utoipa::path(put, path = "/api/profile/me/preferences", tag = "profile", request_body = Preferences,
    security(("bearer" = [])),
    responses((status = 200, body = Preferences), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn put_preferences(
    AxumState(s): S,
    AuthUser(c): AuthUser,
    JsonBody(p): JsonBody<Preferences>,
) -> Result<Json<Preferences>, ApiError> {
    if !["light", "dark", "system"].contains(&p.theme.as_str()) {
        return Err(ApiError::unprocessable(
            "invalid_theme",
            "theme is light, dark or system",
        ));
    }
    let lang = p.language.as_bytes();
    let lang_ok = match lang {
        [a, b] => a.is_ascii_lowercase() && b.is_ascii_lowercase(),
        [a, b, b'-', c, d] => {
            a.is_ascii_lowercase()
                && b.is_ascii_lowercase()
                && c.is_ascii_uppercase()
                && d.is_ascii_uppercase()
        }
        _ => false,
    };
    if !lang_ok {
        return Err(ApiError::unprocessable(
            "invalid_language",
            "language is a language tag such as en or pt-BR",
        ));
    }
    load(&s, &c.sub).await?.ok_or_else(missing)?;
    sqlx::query(
        "UPDATE profiles SET theme = $1, language = $2, notifications = $3, updated_at = $4 \
         WHERE user_id = $5 AND deleted = 0",
    )
    .bind(p.theme.clone())
    .bind(p.language.clone())
    .bind(i64::from(p.notifications))
    .bind(now_ms())
    .bind(c.sub.clone())
    .execute(&s.db)
    .await
    .map_err(ApiError::internal)?;
    invalidate(&s, &c.sub).await;
    Ok(Json(p))
}
