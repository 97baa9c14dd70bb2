//! The Redis de-duplication guard against the real Redis: claims, completion, release, expiry,
//! and two hubs (two "processes") sharing one guard so each event runs once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Fixture, Kind, PaymentCreated, eventually};
use tidewell_core::Envelope;
use tidewell_event_hub::{Claim, Dedup, RedisDedup, RetryPolicy, Subscription};
use tidewell_testkit::TestRedis;

#[tokio::test]
async fn claim_complete_release_and_lease_expiry() {
    let redis = TestRedis::connect().await;
    let guard = RedisDedup::connect(redis.url(), redis.prefix())
        .await
        .unwrap()
        .lease(Duration::from_millis(200));
    assert_eq!(guard.claim("a").await.unwrap(), Claim::Claimed);
    assert_eq!(guard.claim("a").await.unwrap(), Claim::InProgress);
    guard.complete("a").await.unwrap();
    assert_eq!(guard.claim("a").await.unwrap(), Claim::Done);
    guard.release("a").await.unwrap();
    assert_eq!(
        guard.claim("a").await.unwrap(),
        Claim::Done,
        "release never undoes a completion"
    );

    assert_eq!(guard.claim("b").await.unwrap(), Claim::Claimed);
    guard.release("b").await.unwrap();
    assert_eq!(
        guard.claim("b").await.unwrap(),
        Claim::Claimed,
        "released claims can be taken again"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        guard.claim("b").await.unwrap(),
        Claim::Claimed,
        "a dead consumer's claim expires"
    );

    let mut c = redis.connection();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(redis.key("a"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0, "completed marks expire too (ttl {ttl})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_one_guard() {
    let f = Fixture::new(Kind::Amqp).await;
    let redis = TestRedis::connect().await;
    let q = f
        .service("dedup-redis", &RetryPolicy::none())
        .bind("payments.#");
    let name = q.name();
    let topology = f.topology().service(q);
    let (a, b) = (f.hub(topology.clone()).await, f.hub(topology).await);
    let runs = Arc::new(AtomicU32::new(0));
    for hub in [&a, &b] {
        let guard = RedisDedup::connect(redis.url(), redis.prefix())
            .await
            .unwrap();
        let r = runs.clone();
        hub.subscribe(
            Subscription::new(&name).dedup(guard),
            move |_: Envelope<PaymentCreated>| {
                r.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    }
    let events: Vec<_> = (0..20)
        .map(|seq| a.envelope(PaymentCreated { payment_id: 1, seq }))
        .collect();
    for e in &events {
        for _ in 0..3 {
            a.publish(e).await.unwrap();
        }
    }
    let settled = || {
        let m = |h: &tidewell_event_hub::Hub, o| h.metrics().consumed(&name, o);
        m(&a, "acked") + m(&b, "acked") + m(&a, "duplicate") + m(&b, "duplicate")
    };
    assert!(
        eventually(Duration::from_secs(20), || settled() == 60).await,
        "settled {}",
        settled()
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        20,
        "each of the 20 events ran once across both consumers"
    );
    a.shutdown(Duration::from_secs(5)).await.unwrap();
    b.shutdown(Duration::from_secs(5)).await.unwrap();
}
