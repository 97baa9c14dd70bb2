//! Bearer tokens.

use std::time::Duration;

use axum::extract::FromRequestParts;
use http::request::Parts;
use tidewell_auth::{Claims, Issuer, KeySet, SigningKey, Verifier, VerifyingKey};

use crate::ApiError;

/// The issuer (`iss`) of the reference services' access tokens.
pub const ISSUER: &str = "tidewell-auth";
/// Their audience (`aud`).
pub const AUDIENCE: &str = "tidewell";

/// Verifies the reference services' access tokens (HS256 with the shared `TIDEWELL_JWT_SECRET`).
pub fn verifier(secret: &[u8]) -> Result<Verifier, tidewell_auth::Error> {
    Ok(Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("k1", secret)?]),
        ISSUER,
        AUDIENCE,
    ))
}

/// Issues them (the auth service; tests).
pub fn issuer(secret: &[u8], ttl: Duration) -> Result<Issuer, tidewell_auth::Error> {
    Ok(Issuer::new(SigningKey::hs256("k1", secret)?, ISSUER, AUDIENCE).ttl(ttl))
}

/// What a service's state gives [`AuthUser`].
pub trait AuthState {
    /// Verifies tokens.
    fn verifier(&self) -> &Verifier;
    /// Whether a verified token may still be used (e.g. its session was not revoked). Default:
    /// yes.
    fn permits(&self, claims: &Claims) -> bool {
        let _ = claims;
        true
    }
}

impl<T: AuthState> AuthState for std::sync::Arc<T> {
    fn verifier(&self) -> &Verifier {
        (**self).verifier()
    }
    fn permits(&self, claims: &Claims) -> bool {
        (**self).permits(claims)
    }
}

/// The verified claims of the request's `Authorization: Bearer` token; a 401 without one, with
/// an invalid or expired one, or one whose session was revoked.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims);

impl<S> FromRequestParts<S> for AuthUser
where
    S: AuthState + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <access token>"))?;
        let claims = state
            .verifier()
            .verify(token.trim())
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        if !state.permits(&claims) {
            return Err(ApiError::unauthorized(
                "this session was revoked; sign in again",
            ));
        }
        Ok(Self(claims))
    }
}
