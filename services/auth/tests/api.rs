//! The auth API over HTTP (in process), on SQLite and on Postgres: accounts, sign-in, refresh
//! rotation and reuse detection, sign-out, devices, input validation, and the events that leave
//! through the outbox.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tidewell_auth_service::{AuthConfig, AuthService};
use tidewell_service_kit::test_support::{EventLog, SECRET, TestClient, TestDb};
use tokio_util::sync::CancellationToken;

struct App {
    client: TestClient,
    events: EventLog,
    service: AuthService,
    _stop: tokio_util::sync::DropGuard,
    _db: TestDb,
}

async fn app(postgres: bool) -> App {
    let db = TestDb::new(postgres, "auth").await;
    let (hub, events) = EventLog::hub("auth", "auth.#").await;
    let mut config = AuthConfig::new(db.url(), SECRET.to_vec());
    config.admin_emails = vec!["root@example.com".into()];
    let stop = CancellationToken::new();
    let service = AuthService::start(config, hub, stop.clone()).await.unwrap();
    App {
        client: TestClient::new(service.router()).header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36",
        ),
        events,
        service,
        _stop: stop.drop_guard(),
        _db: db,
    }
}

impl App {
    async fn json(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.client.send_json("POST", path, token, &body).await
    }

    async fn register_and_login(&self, email: &str, device: &str) -> Value {
        let (s, _) = self
            .json(
                "/api/auth/register",
                None,
                json!({"email": email, "password": "a sound password 42", "name": "Ann"}),
            )
            .await;
        assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{s}");
        let (s, t) = self
            .json(
                "/api/auth/login",
                None,
                json!({"email": email, "password": "a sound password 42", "device_id": device}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        t
    }
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn accounts_and_sessions(postgres: bool) {
    let app = app(postgres).await;
    let (s, user) = app
        .json(
            "/api/auth/register",
            None,
            json!({"email": " Ann@Example.com ", "password": "a sound password 42", "name": "Ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["role"], "user");
    let (s, dup) = app
        .json(
            "/api/auth/register",
            None,
            json!({"email": "ann@example.com", "password": "another password 1", "name": "Ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(error_code(&dup), "email_taken");
    assert!(dup["error"]["request_id"].is_string(), "{dup}");

    // Wrong password and unknown email: the same refusal.
    let (s1, e1) = app
        .json(
            "/api/auth/login",
            None,
            json!({"email": "ann@example.com", "password": "wrong password 1"}),
        )
        .await;
    let (s2, e2) = app
        .json(
            "/api/auth/login",
            None,
            json!({"email": "bob@example.com", "password": "wrong password 1"}),
        )
        .await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(e1["error"]["message"], e2["error"]["message"]);

    let laptop = app.register_and_login("ann@example.com", "laptop-1").await;
    let phone = app.register_and_login("ann@example.com", "phone-1").await;
    let access = laptop["access_token"].as_str().unwrap();
    let (s, me) = app
        .client
        .call("GET", "/api/auth/me", Some(access), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["id"], user["id"]);

    // Refresh rotates; the old refresh token used again revokes the session.
    let r0 = laptop["refresh_token"].as_str().unwrap();
    let (s, next) = app
        .json("/api/auth/refresh", None, json!({"refresh_token": r0}))
        .await;
    assert_eq!(s, StatusCode::OK, "{next}");
    assert_eq!(next["session_id"], laptop["session_id"]);
    assert_ne!(next["refresh_token"], laptop["refresh_token"]);
    let (s, reuse) = app
        .json("/api/auth/refresh", None, json!({"refresh_token": r0}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        reuse["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    let (s, _) = app
        .json(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": next["refresh_token"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the whole session is revoked");
    let (s, _) = app
        .client
        .call(
            "GET",
            "/api/auth/me",
            Some(next["access_token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "and its access tokens with it");

    // Devices: the phone sees itself; a new laptop login; the phone signs out the others.
    let laptop = app.register_and_login("ann@example.com", "laptop-1").await;
    let phone_access = phone["access_token"].as_str().unwrap();
    let (s, list) = app
        .client
        .call("GET", "/api/auth/devices", Some(phone_access), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list.iter()
            .any(|d| d["device_id"] == "phone-1" && d["current"] == true)
    );
    assert!(list.iter().all(|d| d["name"] == "Chrome on Linux"));
    let (s, out) = app
        .json(
            "/api/auth/devices/revoke-others",
            Some(phone_access),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["revoked"], json!(["laptop-1"]));
    let (s, _) = app
        .client
        .call(
            "GET",
            "/api/auth/me",
            Some(laptop["access_token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app
        .client
        .call("GET", "/api/auth/me", Some(phone_access), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Another user cannot revoke Ann's device: the same 404 as an unknown one.
    let bob = app.register_and_login("bob@example.com", "bob-1").await;
    let bob_access = bob["access_token"].as_str().unwrap();
    let (s, e) = app
        .client
        .call(
            "POST",
            "/api/auth/devices/phone-1/revoke",
            Some(bob_access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e2) = app
        .client
        .call(
            "POST",
            "/api/auth/devices/nope/revoke",
            Some(bob_access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["message"], e2["error"]["message"]);
    let (s, _) = app
        .client
        .call("GET", "/api/auth/me", Some(phone_access), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Sign out: the access token stops working at once.
    let (s, _) = app
        .client
        .call("POST", "/api/auth/logout", Some(phone_access), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .client
        .call("GET", "/api/auth/me", Some(phone_access), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Every change left through the outbox.
    let types = app.events.types(9).await;
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count("auth.user.created"), 2, "{types:?}");
    assert_eq!(count("auth.user.login"), 4, "{types:?}");
    assert_eq!(count("auth.session.revoked"), 2, "{types:?}");
    assert_eq!(count("auth.user.logout"), 1, "{types:?}");
    // The relay marks a row sent after the broker confirms it, which can be just after the
    // consumer above saw the event: wait for it (bounded) rather than race it.
    let mut pending = app.service.outbox_pending().await.unwrap();
    for _ in 0..200 {
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        pending = app.service.outbox_pending().await.unwrap();
    }
    assert_eq!(pending, 0, "every outbox row sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_accounts_sessions_and_devices() {
    accounts_and_sessions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_accounts_sessions_and_devices() {
    accounts_and_sessions(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_with_a_code_never_a_500() {
    let app = app(false).await;
    let cases: Vec<(&str, Option<&str>, StatusCode, &str)> = vec![
        (
            "/api/auth/register",
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/api/auth/register",
            Some(r#"{"email":"a@b.co"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/api/auth/register",
            Some(r#"{"email":"a@b.co","password":"a sound password 42","name":"A","admin":true}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "/api/auth/register",
            Some(
                r#"{"email":"' OR 1=1; DROP TABLE users; --","password":"a sound password 42","name":"A"}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            "/api/auth/register",
            Some(r#"{"email":"a@b.co","password":"short1","name":"A"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
        ),
        (
            "/api/auth/register",
            Some(r#"{"email":"a@b.co","password":"a sound password 42","name":""}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        (
            "/api/auth/login",
            Some(r#"{"email":"x@y.zz","password":"p","device_id":"../../etc"}"#),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "/api/auth/refresh",
            Some(r#"{"refresh_token":"forged"}"#),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (path, body, status, code) in cases {
        let (s, v) = app.client.call("POST", path, None, body).await;
        assert_eq!((s, error_code(&v)), (status, code), "{path} {body:?}: {v}");
    }
    // The injection string did not hurt: a normal account works.
    app.register_and_login("carol@example.com", "c-1").await;
    // Oversized body.
    let big = format!(
        r#"{{"email":"a@b.co","password":"a sound password 42","name":"{}"}}"#,
        "x".repeat(20_000)
    );
    let (s, v) = app
        .client
        .call("POST", "/api/auth/register", None, Some(&big))
        .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        "{v}"
    );
    // Without JSON content type.
    let req = Request::builder()
        .method("POST")
        .uri("/api/auth/register")
        .body(Body::from("{}"))
        .unwrap();
    let res = app.client.send(req).await;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Tokens: none, garbage, forged with another secret.
    for token in [
        None,
        Some("garbage"),
        Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),
    ] {
        let (s, v) = app.client.call("GET", "/api/auth/me", token, None).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{token:?}"
        );
    }
    let forged = tidewell_auth::Issuer::new(
        tidewell_auth::SigningKey::hs256("k1", b"another-secret-another-secret-anoth").unwrap(),
        tidewell_auth_service::ISSUER,
        tidewell_auth_service::AUDIENCE,
    );
    let t = forged.sign(&forged.claims_for("someone")).unwrap();
    let (s, _) = app
        .client
        .call("GET", "/api/auth/me", Some(t.as_str()), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_are_named_by_configuration() {
    let app = app(false).await;
    let (s, v) = app
        .json(
            "/api/auth/register",
            None,
            json!({"email": "root@example.com", "password": "a sound password 42", "name": "Root"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["role"], "admin");
}

/// `--help`, `--version`, a usage error, and a start-up error printed for a person (not a
/// `Debug` dump) with exit code 1.
#[test]
fn the_binary_behaves_like_a_tool() {
    let err = tidewell_service_kit::test_support::assert_service_binary::<AuthService>(env!(
        "CARGO_BIN_EXE_tidewell-auth"
    ));
    assert!(!err.contains("MissingVar"), "a Debug dump: {err}");
}

/// The prune job: revoked sessions and devices older than `AUTH_PRUNE_REVOKED_AFTER` are
/// deleted on schedule, newer ones kept; the job reports what it removed as metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prune_job_removes_old_revocations_and_keeps_new_ones() {
    use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
    let db = TestDb::new(false, "auth-prune").await;
    let (hub, _events) = EventLog::hub("auth", "auth.#").await;
    let mut config = AuthConfig::new(db.url(), SECRET.to_vec());
    config.prune_revoked_after = Some(Duration::from_secs(3600));
    config.prune_every = Duration::from_millis(100);
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let service = AuthService::start(config, hub, stop).await.unwrap();
    let registry = DeviceRegistry::connect(db.url()).await.unwrap();
    for (device, session) in [("d-old", "s-old"), ("d-new", "s-new")] {
        registry
            .register(NewDevice::new("u1", device, session, ""))
            .await
            .unwrap();
        registry.revoke("u1", device).await.unwrap();
    }
    // One revocation two hours old (the age is one hour).
    let two_hours_ago = tidewell_service_kit::now_ms() - 2 * 3600 * 1000;
    let side = sqlx::AnyPool::connect(db.url()).await.unwrap();
    for sql in [
        "UPDATE revoked_sessions SET revoked_at = $1 WHERE session_id = 's-old'",
        "UPDATE devices SET revoked_at = $1 WHERE device_id = 'd-old'",
    ] {
        sqlx::query(sql)
            .bind(two_hours_ago)
            .execute(&side)
            .await
            .unwrap();
    }
    let mut pruned = false;
    for _ in 0..100 {
        if !registry.is_revoked("s-old").await.unwrap() {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pruned, "the old revocation is pruned");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        registry.is_revoked("s-new").await.unwrap(),
        "the recent one is kept, run after run"
    );
    let client = TestClient::new(service.router());
    let (status, scrape) = client.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let scrape = scrape.as_str().unwrap();
    let series = |name: &str| {
        scrape
            .lines()
            .find(|l| {
                l.starts_with(name)
                    && l.contains(r#"task="revocations""#)
                    && l.contains(r#"service="auth""#)
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(
        series("tidewell_housekeeping_removed_total{").as_deref(),
        Some("1"),
        "{scrape}"
    );
    let runs: u64 = series("tidewell_housekeeping_runs_total{outcome=\"ok\"")
        .unwrap()
        .parse()
        .unwrap();
    assert!(runs >= 2, "{scrape}");
}
