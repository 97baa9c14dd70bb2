use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use crate::{Claims, Error, KeySet, VerifyingKey};

/// The longest token accepted, in bytes; longer input is refused before any decoding.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Verifies tokens against a key set, an issuer and an audience.
///
/// Cheap to clone; clones share the key set, so [`Verifier::add_key`] and
/// [`Verifier::remove_key`] rotate keys for every clone at once.
///
/// ```
/// # use tidewell_auth::*;
/// let old = SigningKey::hs256("2026-10", &[1; 32])?;
/// let verifier = Verifier::new(KeySet::from_keys([VerifyingKey::hs256("2026-10", &[1; 32])?]), "auth", "app");
/// let old_token = Issuer::new(old, "auth", "app").claims_for("u1");
///
/// // Rotate: trust the new key, sign with it, then retire the old one.
/// verifier.add_key(VerifyingKey::hs256("2026-11", &[2; 32])?);
/// let new_issuer = Issuer::new(SigningKey::hs256("2026-11", &[2; 32])?, "auth", "app");
/// assert!(verifier.verify(new_issuer.sign(&new_issuer.claims_for("u1"))?.as_str()).is_ok());
/// verifier.remove_key("2026-10");
/// # Ok::<(), tidewell_auth::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Arc<RwLock<KeySet>>,
    iss: String,
    aud: String,
    leeway: Duration,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl Verifier {
    /// A verifier accepting tokens signed by `keys`, issued by `iss` for `aud`, with 30 s of
    /// leeway on `exp` and `nbf`.
    pub fn new(keys: KeySet, iss: impl Into<String>, aud: impl Into<String>) -> Self {
        Self {
            keys: Arc::new(RwLock::new(keys)),
            iss: iss.into(),
            aud: aud.into(),
            leeway: Duration::from_secs(30),
        }
    }

    /// The clock skew tolerated on `exp` and `nbf`.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Trusts a new key (or replaces the key with the same `kid`).
    pub fn add_key(&self, key: VerifyingKey) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key);
    }

    /// Stops trusting the key with `kid`; returns whether there was one.
    pub fn remove_key(&self, kid: &str) -> bool {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(kid)
    }

    /// Verifies `token` and returns its claims.
    ///
    /// Checks, in order: size and shape, `alg` (never `none`), `kid` (a known key), the key's
    /// algorithm, the signature, then `exp`, `nbf`, `iss`, `aud` and that `sub` is present.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::Malformed(format!(
                "longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let header = parse_header(token)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(Error::AlgNone);
        }
        let Some(kid) = header.kid else {
            return Err(Error::UnknownKey { kid: None });
        };
        let key = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kid)
            .cloned()
            .ok_or_else(|| Error::UnknownKey {
                kid: Some(kid.clone()),
            })?;
        if header.alg != key.alg.as_str() {
            return Err(Error::AlgorithmMismatch {
                kid,
                expected: key.alg,
                found: header.alg.chars().take(16).collect(),
            });
        }

        let mut validation = Validation::new(key.alg.jwt());
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.iss]);
        validation.set_audience(&[&self.aud]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);

        crate::crypto::install();
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.into_kind() {
                ErrorKind::ExpiredSignature => Error::Expired,
                ErrorKind::ImmatureSignature => Error::NotYetValid,
                ErrorKind::InvalidSignature => Error::BadSignature { kid },
                ErrorKind::InvalidAudience => Error::WrongAudience {
                    expected: self.aud.clone(),
                },
                ErrorKind::InvalidIssuer => Error::WrongIssuer {
                    expected: self.iss.clone(),
                },
                ErrorKind::MissingRequiredClaim(claim) => Error::MissingClaim(claim),
                other => Error::Malformed(format!("{other:?}")),
            })
    }
}

fn parse_header(token: &str) -> Result<RawHeader, Error> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed(
            "expected three dot-separated parts (header.payload.signature)".into(),
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| Error::Malformed(format!("header is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Malformed(format!("header is not a JOSE header: {e}")))
}
