//! Issue and verify tokens end to end: every acceptance and every refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use tidewell_auth::{Algorithm, Error, Issuer, KeySet, SigningKey, Verifier, VerifyingKey};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
const ED_A: &[u8] = include_bytes!("fixtures/ed25519-a.pem");
const ED_A_PUB: &[u8] = include_bytes!("fixtures/ed25519-a.pub.pem");
const ED_B: &[u8] = include_bytes!("fixtures/ed25519-b.pem");

fn hs_issuer() -> Issuer {
    Issuer::new(
        SigningKey::hs256("hs-1", SECRET).unwrap(),
        "auth",
        "tidewell",
    )
}

fn hs_verifier() -> Verifier {
    Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("hs-1", SECRET).unwrap()]),
        "auth",
        "tidewell",
    )
}

fn b64(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

#[test]
fn hs256_token_round_trips_every_claim() {
    let issuer = hs_issuer();
    let mut claims = issuer.claims_for("user-1");
    claims.roles = vec!["admin".into(), "support".into()];
    claims.sid = Some("sess-9".into());
    claims.did = Some("dev-3".into());
    let token = issuer.sign(&claims).unwrap();
    let verified = hs_verifier().verify(token.as_str()).unwrap();
    assert_eq!(verified, claims);
    assert!(verified.has_role("support") && !verified.has_role("root"));
}

#[test]
fn eddsa_token_verifies_with_public_key() {
    let issuer = Issuer::new(
        SigningKey::ed25519_pem("ed-a", ED_A).unwrap(),
        "auth",
        "tidewell",
    );
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::ed25519_pem("ed-a", ED_A_PUB).unwrap()]),
        "auth",
        "tidewell",
    );
    let token = issuer.sign(&issuer.claims_for("user-2")).unwrap();
    assert_eq!(verifier.verify(token.as_str()).unwrap().sub, "user-2");
}

#[test]
fn expired_token_is_refused() {
    let issuer = hs_issuer();
    let mut claims = issuer.claims_for("u");
    claims.iat -= 3_600;
    claims.nbf -= 3_600;
    claims.exp = claims.iat + 60;
    let token = issuer.sign(&claims).unwrap();
    assert!(matches!(
        hs_verifier().verify(token.as_str()),
        Err(Error::Expired)
    ));
}

#[test]
fn leeway_accepts_small_clock_skew_only() {
    let issuer = hs_issuer();
    let mut claims = issuer.claims_for("u");
    claims.exp = claims.iat - 10; // expired 10 s ago
    let token = issuer.sign(&claims).unwrap();
    assert!(
        hs_verifier().verify(token.as_str()).is_ok(),
        "inside the 30 s leeway"
    );
    let strict = hs_verifier().leeway(Duration::ZERO);
    assert!(matches!(strict.verify(token.as_str()), Err(Error::Expired)));
}

#[test]
fn token_from_the_future_is_not_yet_valid() {
    let issuer = hs_issuer();
    let mut claims = issuer.claims_for("u");
    claims.nbf += 600;
    claims.exp += 600;
    let token = issuer.sign(&claims).unwrap();
    assert!(matches!(
        hs_verifier().verify(token.as_str()),
        Err(Error::NotYetValid)
    ));
}

#[test]
fn alg_none_is_refused_before_anything_else() {
    let issuer = hs_issuer();
    let claims = serde_json::to_string(&issuer.claims_for("admin")).unwrap();
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(&format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"hs-1"}}"#)),
            b64(&claims)
        );
        assert!(
            matches!(hs_verifier().verify(&token), Err(Error::AlgNone)),
            "{alg}"
        );
    }
}

#[test]
fn wrong_key_is_a_bad_signature() {
    let forger = Issuer::new(
        SigningKey::hs256("hs-1", b"another-secret-of-32-bytes-or-more!!").unwrap(),
        "auth",
        "tidewell",
    );
    let token = forger.sign(&forger.claims_for("u")).unwrap();
    match hs_verifier().verify(token.as_str()) {
        Err(Error::BadSignature { kid }) => assert_eq!(kid, "hs-1"),
        other => panic!("expected BadSignature, got {other:?}"),
    }
}

#[test]
fn tampered_payload_is_a_bad_signature() {
    let issuer = hs_issuer();
    let token = issuer.sign(&issuer.claims_for("user-1")).unwrap();
    let parts: Vec<&str> = token.as_str().split('.').collect();
    let mut claims = issuer.claims_for("user-1");
    claims.roles = vec!["admin".into()];
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_string(&claims).unwrap()),
        parts[2]
    );
    assert!(matches!(
        hs_verifier().verify(&forged),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn eddsa_signature_from_another_key_pair_is_refused() {
    let forger = Issuer::new(
        SigningKey::ed25519_pem("ed-a", ED_B).unwrap(),
        "auth",
        "tidewell",
    );
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::ed25519_pem("ed-a", ED_A_PUB).unwrap()]),
        "auth",
        "tidewell",
    );
    let token = forger.sign(&forger.claims_for("u")).unwrap();
    assert!(matches!(
        verifier.verify(token.as_str()),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn hs256_signed_with_the_public_key_is_an_algorithm_mismatch() {
    // The classic key-confusion attack: sign HS256 using the EdDSA public key as the secret.
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::ed25519_pem("ed-a", ED_A_PUB).unwrap()]),
        "auth",
        "tidewell",
    );
    let attacker = Issuer::new(
        SigningKey::hs256("ed-a", ED_A_PUB).unwrap(),
        "auth",
        "tidewell",
    );
    let token = attacker.sign(&attacker.claims_for("admin")).unwrap();
    match verifier.verify(token.as_str()) {
        Err(Error::AlgorithmMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, Algorithm::EdDsa);
            assert_eq!(found, "HS256");
        }
        other => panic!("expected AlgorithmMismatch, got {other:?}"),
    }
}

#[test]
fn rotation_adds_new_keys_and_retires_old_ones() {
    let old = hs_issuer();
    let new = Issuer::new(
        SigningKey::hs256("hs-2", b"the-next-secret-also-32-bytes-long!").unwrap(),
        "auth",
        "tidewell",
    );
    let verifier = hs_verifier();
    let shared = verifier.clone();
    let old_token = old.sign(&old.claims_for("u")).unwrap();
    let new_token = new.sign(&new.claims_for("u")).unwrap();

    assert!(matches!(
        verifier.verify(new_token.as_str()),
        Err(Error::UnknownKey { kid: Some(k) }) if k == "hs-2"
    ));
    verifier.add_key(VerifyingKey::hs256("hs-2", b"the-next-secret-also-32-bytes-long!").unwrap());
    assert!(
        shared.verify(new_token.as_str()).is_ok(),
        "clones share the key set"
    );
    assert!(
        shared.verify(old_token.as_str()).is_ok(),
        "old tokens valid during the overlap"
    );
    assert!(verifier.remove_key("hs-1"));
    assert!(matches!(
        shared.verify(old_token.as_str()),
        Err(Error::UnknownKey { .. })
    ));
    assert!(shared.verify(new_token.as_str()).is_ok());
}

#[test]
fn token_without_kid_is_an_unknown_key() {
    let claims = serde_json::to_string(&hs_issuer().claims_for("u")).unwrap();
    let token = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(&claims)
    );
    assert!(matches!(
        hs_verifier().verify(&token),
        Err(Error::UnknownKey { kid: None })
    ));
}

#[test]
fn wrong_audience_and_issuer_are_refused() {
    let other_aud = Issuer::new(
        SigningKey::hs256("hs-1", SECRET).unwrap(),
        "auth",
        "billing",
    );
    let token = other_aud.sign(&other_aud.claims_for("u")).unwrap();
    match hs_verifier().verify(token.as_str()) {
        Err(Error::WrongAudience { expected }) => assert_eq!(expected, "tidewell"),
        other => panic!("expected WrongAudience, got {other:?}"),
    }
    let other_iss = Issuer::new(
        SigningKey::hs256("hs-1", SECRET).unwrap(),
        "evil",
        "tidewell",
    );
    let token = other_iss.sign(&other_iss.claims_for("u")).unwrap();
    assert!(matches!(
        hs_verifier().verify(token.as_str()),
        Err(Error::WrongIssuer { .. })
    ));
}

#[test]
fn audience_array_from_other_issuers_is_understood() {
    let issuer = hs_issuer();
    let mut claims = issuer.claims_for("u");
    claims.aud = vec!["other".into(), "tidewell".into()];
    let token = issuer.sign(&claims).unwrap();
    assert_eq!(
        hs_verifier().verify(token.as_str()).unwrap().aud,
        claims.aud
    );
}

#[test]
fn weak_or_bad_keys_are_refused_with_advice() {
    let err = SigningKey::hs256("k", b"short").unwrap_err().to_string();
    assert!(
        err.contains("at least 32 bytes") && err.contains("openssl rand"),
        "{err}"
    );
    assert!(SigningKey::hs256("", SECRET).is_err(), "empty kid");
    assert!(SigningKey::ed25519_pem("k", b"not a pem").is_err());
    assert!(
        VerifyingKey::ed25519_pem(
            "k",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
        .is_err()
    );
}

#[test]
fn keys_never_show_material_in_debug() {
    let key = SigningKey::hs256("hs-1", SECRET).unwrap();
    let shown = format!(
        "{key:?} {:?} {:?}",
        VerifyingKey::hs256("hs-1", SECRET).unwrap(),
        hs_issuer()
    );
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(shown.contains("hs-1"));
}

#[test]
fn malformed_tokens_get_clear_errors() {
    let v = hs_verifier();
    for bad in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
        assert!(
            matches!(
                v.verify(bad),
                Err(Error::Malformed(_) | Error::UnknownKey { .. })
            ),
            "{bad:?}"
        );
    }
    let huge = format!(
        "{}.{}.sig",
        b64(r#"{"alg":"HS256","kid":"hs-1"}"#),
        "A".repeat(10_000)
    );
    assert!(matches!(v.verify(&huge), Err(Error::Malformed(m)) if m.contains("longer")));
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(s in "\\PC{0,300}") {
        let _ = hs_verifier().verify(&s);
    }

    #[test]
    fn arbitrary_three_part_tokens_never_verify(h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,200}", sig in "[A-Za-z0-9_-]{0,90}") {
        let token = [h, p, sig].join(".");
        prop_assert!(hs_verifier().verify(&token).is_err());
    }
}
