/// Everything that can go wrong when issuing or verifying a token.
///
/// Verification failures are distinct variants so that callers can answer each the right way
/// (refresh on [`Error::Expired`], retry later on [`Error::NotYetValid`], alert on
/// [`Error::BadSignature`]). No variant carries the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired; obtain a new one (refresh or log in again)")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet (nbf is in the future); check the clocks of issuer and verifier")]
    NotYetValid,
    /// The signature does not match the key named by `kid`.
    #[error("token signature is invalid for key {kid:?}")]
    BadSignature {
        /// The key the token named.
        kid: String,
    },
    /// The token names a key the verifier does not have, or names none.
    #[error(
        "token names key {kid:?}, which this verifier does not know; add the issuer's key to the key set"
    )]
    UnknownKey {
        /// The `kid` in the token header, if any.
        kid: Option<String>,
    },
    /// The header says `alg: none`: an unsigned token, always refused.
    #[error("unsigned token (alg \"none\") refused")]
    AlgNone,
    /// The header's algorithm differs from the algorithm of the key named by `kid`.
    #[error("token algorithm {found:?} does not match key {kid:?}, which is {expected}")]
    AlgorithmMismatch {
        /// The key the token named.
        kid: String,
        /// The key's algorithm.
        expected: crate::Algorithm,
        /// The algorithm in the token header.
        found: String,
    },
    /// `aud` does not hold the expected audience.
    #[error("token audience does not include {expected:?}")]
    WrongAudience {
        /// The audience the verifier expects.
        expected: String,
    },
    /// `iss` is not the expected issuer.
    #[error("token issuer is not {expected:?}")]
    WrongIssuer {
        /// The issuer the verifier expects.
        expected: String,
    },
    /// A claim the verifier requires is missing.
    #[error("token lacks the required claim {0:?}")]
    MissingClaim(String),
    /// The token is not a well-formed JWT (shape, base64, JSON or size).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A key could not be loaded or is too weak.
    #[error("invalid key {kid:?}: {reason}")]
    InvalidKey {
        /// The key id.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Signing failed.
    #[error("cannot sign token with key {kid:?}: {reason}")]
    Signing {
        /// The key id.
        kid: String,
        /// What the signer reported.
        reason: String,
    },
}
