//! The crate's one error type.

/// What went wrong. Messages say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cross-tab message that is not JSON, not an object of the expected shape, or too big.
    #[error(
        "malformed session-sync message: {0}; messages come from `SessionSync.broadcast*` of the same package version"
    )]
    Malformed(String),
    /// A cross-tab message of a protocol version this build does not speak.
    #[error(
        "session-sync message version {found} is not spoken here (this build speaks {expected}); every tab should load the same package version"
    )]
    Version {
        /// The version the message carries.
        found: u64,
        /// The version this build speaks.
        expected: u64,
    },
    /// An argument the caller gave is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The browser lacks something needed (storage, `BroadcastChannel`, `crypto`).
    #[error("the browser does not provide {0}")]
    Unsupported(&'static str),
    /// A database operation of the device registry failed.
    #[cfg(feature = "server")]
    #[error(
        "device registry database error: {0}; check the database URL and that the database is up"
    )]
    Database(#[from] sqlx::Error),
    /// The registry's migrations failed.
    #[cfg(feature = "server")]
    #[error("device registry migration failed: {0}; the database user needs CREATE TABLE rights")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The device does not exist, or belongs to another user (the two are not told apart).
    #[cfg(feature = "server")]
    #[error("no device {device_id} for this user; list the user's devices to get valid ids")]
    DeviceNotFound {
        /// The device id asked for.
        device_id: String,
    },
    /// The revocation is stored but its `auth.session.revoked` event could not be published.
    #[cfg(feature = "server")]
    #[error(
        "the revocation is stored but publishing auth.session.revoked failed: {0}; call revoke again to publish it (revoking twice is harmless)"
    )]
    Publish(String),
    /// The database URL names no supported backend.
    #[cfg(feature = "server")]
    #[error("unsupported device registry URL scheme in {0}: use postgres://... or sqlite:...")]
    UnsupportedUrl(String),
}
