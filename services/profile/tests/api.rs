//! The profile service: made from `auth.user.created` (once, however often it arrives), read
//! through the cache, updated with validation.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use tidewell_auth_service::events::{UserCreated, UserDeleted};
use tidewell_cache::Cache;
use tidewell_event_hub::{Hub, Topology};
use tidewell_profile_service::{ProfileConfig, ProfileService};
use tidewell_service_kit::test_support::{SECRET, TestClient, TestDb, token};
use tidewell_testkit::unique_name;

/// `method path` as `user`.
async fn call(
    client: &TestClient,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|b| b.to_string());
    client
        .call(method, path, Some(&token(user, &[])), body.as_deref())
        .await
}

async fn profiles(postgres: bool) {
    let db = TestDb::new(postgres, "profile").await;
    let mut config = ProfileConfig::new(db.url(), SECRET.to_vec());
    config.queue_service = unique_name("profile");
    let hub = Hub::memory("auth", Topology::new().service(config.queue()))
        .await
        .unwrap();
    let cache = Cache::builder().build().await.unwrap();
    let service = ProfileService::start(config, hub.clone(), cache)
        .await
        .unwrap();
    let client = TestClient::new(service.router());

    let (s, v) = call(&client, "GET", "/api/profile/me", "u1", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let created = hub.envelope(UserCreated {
        user_id: "u1".into(),
        email: "u1@example.com".into(),
        name: "Ann".into(),
        role: "user".into(),
    });
    hub.publish(&created).await.unwrap();
    let mut found = Value::Null;
    for _ in 0..100 {
        let (s, v) = call(&client, "GET", "/api/profile/me", "u1", None).await;
        if s == StatusCode::OK {
            found = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        found["display_name"], "Ann",
        "the cached 404 was invalidated: {found}"
    );
    assert_eq!(found["preferences"]["theme"], "system");

    let (s, v) = call(
        &client,
        "PATCH",
        "/api/profile/me",
        "u1",
        Some(json!({"bio": "tea"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["bio"], "tea");
    assert_eq!(v["display_name"], "Ann");
    // The same event again (a redelivery) changes nothing.
    hub.publish(&created).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, v) = call(&client, "GET", "/api/profile/me", "u1", None).await;
    assert_eq!(v["bio"], "tea");

    let (s, v) = call(
        &client,
        "PUT",
        "/api/profile/me/preferences",
        "u1",
        Some(json!({"theme": "dark", "language": "pt-BR", "notifications": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = call(&client, "GET", "/api/profile/me", "u1", None).await;
    assert_eq!(
        v["preferences"],
        json!({"theme": "dark", "language": "pt-BR", "notifications": false})
    );

    for (body, code) in [
        (
            json!({"theme": "neon", "language": "en", "notifications": true}),
            "invalid_theme",
        ),
        (
            json!({"theme": "dark", "language": "english", "notifications": true}),
            "invalid_language",
        ),
        (json!({"theme": "dark", "language": "en"}), "invalid_body"),
        (
            json!({"theme": "dark", "language": "en", "notifications": true, "x": 1}),
            "invalid_body",
        ),
    ] {
        let (s, v) = call(
            &client,
            "PUT",
            "/api/profile/me/preferences",
            "u1",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str().unwrap_or("")),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}"
        );
    }
    let (s, _) = call(
        &client,
        "PATCH",
        "/api/profile/me",
        "u1",
        Some(json!({"display_name": ""})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Another user sees only their own (missing) profile.
    let (s, _) = call(&client, "GET", "/api/profile/me", "u2", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A deleted account's profile goes (and its cached read with it).
    hub.publish(&hub.envelope(UserDeleted {
        user_id: "u1".into(),
    }))
    .await
    .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if call(&client, "GET", "/api/profile/me", "u1", None).await.0 == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "auth.user.deleted removes the profile");

    // Deletion wins whatever the order: a redelivered creation of u1, and u3 whose deletion is
    // handled before its creation, stay without a profile. u4 (created last) marks that the
    // events before it were handled.
    let created = |user: &str| {
        hub.envelope(UserCreated {
            user_id: user.into(),
            email: format!("{user}@example.com"),
            name: "Late".into(),
            role: "user".into(),
        })
    };
    hub.publish(&created("u1")).await.unwrap();
    hub.publish(&hub.envelope(UserDeleted {
        user_id: "u3".into(),
    }))
    .await
    .unwrap();
    hub.publish(&created("u3")).await.unwrap();
    hub.publish(&created("u4")).await.unwrap();
    let mut marker = false;
    for _ in 0..100 {
        if call(&client, "GET", "/api/profile/me", "u4", None).await.0 == StatusCode::OK {
            marker = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(marker, "u4's profile was made");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for user in ["u1", "u3"] {
        let (s, _) = call(&client, "GET", "/api/profile/me", user, None).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{user}: a deleted user's profile came back"
        );
        let (s, _) = call(
            &client,
            "PATCH",
            "/api/profile/me",
            user,
            Some(json!({"display_name": "Ghost"})),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{user}: a deleted profile was updated"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_profiles_from_events() {
    profiles(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_profiles_from_events() {
    profiles(true).await;
}

/// `--help`, `--version`, a usage error, and a start-up error printed for a person (not a
/// `Debug` dump) with exit code 1.
#[test]
fn the_binary_behaves_like_a_tool() {
    let err = tidewell_service_kit::test_support::assert_service_binary::<ProfileService>(env!(
        "CARGO_BIN_EXE_tidewell-profile"
    ));
    assert!(!err.contains("MissingVar"), "a Debug dump: {err}");
}
