use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::Error;

/// The shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the hash size).
const MIN_HS256_SECRET: usize = 32;

/// The signing algorithms Tidewell accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// Ed25519 signatures.
    EdDsa,
}

impl Algorithm {
    /// The JOSE name, as in a token header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Hs256 => jsonwebtoken::Algorithm::HS256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn check_kid(kid: &str) -> Result<(), Error> {
    if kid.is_empty() || kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidKey {
            kid: kid.chars().take(64).collect(),
            reason: "a kid must be 1 to 64 visible ASCII characters".into(),
        });
    }
    Ok(())
}

fn check_secret(kid: &str, secret: &[u8]) -> Result<(), Error> {
    if secret.len() < MIN_HS256_SECRET {
        return Err(Error::InvalidKey {
            kid: kid.to_owned(),
            reason: format!(
                "an HS256 secret needs at least {MIN_HS256_SECRET} bytes, got {}; generate one with `openssl rand -base64 48`",
                secret.len()
            ),
        });
    }
    Ok(())
}

/// Checks `kid` and `secret`, then builds the key from the secret.
fn from_secret<K>(kid: String, secret: &[u8], build: fn(&[u8]) -> K) -> Result<(String, K), Error> {
    check_kid(&kid)?;
    check_secret(&kid, secret)?;
    Ok((kid, build(secret)))
}

/// Checks `kid`, then parses the PEM with `parse`; `what` names the expected key for the error.
fn from_pem<K>(
    kid: String,
    pem: &[u8],
    parse: fn(&[u8]) -> jsonwebtoken::errors::Result<K>,
    what: &str,
) -> Result<(String, K), Error> {
    check_kid(&kid)?;
    match parse(pem) {
        Ok(key) => Ok((kid, key)),
        Err(e) => Err(Error::InvalidKey {
            kid,
            reason: format!("not {what}: {e}"),
        }),
    }
}

/// The accessors and the redacting `Debug` both key types share.
macro_rules! key_common {
    ($ty:ident) => {
        impl $ty {
            /// The key id.
            pub fn kid(&self) -> &str {
                &self.kid
            }

            /// The algorithm.
            pub fn algorithm(&self) -> Algorithm {
                self.alg
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("kid", &self.kid)
                    .field("alg", &self.alg)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// A private key that signs tokens, with its `kid`. `Debug` never shows key material.
#[derive(Clone)]
pub struct SigningKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) key: EncodingKey,
}

impl SigningKey {
    /// An HS256 key from a shared secret of at least 32 bytes.
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<Self, Error> {
        let (kid, key) = from_secret(kid.into(), secret, EncodingKey::from_secret)?;
        Ok(Self {
            kid,
            alg: Algorithm::Hs256,
            key,
        })
    }

    /// An Ed25519 key from a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
    pub fn ed25519_pem(kid: impl Into<String>, pem: &[u8]) -> Result<Self, Error> {
        let what = "an Ed25519 private key in PKCS#8 PEM";
        let (kid, key) = from_pem(kid.into(), pem, EncodingKey::from_ed_pem, what)?;
        Ok(Self {
            kid,
            alg: Algorithm::EdDsa,
            key,
        })
    }
}

key_common!(SigningKey);

/// A key that verifies tokens, with its `kid`. `Debug` never shows key material.
#[derive(Clone)]
pub struct VerifyingKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl VerifyingKey {
    /// An HS256 key from the shared secret (at least 32 bytes).
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<Self, Error> {
        let (kid, key) = from_secret(kid.into(), secret, DecodingKey::from_secret)?;
        Ok(Self {
            kid,
            alg: Algorithm::Hs256,
            key,
        })
    }

    /// An Ed25519 key from a SPKI PEM public key (`openssl pkey -pubout`).
    pub fn ed25519_pem(kid: impl Into<String>, pem: &[u8]) -> Result<Self, Error> {
        let what = "an Ed25519 public key in PEM";
        let (kid, key) = from_pem(kid.into(), pem, DecodingKey::from_ed_pem, what)?;
        Ok(Self {
            kid,
            alg: Algorithm::EdDsa,
            key,
        })
    }
}

key_common!(VerifyingKey);

/// The keys a [`crate::Verifier`] accepts, by `kid`.
///
/// To rotate: add the new key, start signing with it, and remove the old key once the longest
/// token lifetime has passed.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// An empty set (which verifies nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding `keys`; a later key replaces an earlier one with the same `kid`.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect(),
        }
    }

    /// Adds a key, replacing any key with the same `kid`.
    pub fn insert(&mut self, key: VerifyingKey) {
        self.keys.insert(key.kid.clone(), key);
    }

    /// Removes the key with `kid`; returns whether there was one.
    pub fn remove(&mut self, kid: &str) -> bool {
        self.keys.remove(kid).is_some()
    }

    /// The key with `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
