//! Why a service could not start.

use std::convert::Infallible;

/// Why a service could not start: what every service opens (its JWT secret, its database, the
/// outbox and the hub), or its own part `E` (a cache, say; none by default).
///
/// ```
/// use tidewell_service_kit::{StartError, verifier};
///
/// fn check(secret: &[u8]) -> Result<(), StartError> {
///     verifier(secret)?;
///     Ok(())
/// }
/// let e = check(b"").unwrap_err();
/// assert!(e.to_string().starts_with("TIDEWELL_JWT_SECRET: "), "{e}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError<E = Infallible> {
    /// The JWT secret is unusable.
    #[error("TIDEWELL_JWT_SECRET: {0}")]
    Secret(#[from] tidewell_auth::Error),
    /// The database, the outbox or the hub failed.
    #[error(transparent)]
    Hub(#[from] tidewell_event_hub::Error),
    /// Its metrics could not be registered (a name registered twice).
    #[error("metrics: {0}")]
    Metrics(#[from] tidewell_observability::Error),
    /// The service's own part failed.
    #[error(transparent)]
    Service(E),
}
