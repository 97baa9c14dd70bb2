//! One conformance suite, run on both backends: the in-memory store and the real Redis.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewell_cache::{Cache, Error, Key, Tag};
use tidewell_testkit::{TestRedis, unique_name};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Memory,
    Redis,
}

/// A cache on a fresh prefix; for Redis the prefix is removed with the `TestRedis` (its keys all
/// start with `{<prefix>}` and the scan pattern matches them).
struct Fixture {
    cache: Cache,
    _redis: Option<TestRedis>,
}

async fn fixture(kind: Kind) -> Fixture {
    match kind {
        Kind::Memory => Fixture {
            cache: Cache::builder()
                .url(format!("memory://{}", unique_name("c")))
                .build()
                .await
                .unwrap(),
            _redis: None,
        },
        Kind::Redis => {
            let redis = TestRedis::connect().await;
            let cache = Cache::builder()
                .url(redis.url())
                .prefix(redis.prefix())
                .fail_open(false)
                .build()
                .await
                .unwrap();
            Fixture {
                cache,
                _redis: Some(redis),
            }
        }
    }
}

// The test kit deletes keys matching "<prefix>*"; cache keys start with "{<prefix>}". Clean those too.
impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(redis) = &self._redis {
            let pattern = format!("{{{}}}*", redis.prefix());
            let url = redis.url().to_owned();
            std::thread::spawn(move || {
                let client = redis::Client::open(url).unwrap();
                let mut c = client.get_connection().unwrap();
                let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut c).unwrap();
                if !keys.is_empty() {
                    let _: () = redis::cmd("DEL").arg(keys).query(&mut c).unwrap();
                }
            })
            .join()
            .unwrap();
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

const MIN: Duration = Duration::from_secs(60);

async fn round_trip_delete_and_namespaces(kind: Kind) {
    let f = fixture(kind).await;
    let (users, admins) = (
        f.cache.namespace("users").unwrap(),
        f.cache.namespace("admins").unwrap(),
    );
    let key = Key::new("user").part(1);
    assert_eq!(users.get::<User>(&key).await.unwrap(), None);
    let ada = User {
        id: 1,
        name: "Ada".into(),
    };
    users.set(&key, &ada, MIN, &[]).await.unwrap();
    assert_eq!(users.get::<User>(&key).await.unwrap(), Some(ada.clone()));
    assert_eq!(
        admins.get::<User>(&key).await.unwrap(),
        None,
        "keys are per namespace"
    );
    admins
        .set(
            &key,
            &User {
                id: 1,
                name: "root".into(),
            },
            MIN,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(users.get::<User>(&key).await.unwrap(), Some(ada));
    assert!(users.delete(&key).await.unwrap());
    assert!(!users.delete(&key).await.unwrap());
    assert_eq!(users.get::<User>(&key).await.unwrap(), None);
    assert!(admins.get::<User>(&key).await.unwrap().is_some());
    let s = f.cache.stats().namespaces["users"];
    assert_eq!(
        (s.hits, s.misses, s.sets, s.deletes),
        (2, 2, 1, 2),
        "deletes counts calls"
    );
}

async fn ttl_expiry(kind: Kind) {
    let f = fixture(kind).await;
    let ns = f.cache.namespace("ttl").unwrap();
    let key = Key::from("short");
    ns.set(&key, &1u32, Duration::from_millis(150), &[])
        .await
        .unwrap();
    assert_eq!(ns.get::<u32>(&key).await.unwrap(), Some(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ns.get::<u32>(&key).await.unwrap(), None);
}

async fn tags_invalidate_across_namespaces(kind: Kind) {
    let f = fixture(kind).await;
    let (profiles, payments) = (
        f.cache.namespace("profiles").unwrap(),
        f.cache.namespace("payments").unwrap(),
    );
    let user7 = Tag::new("user").part(7);
    let user8 = Tag::new("user").part(8);
    profiles
        .set(
            &Key::from("p7"),
            &"seven",
            MIN,
            std::slice::from_ref(&user7),
        )
        .await
        .unwrap();
    payments
        .set(
            &Key::from("list7"),
            &vec![1, 2],
            MIN,
            &[user7.clone(), Tag::from("payments")],
        )
        .await
        .unwrap();
    payments
        .set(
            &Key::from("list8"),
            &vec![3],
            MIN,
            &[user8.clone(), Tag::from("payments")],
        )
        .await
        .unwrap();

    f.cache.invalidate_tags(&[user7]).await.unwrap();
    assert_eq!(
        profiles.get::<String>(&Key::from("p7")).await.unwrap(),
        None,
        "tags span namespaces"
    );
    assert_eq!(
        payments.get::<Vec<u32>>(&Key::from("list7")).await.unwrap(),
        None
    );
    assert_eq!(
        payments.get::<Vec<u32>>(&Key::from("list8")).await.unwrap(),
        Some(vec![3])
    );
    assert_eq!(f.cache.stats().namespaces["payments"].stale, 1);

    payments
        .invalidate_tags(&[Tag::from("payments")])
        .await
        .unwrap();
    assert_eq!(
        payments.get::<Vec<u32>>(&Key::from("list8")).await.unwrap(),
        None
    );

    // A value written after the invalidation is valid again.
    payments
        .set(&Key::from("list8"), &vec![4], MIN, &[user8])
        .await
        .unwrap();
    assert_eq!(
        payments.get::<Vec<u32>>(&Key::from("list8")).await.unwrap(),
        Some(vec![4])
    );
}

async fn clear_namespace_and_all(kind: Kind) {
    let f = fixture(kind).await;
    let (a, b) = (
        f.cache.namespace("a").unwrap(),
        f.cache.namespace("b").unwrap(),
    );
    for ns in [&a, &b] {
        for i in 0..10 {
            ns.set(&Key::new("k").part(i), &i, MIN, &[]).await.unwrap();
        }
    }
    a.clear().await.unwrap();
    assert_eq!(a.get::<u32>(&Key::new("k").part(3)).await.unwrap(), None);
    assert_eq!(b.get::<u32>(&Key::new("k").part(3)).await.unwrap(), Some(3));
    f.cache.clear_all().await.unwrap();
    assert_eq!(b.get::<u32>(&Key::new("k").part(3)).await.unwrap(), None);
}

async fn invalidation_during_load_is_not_served(kind: Kind) {
    let f = fixture(kind).await;
    let ns = f.cache.namespace("race").unwrap();
    let key = Key::new("user").part(9);
    let tag = Tag::new("user").part(9);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let load = {
        let (ns, key, tag) = (ns.clone(), key.clone(), tag.clone());
        tokio::spawn(async move {
            ns.get_or_load(&key, MIN, &[tag], move || async move {
                started_tx.send(()).unwrap();
                go_rx.await.unwrap();
                Ok::<_, std::io::Error>("old name".to_owned())
            })
            .await
        })
    };
    started_rx.await.unwrap();
    f.cache
        .invalidate_tags(std::slice::from_ref(&tag))
        .await
        .unwrap(); // the data changed while loading
    go_tx.send(()).unwrap();
    assert_eq!(
        load.await.unwrap().unwrap(),
        "old name",
        "the caller still gets its load"
    );
    assert_eq!(
        ns.get::<String>(&key).await.unwrap(),
        None,
        "but it is not served afterwards"
    );
    assert_eq!(f.cache.stats().namespaces["race"].skipped_writes, 1);

    let fresh = ns
        .get_or_load(&key, MIN, &[tag], || async {
            Ok::<_, std::io::Error>("new name".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(fresh, "new name");
    assert_eq!(
        ns.get::<String>(&key).await.unwrap(),
        Some("new name".to_owned())
    );
}

async fn single_flight_on_a_cold_key(kind: Kind) {
    let f = fixture(kind).await;
    let ns = f.cache.namespace("flight").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let (ns, calls) = (ns.clone(), calls.clone());
        tasks.spawn(async move {
            ns.get_or_load(&Key::from("cold"), MIN, &[], move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>(User {
                    id: 1,
                    name: "loaded".into(),
                })
            })
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().name, "loaded");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "exactly one loader call in the process"
    );
    assert_eq!(f.cache.stats().namespaces["flight"].loader_calls, 1);
}

async fn loader_errors_cache_nothing(kind: Kind) {
    let f = fixture(kind).await;
    let ns = f.cache.namespace("errors").unwrap();
    let err = ns
        .get_or_load(&Key::from("k"), MIN, &[], || async {
            Err::<u32, _>(std::io::Error::other("db down"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Loader(_)) && err.to_string().contains("db down"),
        "{err}"
    );
    let v = ns
        .get_or_load(&Key::from("k"), MIN, &[], || async {
            Ok::<_, std::io::Error>(5u32)
        })
        .await
        .unwrap();
    assert_eq!(v, 5);
}

async fn schema_change_is_a_counted_miss(kind: Kind) {
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct UserV2 {
        id: u64,
        first: String,
        last: String,
    }
    let f = fixture(kind).await;
    let ns = f.cache.namespace("schema").unwrap();
    let key = Key::new("user").part(1);
    ns.set(
        &key,
        &User {
            id: 1,
            name: "Ada Lovelace".into(),
        },
        MIN,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        ns.get::<UserV2>(&key).await.unwrap(),
        None,
        "no error to the caller"
    );
    assert_eq!(f.cache.stats().namespaces["schema"].undecodable, 1);
    let v2 = ns
        .get_or_load(&key, MIN, &[], || async {
            Ok::<_, std::io::Error>(UserV2 {
                id: 1,
                first: "Ada".into(),
                last: "Lovelace".into(),
            })
        })
        .await
        .unwrap();
    assert_eq!(
        ns.get::<UserV2>(&key).await.unwrap(),
        Some(v2),
        "the reload replaced it"
    );
}

async fn limits_are_clear_errors(kind: Kind) {
    let f = fixture(kind).await;
    let ns = f.cache.namespace("limits").unwrap();
    let long = Key::from("k".repeat(600));
    assert!(matches!(
        ns.set(&long, &1, MIN, &[]).await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        ns.get::<u32>(&Key::from("with space")).await,
        Err(Error::InvalidKey { .. })
    ));
    let huge = "x".repeat(2 << 20);
    let err = ns
        .set(&Key::from("big"), &huge, MIN, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ValueTooLarge { .. }) && err.to_string().contains("MAX_VALUE_SIZE"),
        "{err}"
    );
    assert!(matches!(
        ns.set(&Key::from("k"), &1, Duration::from_secs(365 * 86_400), &[])
            .await,
        Err(Error::InvalidTtl { .. })
    ));
    assert!(matches!(
        ns.set(&Key::from("k"), &1, Duration::ZERO, &[]).await,
        Err(Error::InvalidTtl { .. })
    ));
    assert!(matches!(
        ns.set(&Key::from("k"), &1, MIN, &[Tag::from("__all")])
            .await,
        Err(Error::InvalidTag { .. })
    ));
    assert!(f.cache.namespace("bad:ns").is_err());
    assert_eq!(
        ns.get::<u32>(&Key::from("big")).await.unwrap(),
        None,
        "nothing was written"
    );
}

async fn stats_and_hit_ratio(kind: Kind) {
    let f = fixture(kind).await;
    let ns = f.cache.namespace("ratio").unwrap();
    for i in 0..4 {
        ns.get_or_load(&Key::new("k").part(i), MIN, &[], move || async move {
            Ok::<_, std::io::Error>(i)
        })
        .await
        .unwrap();
    }
    for i in 0..4 {
        for _ in 0..3 {
            assert_eq!(
                ns.get::<u32>(&Key::new("k").part(i)).await.unwrap(),
                Some(i)
            );
        }
    }
    let s = f.cache.stats().namespaces["ratio"];
    assert_eq!((s.misses, s.hits, s.loader_calls, s.sets), (4, 12, 4, 4));
    assert!((s.hit_ratio() - 0.75).abs() < 1e-9, "{}", s.hit_ratio());
    let health = f.cache.health().await;
    assert!(health.store_reachable && !health.circuit_open);
}

async fn early_refresh_keeps_hot_keys_warm(kind: Kind) {
    let f = fixture(kind).await;
    let cache = match kind {
        Kind::Memory => Cache::builder()
            .url(format!("memory://{}", unique_name("c")))
            .refresh_ahead(0.5)
            .build()
            .await
            .unwrap(),
        Kind::Redis => {
            let r = f._redis.as_ref().unwrap();
            Cache::builder()
                .url(r.url())
                .prefix(r.prefix())
                .refresh_ahead(0.5)
                .build()
                .await
                .unwrap()
        }
    };
    let ns = cache.namespace("early").unwrap();
    let loads = Arc::new(AtomicU32::new(0));
    let get = || {
        let (ns, loads) = (ns.clone(), loads.clone());
        async move {
            ns.get_or_load(&Key::from("hot"), Duration::from_millis(1_000), &[], move || async move {
                Ok::<_, std::io::Error>(loads.fetch_add(1, Ordering::SeqCst) + 1)
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(get().await, 1);
    assert_eq!(get().await, 1, "fresh: a plain hit");
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(
        get().await,
        1,
        "past half its TTL: the cached value at once..."
    );
    let reloaded = async || {
        for _ in 0..100 {
            if loads.load(Ordering::SeqCst) == 2 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    };
    assert!(reloaded().await, "...and one reload in the background");
    tokio::time::sleep(Duration::from_millis(500)).await; // the first write would have expired now
    assert!(get().await >= 2, "the refreshed value");
    assert_eq!(
        cache.stats().namespaces["early"].misses,
        1,
        "no read missed: no caller waited for a load"
    );
}

/// Callers that arrive in waves on cold keys, with a loader that finishes at once: a caller whose
/// read missed just before another caller's load ended must not load again.
async fn quick_loads_are_not_repeated(kind: Kind) {
    let f = fixture(kind).await;
    let ns = f.cache.namespace("waves").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    const KEYS: u32 = 200;
    for k in 0..KEYS {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (ns, calls) = (ns.clone(), calls.clone());
            tasks.spawn(async move {
                ns.get_or_load(&Key::new("k").part(k), MIN, &[], move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(k)
                })
                .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap().unwrap(), k);
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), KEYS, "one load per key");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Memory).await }) *
        }
        mod redis_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Redis).await }) *
        }
    };
}

conformance!(
    round_trip_delete_and_namespaces,
    ttl_expiry,
    tags_invalidate_across_namespaces,
    clear_namespace_and_all,
    invalidation_during_load_is_not_served,
    single_flight_on_a_cold_key,
    loader_errors_cache_nothing,
    schema_change_is_a_counted_miss,
    limits_are_clear_errors,
    stats_and_hit_ratio,
    early_refresh_keeps_hot_keys_warm,
    quick_loads_are_not_repeated,
);
