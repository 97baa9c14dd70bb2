//! Tidewell in one minute: an event envelope round trip, a backoff schedule, and a JWT issued and
//! verified. Run it with `cargo run --example quickstart`.
#![allow(
    clippy::print_stdout,
    reason = "an example prints for a person to read"
)]

use std::error::Error;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewell::auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
use tidewell::core::{Backoff, Envelope, Event, RawEnvelope};

/// A payment was created: version 1 of `payments.payment.created`.
#[derive(Debug, Serialize, Deserialize)]
struct PaymentCreated {
    payment_id: u64,
    user_id: String,
    amount_cents: i64,
    currency: String,
}

impl Event for PaymentCreated {
    const TYPE: &'static str = "payments.payment.created";
    const VERSION: u16 = 1;
}

fn main() -> Result<(), Box<dyn Error>> {
    println!("1. An event envelope, as it travels on every wire:\n");
    let sent = Envelope::new(
        "payments",
        PaymentCreated {
            payment_id: 42,
            user_id: "user-7".into(),
            amount_cents: 1_999,
            currency: "EUR".into(),
        },
    );
    let bytes = sent.to_json()?;
    let pretty: serde_json::Value = serde_json::from_slice(&bytes)?;
    println!("{}\n", serde_json::to_string_pretty(&pretty)?);

    // A router reads the type first, then decodes the payload into the Rust type.
    let raw = RawEnvelope::parse(&bytes)?;
    println!(
        "   routed by type {:?}, version {}",
        raw.event_type(),
        raw.version()
    );
    let received: Envelope<PaymentCreated> = raw.decode()?;
    assert_eq!(received.id(), sent.id());
    println!(
        "   decoded payment {} of {} {} for {}; same id: {}\n",
        received.payload().payment_id,
        received.payload().amount_cents,
        received.payload().currency,
        received.payload().user_id,
        received.id() == sent.id(),
    );
    let v9 = String::from_utf8(bytes)?.replace("\"version\":1", "\"version\":9");
    match Envelope::<PaymentCreated>::from_json(v9.as_bytes()) {
        Err(e) => println!("   a version 9 envelope is refused: {e}\n"),
        Ok(_) => return Err("a version 9 envelope should be refused".into()),
    }

    println!("2. A backoff schedule (100 ms to 5 s, x2, jittered, 8 attempts):\n");
    let backoff = Backoff::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(5))
        .max_attempts(8)
        .build()?;
    for (attempt, delay) in backoff.schedule().enumerate() {
        println!(
            "   retry {attempt}: wait {:>6.0} ms  (window up to {:>5} ms)",
            delay.as_secs_f64() * 1_000.0,
            backoff.ceiling(u32::try_from(attempt)?).as_millis()
        );
    }

    println!("\n3. A JWT issued and verified:\n");
    let secret = b"quickstart-secret-at-least-32-bytes!";
    let issuer = Issuer::new(
        SigningKey::hs256("k-2026-11", secret)?,
        "tidewell-auth",
        "tidewell",
    )
    .ttl(Duration::from_secs(900));
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("k-2026-11", secret)?]),
        "tidewell-auth",
        "tidewell",
    );
    let mut claims = issuer.claims_for("user-7");
    claims.roles = vec!["user".into()];
    claims.sid = Some("session-1".into());
    claims.did = Some("device-1".into());
    let token = issuer.sign(&claims)?;
    println!(
        "   issued {token:?} ({} bytes, kid {})",
        token.as_str().len(),
        issuer.kid()
    );
    let verified = verifier.verify(token.as_str())?;
    println!(
        "   verified: sub={} roles={:?} sid={:?} did={:?}, expires in {} s",
        verified.sub,
        verified.roles,
        verified.sid,
        verified.did,
        verified.exp - verified.iat
    );
    let mut tampered = token.into_string();
    tampered.push('x');
    match verifier.verify(&tampered) {
        Err(e) => println!("   a tampered token is refused: {e}"),
        Ok(_) => return Err("a tampered token should be refused".into()),
    }
    Ok(())
}
