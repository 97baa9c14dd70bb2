use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;

use crate::{Claims, Error, SigningKey, Token};

/// Signs tokens for one issuer and audience with one key.
///
/// ```
/// # use tidewell_auth::{Issuer, SigningKey};
/// let issuer = Issuer::new(SigningKey::hs256("k1", &[7; 32])?, "auth", "tidewell");
/// let claims = issuer.claims_for("user-1");
/// assert_eq!(claims.exp - claims.iat, 900, "15 minutes by default");
/// let token = issuer.sign(&claims)?;
/// assert_eq!(token.as_str().split('.').count(), 3);
/// # Ok::<(), tidewell_auth::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Issuer {
    key: SigningKey,
    iss: String,
    aud: String,
    ttl: Duration,
}

impl Issuer {
    /// An issuer named `iss` signing for audience `aud` with `key`; tokens live 15 minutes.
    pub fn new(key: SigningKey, iss: impl Into<String>, aud: impl Into<String>) -> Self {
        Self {
            key,
            iss: iss.into(),
            aud: aud.into(),
            ttl: Duration::from_secs(15 * 60),
        }
    }

    /// How long issued tokens live.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The signing key's id.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// Claims for `sub` valid from now for the issuer's lifetime, with no roles, session or device;
    /// fill those in, then [`Issuer::sign`].
    pub fn claims_for(&self, sub: impl Into<String>) -> Claims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Claims {
            sub: sub.into(),
            roles: Vec::new(),
            sid: None,
            did: None,
            iat: now,
            nbf: now,
            exp: now.saturating_add(self.ttl.as_secs()),
            iss: self.iss.clone(),
            aud: vec![self.aud.clone()],
        }
    }

    /// Signs `claims` with the issuer's key; the header carries `alg`, `typ: JWT` and `kid`.
    pub fn sign(&self, claims: &Claims) -> Result<Token, Error> {
        let mut header = Header::new(self.key.alg.jwt());
        header.kid = Some(self.key.kid.clone());
        crate::crypto::install();
        jsonwebtoken::encode(&header, claims, &self.key.key)
            .map(Token::new)
            .map_err(|e| Error::Signing {
                kid: self.key.kid.clone(),
                reason: e.to_string(),
            })
    }
}
