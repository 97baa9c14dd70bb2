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

    // Keys spread over the cluster's slots: Ada's entry and her tag's version share the slot
    // of the hash tag `user:1` (a probe in another namespace too); stop the master serving it.
    let master = cluster.redis_owner(&format!("{prefix}:t:{{user:1}}"));
    assert_eq!(
        master,
        cluster.redis_owner(&format!("{prefix}:e:users:{{user:1}}"))
    );
    let probes = cache.namespace("probe").unwrap();
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
    assert!(
        cache.health().await.pending_invalidations >= 1,
        "the invalidation waits for Redis (it was made while the master was down)"
    );

    // The replica takes over: the slot answers again (a probe written and read back), the
    // invalidation is replayed, and Ada's entry, invalidated meanwhile, is never served again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written = probes.set(&ada, &"probe", MIN, &[]).await.is_ok();
        if written && probes.get::<String>(&ada).await.unwrap().as_deref() == Some("probe") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot never answered again after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = outage.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.health().await.pending_invalidations > 0 {
        assert!(
            Instant::now() < deadline,
            "the invalidation was never replayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert_eq!(
            users.get::<String>(&ada).await.unwrap(),
            None,
            "an invalidation made while the master was down is honoured"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        users.get::<String>(&bob).await.unwrap().as_deref(),
        Some("Bob"),
        "the rest is kept"
    );
    let new_master = cluster.redis_owner(&format!("{prefix}:t:{{user:1}}"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_keys_spread_over_the_masters_and_clear_reaches_them_all() {
    const KEYS: u64 = 100_000;
    let cluster = LocalCluster::get();
    let prefix = unique_name("tw-spread");
    let cache = Cache::builder()
        .url(cluster.redis_url())
        .prefix(prefix.clone())
        .build()
        .await
        .unwrap();
    let items = cache.namespace("items").unwrap();
    let masters: Vec<u16> = cluster
        .redis_masters()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let ours = format!("{prefix}:*");

    let tasks = 32;
    let mut writers = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let items = items.clone();
        writers.spawn(async move {
            let mut n = t;
            while n < KEYS {
                items
                    .set(&Key::new("item").part(n), &n, MIN, &[Tag::new("all")])
                    .await
                    .unwrap();
                n += tasks;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let added: Vec<u64> = masters
        .iter()
        .map(|p| cluster.redis_count(*p, &ours))
        .collect();
    // The entries only: the tag "all" was never invalidated, so it has no version key yet.
    assert_eq!(added.iter().sum::<u64>(), KEYS, "{added:?}");
    let even = KEYS / 3;
    for (port, n) in masters.iter().zip(&added) {
        assert!(
            n.abs_diff(even) * 5 <= even,
            "master {port} holds {n} of {KEYS} keys, more than 20% off {even}: {added:?}"
        );
    }
    assert_eq!(
        items.get::<u64>(&Key::new("item").part(77)).await.unwrap(),
        Some(77)
    );

    // One invalidation, whatever the number of keys: every entry is stale at once.
    cache.invalidate_tags(&[Tag::new("all")]).await.unwrap();
    assert_eq!(
        items.get::<u64>(&Key::new("item").part(77)).await.unwrap(),
        None
    );

    cache.clear_all().await.unwrap();
    let left: Vec<u64> = masters
        .iter()
        .map(|p| cluster.redis_count(*p, &ours))
        .collect();
    assert_eq!(
        left.iter().sum::<u64>(),
        1,
        "clear reached every master; only the version of \"all\" is left: {left:?}"
    );
    eprintln!("{KEYS} keys over masters {masters:?}: {added:?}");
}
