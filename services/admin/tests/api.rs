//! The admin service: every event once in the audit log (redeliveries included), the users
//! table, and admin-only endpoints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tidewell_admin_service::{AdminConfig, AdminService};
use tidewell_auth_service::events::{UserCreated, UserLoggedIn};
use tidewell_event_hub::{Hub, Topology};
use tidewell_testkit::{TestDatabase, unique_name};
use tower::ServiceExt as _;

const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

fn token(user: &str, roles: &[&str]) -> String {
    let issuer = tidewell_service_kit::issuer(SECRET, Duration::from_secs(600)).unwrap();
    let mut c = issuer.claims_for(user);
    c.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    issuer.sign(&c).unwrap().into_string()
}

async fn get(router: &Router, path: &str, token: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn audit(database_url: String) {
    let mut config = AdminConfig::new(database_url, SECRET.to_vec());
    config.queue_service = unique_name("admin");
    let hub = Hub::memory("auth", Topology::new().service(config.queue()))
        .await
        .unwrap();
    let service = AdminService::start(config, hub.clone()).await.unwrap();
    let router = tidewell_service_kit::layers(service.router());
    let root = token("root", &["admin"]);

    let created = hub.envelope(UserCreated {
        user_id: "u1".into(),
        email: "ann@example.com".into(),
        name: "Ann".into(),
        role: "user".into(),
    });
    let login = hub.envelope(UserLoggedIn {
        user_id: "u1".into(),
        session_id: "s1".into(),
        device_id: "d1".into(),
    });
    // Each published twice (a redelivery must not count twice), the login first: events of one
    // user may be handled in any order.
    for e in [&login, &login] {
        hub.publish(e).await.unwrap();
    }
    for e in [&created, &created] {
        hub.publish(e).await.unwrap();
    }
    for _ in 0..100 {
        let (_, d) = get(&router, "/api/admin/dashboard", &root).await;
        if d["logins"] == 1 && d["users"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, dash) = get(&router, "/api/admin/dashboard", &root).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            dash["users"].as_i64(),
            dash["logins"].as_i64(),
            dash["events"].as_i64()
        ),
        (Some(1), Some(1), Some(2)),
        "{dash}"
    );
    let (_, users) = get(&router, "/api/admin/users", &root).await;
    assert_eq!(users[0]["email"], "ann@example.com");
    assert_eq!(users[0]["logins"], 1);
    let (_, log) = get(&router, "/api/admin/audit?type=auth.user.login", &root).await;
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["event_id"], login.id().to_string());
    assert_eq!(log[0]["payload"]["session_id"], "s1");

    // Not an admin: 403; no token: 401; bad paging: 422.
    let (s, v) = get(&router, "/api/admin/audit", &token("u1", &[])).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, _) = get(&router, "/api/admin/users", "nope").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for q in ["limit=0", "limit=201", "offset=-1", "order=desc"] {
        let (s, _) = get(&router, &format!("/api/admin/audit?{q}"), &root).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_is_idempotent_and_admin_only() {
    let f = std::env::temp_dir().join(format!("{}.db", unique_name("admin")));
    audit(format!("sqlite://{}?mode=rwc", f.display())).await;
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", f.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_is_idempotent_and_admin_only() {
    let db = TestDatabase::create().await;
    audit(db.url().to_owned()).await;
}

/// `--help`, `--version`, a usage error, and a start-up error printed for a person (not a
/// `Debug` dump) with exit code 1.
#[test]
fn the_binary_behaves_like_a_tool() {
    let bin = env!("CARGO_BIN_EXE_tidewell-admin");
    tidewell_testkit::assert_behaves_like_a_tool(bin, AdminConfig::VARS);
    tidewell_testkit::assert_behaves_like_a_tool(bin, tidewell_event_hub::HubConfig::VARS);
    let out = std::process::Command::new(bin)
        .env_remove("TIDEWELL_JWT_SECRET")
        .env("TIDEWELL_LOG_FORMAT", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable TIDEWELL_JWT_SECRET is not set")
            && err.contains("tidewell-admin --help"),
        "{err}"
    );
    assert!(!err.contains("MissingVar"), "a Debug dump: {err}");
}
