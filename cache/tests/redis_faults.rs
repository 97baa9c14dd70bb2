//! Against real Redis: local tiers kept in step over pub/sub, the feed killed, Redis killed and
//! paused mid-run, one loader across processes, and the documented key layout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidewell_cache::{Cache, Key, Tag};
use tidewell_testkit::{OwnRedis, TestRedis};

const MIN: Duration = Duration::from_secs(60);

async fn eventually(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().await
}

async fn local_cache(redis: &TestRedis) -> Cache {
    let cache = Cache::builder()
        .url(redis.url())
        .prefix(redis.prefix())
        .local_tier(1_000, Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || cache
            .health()
            .await
            .local_tier_live
            == Some(true))
        .await
    );
    cache
}

fn cleanup(redis: &TestRedis) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}}}*", redis.prefix()))
        .query(&mut c)
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query(&mut c).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tiers_see_each_others_invalidations() {
    let redis = TestRedis::connect().await;
    let (a, b) = (local_cache(&redis).await, local_cache(&redis).await);
    let (na, nb) = (
        a.namespace("profiles").unwrap(),
        b.namespace("profiles").unwrap(),
    );
    let key = Key::new("user").part(7);
    let tag = Tag::new("user").part(7);
    na.set(&key, &"Ada", MIN, std::slice::from_ref(&tag))
        .await
        .unwrap();
    for ns in [&na, &nb, &na, &nb] {
        assert_eq!(
            ns.get::<String>(&key).await.unwrap().as_deref(),
            Some("Ada")
        );
    }
    assert_eq!(
        a.stats().namespaces["profiles"].local_hits,
        1,
        "the second read came from the local tier"
    );
    assert_eq!(b.stats().namespaces["profiles"].local_hits, 1);

    b.invalidate_tags(std::slice::from_ref(&tag)).await.unwrap();
    assert_eq!(
        nb.get::<String>(&key).await.unwrap(),
        None,
        "the invalidating instance sees it at once"
    );
    // The other instance's local copy lives 30 s; only the pub/sub message can drop it.
    assert!(
        eventually(Duration::from_secs(3), async || na
            .get::<String>(&key)
            .await
            .unwrap()
            .is_none())
        .await
    );

    nb.set(&key, &"Grace", MIN, std::slice::from_ref(&tag))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || na
            .get::<String>(&key)
            .await
            .unwrap()
            .as_deref()
            == Some("Grace"))
        .await
    );
    nb.delete(&key).await.unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || na
            .get::<String>(&key)
            .await
            .unwrap()
            .is_none())
        .await
    );
    cleanup(&redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_feed_flushes_the_local_tier() {
    let redis = TestRedis::connect().await;
    let cache = local_cache(&redis).await;
    let ns = cache.namespace("feed").unwrap();
    for i in 0..20 {
        ns.set(&Key::new("k").part(i), &i, MIN, &[]).await.unwrap();
        assert_eq!(
            ns.get::<u32>(&Key::new("k").part(i)).await.unwrap(),
            Some(i)
        );
    }
    assert_eq!(cache.health().await.local_entries, 20);
    let hits_before = cache.stats().namespaces["feed"].hits;

    let mut c = redis.connection();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(killed >= 1);
    assert!(
        eventually(Duration::from_secs(5), async || cache
            .health()
            .await
            .local_entries
            == 0)
        .await,
        "flushed when the feed dropped"
    );
    assert!(
        eventually(Duration::from_secs(5), async || cache
            .health()
            .await
            .local_tier_live
            == Some(true))
        .await,
        "and back"
    );
    assert_eq!(
        ns.get::<u32>(&Key::new("k").part(3)).await.unwrap(),
        Some(3)
    );
    assert_eq!(
        cache.stats().namespaces["feed"].hits,
        hits_before + 1,
        "served by Redis, not a stale local copy"
    );
    cleanup(&redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_callers_see_no_errors() {
    let mut server = OwnRedis::start();
    let cache = Cache::builder()
        .url(server.url())
        .timeout(Duration::from_millis(100))
        .local_tier(100, Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let ns = cache.namespace("outage").unwrap();
    let (calls, errors, loads) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU32::new(0)),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (ns, calls, errors, loads, stop) = (
            ns.clone(),
            calls.clone(),
            errors.clone(),
            loads.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let l = loads.clone();
                let r = ns
                    .get_or_load(&Key::from("hot"), MIN, &[], move || async move {
                        l.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::io::Error>(42u32)
                    })
                    .await;
                calls.fetch_add(1, Ordering::SeqCst);
                if r.map_or(true, |v| v != 42) {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let during = cache.health().await;
    server.restart();
    let recovered = eventually(Duration::from_secs(20), async || {
        let h = cache.health().await;
        h.store_reachable && !h.circuit_open && h.local_tier_live == Some(true)
    })
    .await;
    let hits_before =
        cache.stats().namespaces["outage"].hits + cache.stats().namespaces["outage"].local_hits;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    worker.await.unwrap();

    let s = cache.stats().namespaces["outage"];
    eprintln!(
        "calls {} errors {} loads {} stats {s:?}",
        calls.load(Ordering::SeqCst),
        errors.load(Ordering::SeqCst),
        loads.load(Ordering::SeqCst)
    );
    assert!(!during.store_reachable, "the outage really happened");
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "fail-open: callers saw no errors"
    );
    assert!(s.errors > 0, "but the errors were counted");
    assert!(recovered, "reconnected, circuit closed, feed live again");
    assert!(
        s.hits + s.local_hits > hits_before,
        "serving from the cache again after recovery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_during_an_outage_are_replayed() {
    let server = OwnRedis::start();
    let cache = Cache::builder()
        .url(server.url())
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let ns = cache.namespace("replay").unwrap();
    let tag = Tag::from("prices");
    ns.set(
        &Key::from("list"),
        &vec![1, 2, 3],
        MIN,
        std::slice::from_ref(&tag),
    )
    .await
    .unwrap();
    ns.set(&Key::from("other"), &7, MIN, &[]).await.unwrap();

    // Redis stops answering (paused, data kept) while the data changes.
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_500)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    cache
        .invalidate_tags(std::slice::from_ref(&tag))
        .await
        .unwrap(); // fail-open: accepted
    ns.delete(&Key::from("other")).await.unwrap();
    assert_eq!(cache.health().await.pending_invalidations, 2);

    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let list = async || ns.get::<Vec<u32>>(&Key::from("list")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || list().await.is_none()).await,
        "the invalidation reached Redis once it was back"
    );
    assert_eq!(
        ns.get::<u32>(&Key::from("other")).await.unwrap(),
        None,
        "and so did the delete"
    );
    assert_eq!(cache.health().await.pending_invalidations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_loader_across_processes() {
    let redis = TestRedis::connect().await;
    let build = || {
        Cache::builder()
            .url(redis.url())
            .prefix(redis.prefix())
            .distributed_lock(true)
            .build()
    };
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    let loads = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let ns = if i % 2 == 0 {
            a.namespace("lock").unwrap()
        } else {
            b.namespace("lock").unwrap()
        };
        let loads = loads.clone();
        tasks.spawn(async move {
            ns.get_or_load(&Key::from("cold"), MIN, &[], move || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, std::io::Error>("value".to_owned())
            })
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), "value");
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one loader across both instances"
    );
    cleanup(&redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layout_is_as_documented() {
    let redis = TestRedis::connect().await;
    let p = redis.prefix().to_owned();
    let cache = Cache::builder()
        .url(redis.url())
        .prefix(&p)
        .build()
        .await
        .unwrap();
    let ns = cache.namespace("users").unwrap();
    ns.set(
        &Key::new("user").part(1),
        &"x",
        MIN,
        &[Tag::new("user").part(1)],
    )
    .await
    .unwrap();
    cache.invalidate_tags(&[Tag::from("other")]).await.unwrap();
    let mut c = redis.connection();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{p}}}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{{{p}}}:e:users:user:1"),
            format!("{{{p}}}:t:other")
        ]
    );
    let entry: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut c)
        .await
        .unwrap();
    let entry = String::from_utf8(entry).unwrap();
    let (header, value) = entry.split_once('\n').unwrap();
    let words: Vec<&str> = header.split(' ').collect();
    assert_eq!(words.len(), 5, "{header}");
    assert_eq!(words[0], "tw1");
    let expires_at: u64 = words[1].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(expires_at > now && expires_at <= now + MIN.as_millis() as u64 + 1_000);
    assert_eq!(words[2..4], ["1", &format!("{{{p}}}:t:user:1")]);
    assert_eq!(words[4], "0", "the tag was never invalidated");
    assert_eq!(value, "j\"x\"", "the codec's marker byte, then the JSON");
    let entry_ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(entry_ttl > 0, "entries expire");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[1])
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0, "tag versions expire");
    cleanup(&redis);
}

async fn redis_cache(redis: &TestRedis) -> Cache {
    Cache::builder()
        .url(redis.url())
        .prefix(redis.prefix())
        .build()
        .await
        .unwrap()
}

/// A read fetches the entry with the tags this process last saw on it. When another instance has
/// rewritten the entry with other tags, the read must fetch those too before it answers, so an
/// invalidation of the new tags is never missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_retagged_elsewhere_is_checked_against_its_new_tags() {
    let redis = TestRedis::connect().await;
    let (a, b) = (redis_cache(&redis).await, redis_cache(&redis).await);
    let (na, nb) = (a.namespace("users").unwrap(), b.namespace("users").unwrap());
    let key = Key::new("user").part(1);
    let (old, new) = (Tag::from("old-tag"), Tag::from("new-tag"));

    na.set(&key, &"v1", MIN, std::slice::from_ref(&old))
        .await
        .unwrap();
    assert_eq!(nb.get::<String>(&key).await.unwrap().as_deref(), Some("v1"));
    // B now expects the entry to carry `old-tag`; A rewrites it with `new-tag` only.
    na.set(&key, &"v2", MIN, std::slice::from_ref(&new))
        .await
        .unwrap();
    assert_eq!(nb.get::<String>(&key).await.unwrap().as_deref(), Some("v2"));
    na.set(&key, &"v3", MIN, std::slice::from_ref(&old))
        .await
        .unwrap();
    a.invalidate_tags(std::slice::from_ref(&old)).await.unwrap();
    assert_eq!(
        nb.get::<String>(&key).await.unwrap(),
        None,
        "old-tag moved on"
    );
    na.set(&key, &"v4", MIN, &[old.clone(), new.clone()])
        .await
        .unwrap();
    assert_eq!(nb.get::<String>(&key).await.unwrap().as_deref(), Some("v4"));
    na.set(&key, &"v5", MIN, std::slice::from_ref(&new))
        .await
        .unwrap();
    a.invalidate_tags(std::slice::from_ref(&new)).await.unwrap();
    assert_eq!(
        nb.get::<String>(&key).await.unwrap(),
        None,
        "B's hint named old-tag and new-tag; the entry records new-tag, which moved on"
    );
    // get_or_load names tags that differ from the entry's: still checked against the entry's.
    na.set(&key, &"v6", MIN, std::slice::from_ref(&old))
        .await
        .unwrap();
    a.invalidate_tags(std::slice::from_ref(&old)).await.unwrap();
    let loaded = nb
        .get_or_load(&key, MIN, std::slice::from_ref(&new), || async {
            Ok::<_, std::io::Error>("loaded".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(loaded, "loaded");
    let stats = b.stats().namespaces["users"];
    assert_eq!((stats.hits, stats.stale), (3, 3), "{stats:?}");
    cleanup(&redis);
}

/// A key that holds something else (an entry of the older hash layout, a value another program
/// wrote) reads as a miss, and the next write replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holding_something_else_reads_as_a_miss() {
    let redis = TestRedis::connect().await;
    let p = redis.prefix().to_owned();
    let cache = redis_cache(&redis).await;
    let ns = cache.namespace("users").unwrap();
    let mut c = redis.connection();
    let (hashed, foreign, truncated) = (
        Key::new("hashed"),
        Key::new("foreign"),
        Key::new("truncated"),
    );
    let full = |k: &Key| format!("{{{p}}}:e:users:{k}");
    let () = redis::cmd("HSET")
        .arg(full(&hashed))
        .arg("v")
        .arg("j\"old\"")
        .query_async(&mut c)
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(full(&foreign))
        .arg("j\"not ours\"")
        .query_async(&mut c)
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(full(&truncated))
        .arg("tw1 99999999999999 3 {x}:t:a 0")
        .query_async(&mut c)
        .await
        .unwrap();
    for key in [&hashed, &foreign, &truncated] {
        assert_eq!(ns.get::<String>(key).await.unwrap(), None, "{key:?}");
        let v = ns
            .get_or_load(key, MIN, &[Tag::from("t")], || async {
                Ok::<_, std::io::Error>("fresh".to_owned())
            })
            .await
            .unwrap();
        assert_eq!(v, "fresh");
        assert_eq!(
            ns.get::<String>(key).await.unwrap().as_deref(),
            Some("fresh"),
            "{key:?} replaced"
        );
    }
    let stats = cache.stats().namespaces["users"];
    assert_eq!((stats.errors, stats.misses), (0, 6), "{stats:?}");
    cleanup(&redis);
}

/// A plain `set` records the versions this process last saw; when another instance invalidated a
/// tag since, the set must find out in the same round trip and write again, so the value it just
/// stored is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_after_another_instance_invalidated_its_tag_is_readable() {
    let redis = TestRedis::connect().await;
    let (a, b) = (redis_cache(&redis).await, redis_cache(&redis).await);
    let na = a.namespace("users").unwrap();
    let tag = Tag::from("shared");
    for round in 0..5 {
        let key = Key::new("user").part(round);
        na.set(&key, &round, MIN, std::slice::from_ref(&tag))
            .await
            .unwrap();
        assert_eq!(
            na.get::<i32>(&key).await.unwrap(),
            Some(round),
            "round {round}"
        );
        b.invalidate_tags(std::slice::from_ref(&tag)).await.unwrap();
        assert_eq!(na.get::<i32>(&key).await.unwrap(), None, "round {round}");
    }
    cleanup(&redis);
}
