//! The admin service: every event once in the audit log (redeliveries included), the users
//! table, and admin-only endpoints.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use tidewell_admin_service::{AdminConfig, AdminService};
use tidewell_auth_service::events::{UserCreated, UserLoggedIn};
use tidewell_event_hub::{Hub, Topology};
use tidewell_service_kit::test_support::{SECRET, TestClient, TestDb, token};
use tidewell_testkit::unique_name;

async fn get(client: &TestClient, path: &str, token: &str) -> (StatusCode, Value) {
    client.call("GET", path, Some(token), None).await
}

async fn audit(postgres: bool) {
    let db = TestDb::new(postgres, "admin").await;
    let mut config = AdminConfig::new(db.url(), SECRET.to_vec());
    config.queue_service = unique_name("admin");
    let hub = Hub::memory("auth", Topology::new().service(config.queue()))
        .await
        .unwrap();
    let service = AdminService::start(config, hub.clone()).await.unwrap();
    let client = TestClient::new(service.router());
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
        let (_, d) = get(&client, "/api/admin/dashboard", &root).await;
        if d["logins"] == 1 && d["users"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, dash) = get(&client, "/api/admin/dashboard", &root).await;
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
    let (_, users) = get(&client, "/api/admin/users", &root).await;
    assert_eq!(users[0]["email"], "ann@example.com");
    assert_eq!(users[0]["logins"], 1);
    let (_, log) = get(&client, "/api/admin/audit?type=auth.user.login", &root).await;
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["event_id"], login.id().to_string());
    assert_eq!(log[0]["payload"]["session_id"], "s1");

    // Not an admin: 403; no token: 401; bad paging: 422.
    let (s, v) = get(&client, "/api/admin/audit", &token("u1", &[])).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, _) = get(&client, "/api/admin/users", "nope").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for q in ["limit=0", "limit=201", "offset=-1", "order=desc"] {
        let (s, _) = get(&client, &format!("/api/admin/audit?{q}"), &root).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_is_idempotent_and_admin_only() {
    audit(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_is_idempotent_and_admin_only() {
    audit(true).await;
}

/// `--help`, `--version`, a usage error, and a start-up error printed for a person (not a
/// `Debug` dump) with exit code 1.
#[test]
fn the_binary_behaves_like_a_tool() {
    let err = tidewell_service_kit::test_support::assert_service_binary::<AdminService>(env!(
        "CARGO_BIN_EXE_tidewell-admin"
    ));
    assert!(!err.contains("MissingVar"), "a Debug dump: {err}");
}

/// The operator's dead-letter tools: an event that failed while the database was broken is
/// listed (left in place), then replayed once the database is fixed: handled once, and gone
/// from the dead-letter queue. Admin only; an unknown queue is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_then_replayed_and_handled_once() {
    use tidewell_event_hub::RetryPolicy;
    let db = TestDb::new(false, "admin-dlq").await;
    let mut config = AdminConfig::new(db.url(), SECRET.to_vec());
    config.queue_service = unique_name("admin");
    let queue = config.queue().name();
    let hub = Hub::memory(
        "auth",
        Topology::new().service(config.queue().retry(RetryPolicy::none())),
    )
    .await
    .unwrap();
    let service = AdminService::start(config, hub.clone()).await.unwrap();
    let client = TestClient::new(service.router());
    let root = token("root", &["admin"]);
    let side = sqlx::AnyPool::connect(db.url()).await.unwrap();
    let run = |sql: &'static str| {
        let side = side.clone();
        async move { sqlx::query(sql).execute(&side).await.unwrap() }
    };

    // The audit table is gone: recording the event fails, and it is dead-lettered.
    run("ALTER TABLE audit_log RENAME TO audit_log_away").await;
    let created = hub.envelope(UserCreated {
        user_id: "u7".into(),
        email: "gus@example.com".into(),
        name: "Gus".into(),
        role: "user".into(),
    });
    hub.publish(&created).await.unwrap();
    let path = format!("/api/admin/dead-letters?queue={queue}");
    let mut listing = Value::Null;
    for _ in 0..100 {
        listing = get(&client, &path, &root).await.1;
        if listing["waiting"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listing["waiting"], 1, "{listing}");
    let letter = &listing["letters"][0];
    assert_eq!(letter["message_id"], created.id().to_string());
    assert_eq!(letter["event_type"], "auth.user.created");
    assert_eq!(letter["reason"], "retries-exhausted");
    assert_eq!(letter["event"]["payload"]["email"], "gus@example.com");
    assert!(
        letter["last_error"].as_str().unwrap().contains("audit_log"),
        "{letter}"
    );
    let (_, again) = get(&client, &path, &root).await;
    assert_eq!(again["waiting"], 1, "listing leaves it in place: {again}");

    // Fixed, then replayed: handled once, and the dead-letter queue is empty.
    run("ALTER TABLE audit_log_away RENAME TO audit_log").await;
    let body = serde_json::json!({"queue": queue}).to_string();
    let (s, v) = client
        .call(
            "POST",
            "/api/admin/dead-letters/replay",
            Some(&root),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["replayed"], serde_json::json!([created.id().to_string()]));
    let mut dash = Value::Null;
    for _ in 0..100 {
        dash = get(&client, "/api/admin/dashboard", &root).await.1;
        if dash["events"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, dash2) = get(&client, "/api/admin/dashboard", &root).await;
    assert_eq!(
        (&dash["events"], &dash2["events"], &dash2["users"]),
        (&1.into(), &1.into(), &1.into()),
        "{dash2}"
    );
    let (_, after) = get(&client, &path, &root).await;
    assert_eq!(after["waiting"], 0, "{after}");

    // Admin only; an unknown queue; a bad limit.
    let (s, _) = get(&client, &path, &token("u1", &[])).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = get(&client, "/api/admin/dead-letters?queue=nope.events", &root).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = get(&client, &format!("{path}&limit=0"), &root).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}
