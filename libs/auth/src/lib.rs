//! # tidewell-auth
//!
//! Issue and verify the JWTs that Tidewell services and WebSocket upgrades carry.
//!
//! - Algorithms: HS256 (shared secret, at least 32 bytes) and EdDSA (Ed25519 key pairs in PEM).
//! - Keys have a `kid`; a [`Verifier`] checks tokens against a [`KeySet`] that can gain and lose
//!   keys at run time, so keys rotate without a restart.
//! - Every failure is its own [`Error`] variant: expired, not yet valid, bad signature, unknown
//!   key, algorithm mismatch, `alg: none`, wrong issuer or audience, malformed.
//! - A [`Token`] never shows its text in `Debug` output, and neither do keys; nothing here logs a
//!   token.
//!
//! ```
//! use std::time::Duration;
//! use tidewell_auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
//!
//! let secret = b"a-32-byte-or-longer-shared-secret!!";
//! let issuer = Issuer::new(SigningKey::hs256("k1", secret)?, "tidewell-auth", "tidewell")
//!     .ttl(Duration::from_secs(900));
//! let verifier = Verifier::new(
//!     KeySet::from_keys([VerifyingKey::hs256("k1", secret)?]),
//!     "tidewell-auth",
//!     "tidewell",
//! );
//!
//! let mut claims = issuer.claims_for("user-42");
//! claims.roles = vec!["admin".into()];
//! claims.sid = Some("session-1".into());
//! let token = issuer.sign(&claims)?;
//! assert_eq!(format!("{token:?}"), "Token(<redacted>)");
//!
//! let verified = verifier.verify(token.as_str())?;
//! assert_eq!(verified.sub, "user-42");
//! assert!(verified.has_role("admin"));
//! # Ok::<(), tidewell_auth::Error>(())
//! ```
//!
//! Signing and verifying run on `ring` (the crypto library rustls brings), through a
//! `jsonwebtoken` provider that knows HS256 and EdDSA only: no RSA code is compiled in. An
//! application that installs its own `jsonwebtoken` provider first keeps it.

mod claims;
mod crypto;
mod error;
mod issuer;
mod keys;
mod token;
mod verifier;

pub use claims::Claims;
pub use error::Error;
pub use issuer::Issuer;
pub use keys::{Algorithm, KeySet, SigningKey, VerifyingKey};
pub use token::Token;
pub use verifier::Verifier;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
