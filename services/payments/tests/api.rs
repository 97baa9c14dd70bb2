//! The payments API over HTTP (in process), on SQLite and Postgres: the status machine,
//! ownership, pagination, validation, cached reads that never go stale, and the events.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use tidewell_cache::Cache;
use tidewell_payments_service::{PaymentsConfig, PaymentsService};
use tidewell_service_kit::test_support::{EventLog, SECRET, TestClient, TestDb, token};
use tokio_util::sync::CancellationToken;

struct App {
    client: TestClient,
    service: PaymentsService,
    events: EventLog,
    _stop: tokio_util::sync::DropGuard,
    _db: TestDb,
}

async fn app(postgres: bool) -> App {
    let db = TestDb::new(postgres, "payments").await;
    let (hub, events) = EventLog::hub("payments", "payments.#").await;
    let cache = Cache::builder().build().await.unwrap();
    let stop = CancellationToken::new();
    let service = PaymentsService::start(
        PaymentsConfig::new(db.url(), SECRET.to_vec()),
        hub,
        cache,
        stop.clone(),
    )
    .await
    .unwrap();
    App {
        client: TestClient::new(service.router()),
        service,
        events,
        _stop: stop.drop_guard(),
        _db: db,
    }
}

impl App {
    async fn create(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.client
            .send_json("POST", "/api/payments", Some(token), &body)
            .await
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn lifecycle(postgres: bool) {
    let app = app(postgres).await;
    let ann = token("ann", &[]);
    let bob = token("bob", &[]);
    let mut ids = Vec::new();
    for (amount, currency) in [
        (json!("12.50"), "EUR"),
        (json!(7), "USD"),
        (json!(0.99), "GBP"),
    ] {
        let (s, p) = app
            .create(
                &ann,
                json!({"amount": amount, "currency": currency, "description": "tea"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        assert_eq!(p["status"], "pending");
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    let (s, p) = app
        .create(&bob, json!({"amount": "1", "currency": "EUR"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let bobs = p["id"].as_str().unwrap().to_owned();

    let (s, page) = app
        .client
        .call("GET", "/api/payments", Some(&ann), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["total"], 3);
    let amounts: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["0.99", "7.00", "12.50"], "newest first");
    let (_, page) = app
        .client
        .call("GET", "/api/payments?limit=2&offset=2", Some(&ann), None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    // Bob's payment is not Ann's to see or change: the same 404 as a missing one.
    let (s, e1) = app
        .client
        .call("GET", &format!("/api/payments/{bobs}"), Some(&ann), None)
        .await;
    let (s2, e2) = app
        .client
        .call(
            "GET",
            "/api/payments/0190b3a4-7c4e-7d2a-9f1e-2b3c4d5e6f70",
            Some(&ann),
            None,
        )
        .await;
    assert_eq!((s, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(e1["error"]["message"], e2["error"]["message"]);
    let (s, _) = app
        .client
        .call(
            "PATCH",
            &format!("/api/payments/{bobs}/status"),
            Some(&ann),
            Some(r#"{"status":"cancelled"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // An admin sees it.
    let (s, _) = app
        .client
        .call(
            "GET",
            &format!("/api/payments/{bobs}"),
            Some(&token("root", &["admin"])),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // The status machine.
    let first = &ids[0];
    let (s, p) = app
        .client
        .call(
            "PATCH",
            &format!("/api/payments/{first}/status"),
            Some(&ann),
            Some(r#"{"status":"completed"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["status"], "completed");
    for next in ["cancelled", "failed", "pending", "completed"] {
        let (s, e) = app
            .client
            .call(
                "PATCH",
                &format!("/api/payments/{first}/status"),
                Some(&ann),
                Some(&json!({"status": next}).to_string()),
            )
            .await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::CONFLICT, "illegal_transition"),
            "completed -> {next}"
        );
    }
    let (s, _) = app
        .client
        .call(
            "PATCH",
            &format!("/api/payments/{}/status", ids[1]),
            Some(&ann),
            Some(r#"{"status":"pending"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, page) = app
        .client
        .call("GET", "/api/payments?status=completed", Some(&ann), None)
        .await;
    assert_eq!(
        page["total"], 1,
        "the list was invalidated by the change: {page}"
    );

    // Events: 4 created, 1 updated, through the outbox.
    let types = app.events.types(5).await;
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "payments.payment.created")
            .count(),
        4,
        "{types:?}"
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "payments.payment.updated")
            .count(),
        1,
        "{types:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_payment_lifecycle() {
    lifecycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_payment_lifecycle() {
    lifecycle(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reads_come_from_the_cache_and_never_go_stale() {
    let app = app(false).await;
    let ann = token("ann", &[]);
    let (_, p) = app
        .create(&ann, json!({"amount": "5.00", "currency": "EUR"}))
        .await;
    let id = p["id"].as_str().unwrap();
    for _ in 0..50 {
        let (s, _) = app
            .client
            .call("GET", &format!("/api/payments/{id}"), Some(&ann), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = app
            .client
            .call("GET", "/api/payments", Some(&ann), None)
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let ratio = app.service.cache_hit_ratio();
    assert!(ratio > 0.8, "hit ratio {ratio}");
    let (s, _) = app
        .client
        .call(
            "PATCH",
            &format!("/api/payments/{id}/status"),
            Some(&ann),
            Some(r#"{"status":"failed"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, p) = app
        .client
        .call("GET", &format!("/api/payments/{id}"), Some(&ann), None)
        .await;
    assert_eq!(p["status"], "failed", "the cached read was invalidated");
    let (_, page) = app
        .client
        .call("GET", "/api/payments", Some(&ann), None)
        .await;
    assert_eq!(page["items"][0]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_never_a_500() {
    let app = app(false).await;
    let ann = token("ann", &[]);
    let bodies = [
        (json!({"amount": 0, "currency": "EUR"}), "invalid_amount"),
        (json!({"amount": -5, "currency": "EUR"}), "invalid_amount"),
        (
            json!({"amount": "1.234", "currency": "EUR"}),
            "invalid_amount",
        ),
        (
            json!({"amount": "1e3", "currency": "EUR"}),
            "invalid_amount",
        ),
        (
            json!({"amount": "abc", "currency": "EUR"}),
            "invalid_amount",
        ),
        (
            json!({"amount": "1", "currency": "eur"}),
            "invalid_currency",
        ),
        (
            json!({"amount": "1", "currency": "XXX"}),
            "invalid_currency",
        ),
        (
            json!({"amount": "1", "currency": "EUR'; DROP TABLE payments; --"}),
            "invalid_currency",
        ),
        (
            json!({"amount": "1", "currency": "EUR", "user_id": "bob"}),
            "invalid_body",
        ),
        (json!({"amount": true, "currency": "EUR"}), "invalid_body"),
        (json!({"currency": "EUR"}), "invalid_body"),
    ];
    for (body, want) in bodies {
        let (s, v) = app.create(&ann, body.clone()).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, want),
            "{body}: {v}"
        );
    }
    let (s, v) = app
        .client
        .call("POST", "/api/payments", Some(&ann), Some("{\"amount\":"))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_json"));
    let big =
        json!({"amount": "1", "currency": "EUR", "description": "x".repeat(20_000)}).to_string();
    let (s, _) = app
        .client
        .call("POST", "/api/payments", Some(&ann), Some(&big))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    for q in [
        "limit=0",
        "limit=101",
        "offset=999999999",
        "status=lost",
        "limit=abc",
        "sort=amount",
    ] {
        let (s, v) = app
            .client
            .call("GET", &format!("/api/payments?{q}"), Some(&ann), None)
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {v}");
    }
    for path in [
        "/api/payments/1%27%20OR%20%271%27%3D%271",
        "/api/payments/..%2F..%2Fetc",
    ] {
        let (s, _) = app.client.call("GET", path, Some(&ann), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, v) = app.client.call("GET", "/api/payments", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let expired = {
        let issuer = tidewell_service_kit::issuer(SECRET, Duration::from_secs(600)).unwrap();
        let mut c = issuer.claims_for("ann");
        c.exp = 1;
        c.nbf = 0;
        c.iat = 0;
        issuer.sign(&c).unwrap().into_string()
    };
    let (s, _) = app
        .client
        .call("GET", "/api/payments", Some(&expired), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// `--help`, `--version`, a usage error, and a start-up error printed for a person (not a
/// `Debug` dump) with exit code 1.
#[test]
fn the_binary_behaves_like_a_tool() {
    let err = tidewell_service_kit::test_support::assert_service_binary::<PaymentsService>(env!(
        "CARGO_BIN_EXE_tidewell-payments"
    ));
    assert!(!err.contains("MissingVar"), "a Debug dump: {err}");
}
