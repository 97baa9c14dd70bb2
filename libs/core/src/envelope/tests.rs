//! The envelope's unit tests.

use super::*;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentCreated {
    payment_id: u64,
    amount_cents: i64,
    currency: String,
}

impl Event for PaymentCreated {
    const TYPE: &'static str = "payments.payment.created";
    const VERSION: u16 = 2;

    fn upcast(version: u16, payload: serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        #[derive(Deserialize)]
        struct V1 {
            payment_id: u64,
            amount_cents: i64,
        }
        (version == 1).then(|| {
            serde_json::from_value::<V1>(payload).map(|v1| PaymentCreated {
                payment_id: v1.payment_id,
                amount_cents: v1.amount_cents,
                currency: "EUR".into(),
            })
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct UserDeleted {
    id: u64,
}
impl Event for UserDeleted {
    const TYPE: &'static str = "auth.user.deleted";
    const VERSION: u16 = 1;
}

fn sample() -> Envelope<PaymentCreated> {
    Envelope::new(
        "payments",
        PaymentCreated {
            payment_id: 42,
            amount_cents: 1999,
            currency: "USD".into(),
        },
    )
}

fn raw_json(ty: &str, version: u16, payload: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "0190b3a4-7c4e-7d2a-9f1e-2b3c4d5e6f70",
        "type": ty,
        "version": version,
        "source": "payments",
        "occurred_at": "2026-11-26T11:00:00+01:00",
        "correlation_id": "req-1",
        "payload": payload,
    }))
    .unwrap()
}

#[test]
fn round_trip_keeps_every_field() {
    let original = sample()
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_correlation_id("req-9".parse().unwrap());
    let decoded = Envelope::<PaymentCreated>::from_json(&original.to_json().unwrap()).unwrap();
    assert_eq!(decoded, original);
    assert_eq!(decoded.id().get_version_num(), 7);
}

#[test]
fn wire_form_uses_documented_field_names() {
    let value: serde_json::Value = serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
    let obj = value.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "correlation_id",
            "id",
            "occurred_at",
            "payload",
            "source",
            "type",
            "version"
        ]
    );
    assert_eq!(obj["type"], "payments.payment.created");
    assert_eq!(obj["version"], 2);
    assert!(obj["occurred_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn occurred_at_is_normalised_to_utc() {
    let env = Envelope::<PaymentCreated>::from_json(&raw_json(
        "payments.payment.created",
        2,
        json!({"payment_id": 1, "amount_cents": 5, "currency": "EUR"}),
    ))
    .unwrap();
    assert_eq!(env.occurred_at().offset(), time::UtcOffset::UTC);
    assert_eq!(env.occurred_at().hour(), 10);
}

#[test]
fn wrong_type_is_a_typed_error() {
    let bytes = raw_json("auth.user.deleted", 1, json!({"id": 1}));
    match Envelope::<PaymentCreated>::from_json(&bytes) {
        Err(Error::UnexpectedEventType { expected, found }) => {
            assert_eq!(expected, "payments.payment.created");
            assert_eq!(found, "auth.user.deleted");
        }
        other => panic!("expected UnexpectedEventType, got {other:?}"),
    }
}

#[test]
fn newer_version_is_unsupported() {
    let bytes = raw_json("payments.payment.created", 3, json!({}));
    match Envelope::<PaymentCreated>::from_json(&bytes) {
        Err(Error::UnsupportedVersion {
            found: 3,
            supported: 2,
            ..
        }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn older_version_without_upcast_is_unsupported() {
    let bytes = raw_json("auth.user.deleted", 0, json!({"id": 1}));
    let err = Envelope::<UserDeleted>::from_json(&bytes).unwrap_err();
    assert!(matches!(
        err,
        Error::UnsupportedVersion {
            found: 0,
            supported: 1,
            ..
        }
    ));
    assert!(err.to_string().contains("Event::upcast"), "{err}");
}

#[test]
fn upcast_accepts_v1_where_v2_is_expected() {
    let bytes = raw_json(
        "payments.payment.created",
        1,
        json!({"payment_id": 7, "amount_cents": 100}),
    );
    let env = Envelope::<PaymentCreated>::from_json(&bytes).unwrap();
    assert_eq!(env.version(), 2);
    assert_eq!(env.payload().currency, "EUR");
    assert_eq!(env.payload().payment_id, 7);
}

#[test]
fn payload_mismatch_names_type_and_version() {
    let bytes = raw_json("payments.payment.created", 2, json!({"payment_id": "x"}));
    match Envelope::<PaymentCreated>::from_json(&bytes) {
        Err(Error::MalformedPayload {
            event_type,
            version: 2,
            ..
        }) => {
            assert_eq!(event_type, "payments.payment.created");
        }
        other => panic!("expected MalformedPayload, got {other:?}"),
    }
}

#[test]
fn malformed_input_never_panics() {
    for bytes in [
        &b""[..],
        b"{",
        b"null",
        b"[]",
        b"{\"id\":1}",
        &raw_json("Payments.Created", 1, json!({}))[..],
        &raw_json("payments", 1, json!({}))[..],
    ] {
        assert!(
            RawEnvelope::parse(bytes).is_err(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let mut bad_time = serde_json::from_slice::<serde_json::Value>(&raw_json(
        "payments.payment.created",
        2,
        json!({}),
    ))
    .unwrap();
    bad_time["occurred_at"] = json!("yesterday");
    let err = RawEnvelope::parse(&serde_json::to_vec(&bad_time).unwrap()).unwrap_err();
    assert!(err.to_string().contains("occurred_at"), "{err}");
}

#[test]
fn raw_envelope_routes_before_typed_decode() {
    let bytes = sample().to_json().unwrap();
    let raw = RawEnvelope::parse(&bytes).unwrap();
    assert_eq!(raw.event_type(), PaymentCreated::TYPE);
    assert_eq!(raw.payload()["payment_id"], 42);
    let typed: Envelope<PaymentCreated> = raw.decode().unwrap();
    assert_eq!(typed.payload().payment_id, 42);
}

#[test]
fn event_type_rules() {
    for ok in ["a.b", "payments.payment.created", "auth.user_2.login"] {
        assert!(is_valid_event_type(ok), "{ok}");
    }
    for bad in [
        "", "a", "a.", ".a", "a..b", "A.b", "a.B", "a.2b", "a.b-c", "a b.c",
    ] {
        assert!(!is_valid_event_type(bad), "{bad}");
    }
    assert!(!is_valid_event_type(&format!("a.{}", "b".repeat(127))));
}

#[test]
fn correlation_id_rules() {
    assert!(CorrelationId::new().as_str().len() == 36);
    assert!("Root=1-67891233-abcdef".parse::<CorrelationId>().is_ok());
    for bad in ["", "a b", "a,b", "a;b", "a\"b", "a\\b", "é"] {
        assert!(bad.parse::<CorrelationId>().is_err(), "{bad}");
    }
    assert!("x".repeat(129).parse::<CorrelationId>().is_err());
    assert!("x".repeat(128).parse::<CorrelationId>().is_ok());
    let err = serde_json::from_str::<CorrelationId>("\"a b\"").unwrap_err();
    assert!(err.to_string().contains("invalid correlation id"), "{err}");
}

#[test]
fn new_correlation_ids_are_uuid_v7_now_and_distinct() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ids: Vec<CorrelationId> = (0..10_000).map(|_| CorrelationId::new()).collect();
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let distinct: std::collections::HashSet<&str> = ids.iter().map(|i| i.as_str()).collect();
    assert_eq!(distinct.len(), ids.len());
    for id in &ids {
        let uuid: Uuid = id.as_str().parse().unwrap();
        assert_eq!(uuid.get_version_num(), 7, "{id}");
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        assert_eq!(
            id.as_str(),
            uuid.hyphenated().to_string(),
            "lower-case hyphenated"
        );
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        let ms = u128::from(secs) * 1000 + u128::from(nanos / 1_000_000);
        // The coarse clock is the kernel's last tick: up to one tick (at most 10 ms, HZ=100)
        // behind the precise clock.
        assert!(
            (before - 10..=after).contains(&ms),
            "{id}: {ms} not in {before}..={after}"
        );
    }
}
