//! Refresh tokens: 256 random bits, stored only as a BLAKE2b hash.

use base64::Engine as _;
use blake2::{Blake2b512, Digest as _};
use ring::rand::{SecureRandom as _, SystemRandom};

/// A new refresh token (43 characters of base64url), from the operating system's generator;
/// an error only where it has none (never a token of zeros).
pub(crate) fn new_refresh_token() -> Result<String, &'static str> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the operating system's random number generator is unavailable")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the database keeps of a refresh token.
pub(crate) fn digest(token: &str) -> String {
    let d = Blake2b512::digest(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

pub(crate) use tidewell_service_kit::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_digests_stable() {
        let (a, b) = (new_refresh_token().unwrap(), new_refresh_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
    }
}
