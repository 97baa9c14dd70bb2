//! The cache on the Redis Cluster of `scripts/local-cluster` when the master holding its slot
//! is stopped: the cache fails open (answers, never errors), a replica takes over, and the
//! invalidations made while the master was gone are honoured afterwards: the stale value is
//! never served again.
//!
//! Runs in nextest's `cluster` group (one at a time): it stops a node the other cluster tests
//! use.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use tidewell_cache::{Cache, Key, Tag};
use tidewell_testkit::cluster::LocalCluster;
use tidewell_testkit::unique_name;

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_fails_open_and_invalidations_made_meanwhile_are_honoured() {
    let cluster = LocalCluster::get();
    let prefix = unique_name("tw-cache");
    let cache = Cache::builder()
        .url(cluster.redis_url())
        .prefix(prefix.clone())
        .timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let users = cache.namespace("users").unwrap();
    let (ada, bob) = (Key::new("user").part(1), Key::new("user").part(2));
    let (ada_tag, bob_tag) = (Tag::new("user").part(1), Tag::new("user").part(2));
    users
        .set(&ada, &"Ada", MIN, std::slice::from_ref(&ada_tag))
        .await
        .unwrap();
    users
        .set(&bob, &"Bob", MIN, std::slice::from_ref(&bob_tag))
        .await
        .unwrap();
    assert_eq!(
        users.get::<String>(&ada).await.unwrap().as_deref(),
        Some("Ada")
    );

    let master = cluster.redis_owner(&format!("{{{prefix}}}"));
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_redis(master))
        .await
        .unwrap();

    // While the master is gone (and until its replica is promoted): answers, never errors; the
    // invalidation is kept for replay.
    let outage = Instant::now();
    let read = users.get::<String>(&ada).await;
    assert!(read.is_ok(), "fails open: {read:?}");
    cache
        .invalidate_tags(std::slice::from_ref(&ada_tag))
        .await
        .unwrap();
    assert!(users.get::<String>(&bob).await.is_ok(), "fails open");

    // The replica takes over: the cache works again, and Ada's entry, invalidated meanwhile, is
    // gone while Bob's is kept.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cache.health().await.store_reachable
            && users.get::<String>(&bob).await.unwrap().as_deref() == Some("Bob")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never recovered after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = outage.elapsed();
    for _ in 0..20 {
        assert_eq!(
            users.get::<String>(&ada).await.unwrap(),
            None,
            "an invalidation made while the master was down is honoured"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_master = cluster.redis_owner(&format!("{{{prefix}}}"));
    assert_ne!(new_master, master, "a replica took over");
    users
        .set(&ada, &"Ada 2", MIN, std::slice::from_ref(&ada_tag))
        .await
        .unwrap();
    assert_eq!(
        users.get::<String>(&ada).await.unwrap().as_deref(),
        Some("Ada 2")
    );

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_redis(master))
        .await
        .unwrap();
    eprintln!(
        "master {master} stopped; the cache answered throughout and worked again on {new_master} after {recovered:?}"
    );
}
