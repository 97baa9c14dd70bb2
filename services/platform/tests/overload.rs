//! Overload, small: the payments service serves 4 requests at once; 200 payments arrive at
//! once through the gateway on RabbitMQ + Redis + PostgreSQL. Every answer is a 201 or a 503
//! with `Retry-After`, nothing else, and every payment accepted reaches its owner's WebSocket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::{DataDir, access, login, next_json, register, send, ws};
use tidewell_platform::Platform;
use tidewell_testkit::{TestDatabase, TestRabbit, TestRedis};

const SECRET: &[u8] = b"overload-secret-overload-secret-overload";
const BURST: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_gets_201_or_503_and_every_accepted_payment_is_delivered() {
    let rabbit = TestRabbit::connect().await;
    let redis = TestRedis::connect().await;
    let mut dbs = Vec::new();
    for _ in 0..4 {
        dbs.push(TestDatabase::create().await);
    }
    let data = DataDir::new("overload");
    let mut c = support::local_config(SECRET, data.path());
    support::on_real_services(&mut c, &rabbit, &redis, &dbs);
    c.rate_limits = (0, 0);
    c.payments_max_in_flight = 4;
    let platform = Platform::start(c).await.unwrap();
    support::owns(&rabbit, &platform);
    let a = platform.addr;
    register(a, "olga@example.com", "Olga").await;
    let token = access(&login(a, "olga@example.com", Some("olga-1")).await);
    let mut socket = ws(a, &token).await;

    let mut burst = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let token = token.clone();
        burst.spawn(async move {
            let req = support::request(
                a,
                "POST",
                "/api/payments",
                Some(&token),
                Some(&json!({"amount": "1.00", "currency": "EUR", "description": format!("burst {i}")})),
            );
            send(a, req).await
        });
    }
    let (mut accepted, mut refused) = (HashSet::new(), 0);
    while let Some(answer) = burst.join_next().await {
        let (status, headers, body) = answer.unwrap();
        match status {
            201 => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                accepted.insert(v["id"].as_str().unwrap().to_owned());
            }
            503 => {
                assert_eq!(
                    headers.get("retry-after").and_then(|v| v.to_str().ok()),
                    Some("1"),
                    "a 503 says when to retry"
                );
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["error"]["code"], "overloaded", "{v}");
                refused += 1;
            }
            other => panic!(
                "only 201 or 503 under load, got {other}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    assert_eq!(accepted.len() + refused, BURST);
    assert!(refused > 0, "4 at once cannot take {BURST} at once");
    assert!(!accepted.is_empty(), "some payments get through");

    // Every accepted payment's event reaches the owner, once each.
    let mut seen = HashSet::new();
    while seen.len() < accepted.len() {
        let Some(frame) = next_json(&mut socket, Duration::from_secs(10)).await else {
            break;
        };
        if let Some(id) = frame["event"]["payload"]["payment_id"].as_str() {
            assert!(
                accepted.contains(id),
                "an event for a refused payment: {id}"
            );
            assert!(seen.insert(id.to_owned()), "{id} delivered twice");
        }
    }
    let missing: Vec<_> = accepted.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted payments never reached the WebSocket: {missing:?}",
        missing.len(),
        accepted.len()
    );
    platform.shutdown().await;
}
