//! Tidewell's cache against raw redis-rs (and raw moka) on the local Redis, in one run.
//!
//! - `get_hit_throughput_{seq,c32}` / `set_throughput_{seq,c32}`: raw redis-rs GET / SET PX of the
//!   same encoded bytes on a multiplexed connection (baseline) vs the cache's Redis tier (local tier
//!   off): typed get (one MGET of the entry and its 2 tags' versions, the check, decode) and typed
//!   set (`SET` of the entry recording the 2 tags' versions, then their `MGET`, one round trip).
//!   Sequential, then 32 concurrent tasks.
//! - `get_design_floor_*` / `set_design_floor_*` are not the cache: the raw redis-rs commands the
//!   design needs (the MGET of the entry and its 2 tags' versions; the SET, the tags' MGET and the
//!   PUBLISH, pipelined) against the same raw GET / SET. No cache built this way can pass them.
//! - `l1_hit_latency`: ns per local-tier hit (typed, decoded value kept) vs a raw moka get. Goal < 1 µs.
//! - `invalidate_tag_cost_{1k,100k}`: invalidating a tag that covers 1,000 / 100,000 keys, against
//!   the same invalidation when it covers 1 key. Goal: 100k / 1 <= 1.5.
//! - `hit_ratio`: get_or_load under Zipf(1.0) over 100,000 keys with 10% writes that invalidate the
//!   key's tag, against a perfect unbounded cache replaying the same operations.
//!
//! - `cluster_cache_get_c32`: cache hits with 32 tasks on the Redis Cluster of
//!   `scripts/local-cluster` (started for the bench when it is not running), 1,000 entries tagged
//!   with their own id spread over the masters, against raw redis-rs cluster `GET` of 1,000 keys of
//!   the same bytes, same run. Goal: ratio >= 0.90.
//!
//! Run: `cargo bench -p tidewell-cache --bench cache` (Redis at `REDIS_URL`, default local).
//! `-- redis`, `-- local`, `-- invalidate`, `-- hit_ratio` or `-- cluster` runs one part.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tidewell_cache::{Cache, Key, Namespace, Tag};
use tidewell_testkit::TestRedis;

const OPS: usize = 20_000;

const CONCURRENCY: usize = 32;
const TTL: Duration = Duration::from_secs(600);

#[derive(Clone, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    bio: String,
}

fn profile() -> Profile {
    Profile {
        id: 7,
        name: "Ada Lovelace".into(),
        bio: "b".repeat(200),
    }
}

fn line(name: &str, ours: f64, baseline: f64, unit: &str) {
    println!(
        "bench: {name} ours={ours:.2} baseline={baseline:.2} ratio={:.3} unit={unit}",
        ours / baseline
    );
}

/// Runs `op(i)` OPS times with `concurrency` tasks; returns ops/s.
async fn throughput<F, Fut>(concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut i = t;
            while i < OPS {
                op(i).await;
                i += concurrency;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    OPS as f64 / started.elapsed().as_secs_f64()
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

async fn redis_tier(redis: &TestRedis, ns: &Namespace) {
    let bytes = {
        let mut b = vec![b'j'];
        serde_json::to_writer(&mut b, &profile()).unwrap();
        b
    };
    let raw_key = redis.key("raw");
    let tags = [Tag::from("profiles"), Tag::new("user").part(7)];
    let key = Key::new("user").part(7);
    ns.set(&key, &profile(), TTL, &tags).await.unwrap();
    let mut c = redis.connection();
    let () = c.pset_ex(&raw_key, &bytes, 600_000).await.unwrap();

    for concurrency in [1, CONCURRENCY] {
        let label = if concurrency == 1 { "seq" } else { "c32" };
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (c, k) = (redis.connection(), raw_key.clone());
            base.push(
                throughput(concurrency, move |_| {
                    let (mut c, k) = (c.clone(), k.clone());
                    async move {
                        let v: Vec<u8> = c.get(&k).await.unwrap();
                        assert!(!v.is_empty());
                    }
                })
                .await,
            );
            let (n, k) = (ns.clone(), key.clone());
            ours.push(
                throughput(concurrency, move |_| {
                    let (n, k) = (n.clone(), k.clone());
                    async move {
                        assert!(n.get::<Profile>(&k).await.unwrap().is_some());
                    }
                })
                .await,
            );
        }
        // Decomposition: the cache's read command alone through redis-rs (MGET of the entry and
        // its two tag keys, no cache layer), to tell Redis-side cost from the layer's.
        let (c, mget) = (redis.connection(), {
            let p = redis.prefix();
            let mut cmd = redis::cmd("MGET");
            cmd.arg(format!("{{{p}}}:e:bench:user:7"))
                .arg(format!("{{{p}}}:t:profiles"))
                .arg(format!("{{{p}}}:t:user:7"));
            Arc::new(cmd)
        });
        let mut probe = Vec::new();
        for _ in 0..3 {
            let (c, mget) = (c.clone(), mget.clone());
            probe.push(
                throughput(concurrency, move |_| {
                    let (mut c, mget) = (c.clone(), mget.clone());
                    async move {
                        let v: Vec<Option<Vec<u8>>> = mget.query_async(&mut c).await.unwrap();
                        assert!(v[0].is_some());
                    }
                })
                .await,
            );
        }
        eprintln!("  get {label}: raw {base:.0?} ours {ours:.0?} mget-only {probe:.0?}");
        line(
            &format!("get_hit_throughput_{label}"),
            best(&ours),
            best(&base),
            "ops/s",
        );
        // Not ours: the floor of any design whose read checks the entry's tag versions in the
        // same round trip (the rule), against the same raw GET.
        line(
            &format!("get_design_floor_{label}"),
            best(&probe),
            best(&base),
            "ops/s",
        );

        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (c, k, b) = (redis.connection(), raw_key.clone(), Arc::new(bytes.clone()));
            base.push(
                throughput(concurrency, move |i| {
                    let (mut c, k, b) = (c.clone(), format!("{k}:{}", i % 1_000), b.clone());
                    async move {
                        let () = c.pset_ex(&k, b.as_slice(), 600_000).await.unwrap();
                    }
                })
                .await,
            );
            let (n, t) = (ns.clone(), tags.clone());
            ours.push(
                throughput(concurrency, move |i| {
                    let (n, t) = (n.clone(), t.clone());
                    async move {
                        n.set(&Key::new("w").part(i % 1_000), &profile(), TTL, &t)
                            .await
                            .unwrap();
                    }
                })
                .await,
            );
        }
        // The floor of the design's write: the entry's SET, the MGET of its 2 tags' versions and
        // the PUBLISH other instances' local tiers need, pipelined raw through redis-rs.
        let mut floor = Vec::new();
        for _ in 0..3 {
            let (c, k, b, p) = (
                redis.connection(),
                raw_key.clone(),
                Arc::new(bytes.clone()),
                redis.prefix().to_owned(),
            );
            floor.push(
                throughput(concurrency, move |i| {
                    let (mut c, k, b) = (c.clone(), format!("{k}:{}", i % 1_000), b.clone());
                    let p = p.clone();
                    async move {
                        let mut pipe = redis::pipe();
                        pipe.cmd("SET")
                            .arg(&k)
                            .arg(b.as_slice())
                            .arg("PX")
                            .arg(600_000)
                            .ignore();
                        pipe.cmd("MGET")
                            .arg(format!("{{{p}}}:t:profiles"))
                            .arg(format!("{{{p}}}:t:user:7"));
                        pipe.cmd("PUBLISH")
                            .arg(format!("{p}:floor"))
                            .arg(format!("origin k {k}"))
                            .ignore();
                        let (_versions,): (Vec<Option<String>>,) =
                            pipe.query_async(&mut c).await.unwrap();
                    }
                })
                .await,
            );
        }
        eprintln!("  set {label}: raw {base:.0?} ours {ours:.0?} set+mget+publish {floor:.0?}");
        line(
            &format!("set_throughput_{label}"),
            best(&ours),
            best(&base),
            "ops/s",
        );
        line(
            &format!("set_design_floor_{label}"),
            best(&floor),
            best(&base),
            "ops/s",
        );
    }
}

async fn l1(redis: &TestRedis) {
    let cache = Cache::builder()
        .url(redis.url())
        .prefix(format!("{}-l1", redis.prefix()))
        .local_tier(10_000, Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    while cache.health().await.local_tier_live != Some(true) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ns = cache.namespace("l1").unwrap();
    let key = Key::new("user").part(7);
    ns.set(&key, &profile(), TTL, &[Tag::new("user").part(7)])
        .await
        .unwrap();
    assert!(ns.get::<Profile>(&key).await.unwrap().is_some()); // fills the local tier
    const N: u32 = 200_000;
    let started = Instant::now();
    for _ in 0..N {
        assert!(ns.get::<Profile>(&key).await.unwrap().is_some());
    }
    let ours = started.elapsed().as_nanos() as f64 / f64::from(N);
    assert!(cache.stats().namespaces["l1"].local_hits >= u64::from(N));

    let raw: moka::sync::Cache<String, Arc<Profile>> =
        moka::sync::Cache::builder().max_capacity(10_000).build();
    raw.insert("{p}:e:l1:user:7".to_owned(), Arc::new(profile()));
    let started = Instant::now();
    for _ in 0..N {
        assert!(raw.get("{p}:e:l1:user:7").is_some());
    }
    let base = started.elapsed().as_nanos() as f64 / f64::from(N);
    line("l1_hit_latency", ours, base, "ns");
}

async fn invalidation_cost(redis: &TestRedis, ns: &Namespace, cache: &Cache) {
    let mut costs = HashMap::new();
    for covered in [1usize, 1_000, 100_000] {
        let tag = Tag::new("bulk").part(covered);
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in 0..CONCURRENCY {
            let (ns, tag) = (ns.clone(), tag.clone());
            tasks.spawn(async move {
                let mut i = chunk;
                while i < covered {
                    ns.set(
                        &Key::new("bulk").part(covered).part(i),
                        &i,
                        TTL,
                        std::slice::from_ref(&tag),
                    )
                    .await
                    .unwrap();
                    i += CONCURRENCY;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let mut samples = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            cache
                .invalidate_tags(std::slice::from_ref(&tag))
                .await
                .unwrap();
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        eprintln!("  invalidate a tag covering {covered} keys: median {median:.1} µs");
        costs.insert(covered, median);
        assert_eq!(
            ns.get::<usize>(&Key::new("bulk").part(covered).part(0))
                .await
                .unwrap(),
            None
        );
    }
    let _ = redis;
    line("invalidate_tag_cost_1k", costs[&1_000], costs[&1], "us");
    line("invalidate_tag_cost_100k", costs[&100_000], costs[&1], "us");
}

/// Zipf(1.0) sampler over ranks 0..n.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / k as f64;
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

async fn hit_ratio(ns: &Namespace) {
    const KEYS: usize = 100_000;
    const OPS: usize = 100_000;
    let zipf = Zipf::new(KEYS);
    let mut rng = fastrand::Rng::with_seed(42);
    let mut oracle: HashMap<usize, bool> = HashMap::new();
    let (mut oracle_hits, mut oracle_reads) = (0u64, 0u64);
    let before = ns.clone();
    let s0 = {
        let _ = before;
        (0u64, 0u64)
    };
    let _ = s0;
    let started = Instant::now();
    let (mut hits, mut reads) = (0u64, 0u64);
    for _ in 0..OPS {
        let k = zipf.sample(&mut rng);
        let tag = Tag::new("item").part(k);
        if rng.f64() < 0.10 {
            ns.invalidate_tags(std::slice::from_ref(&tag))
                .await
                .unwrap();
            oracle.insert(k, false);
        } else {
            reads += 1;
            oracle_reads += 1;
            if oracle.insert(k, true) == Some(true) {
                oracle_hits += 1;
            }
            let loaded = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let l = loaded.clone();
            ns.get_or_load(&Key::new("item").part(k), TTL, &[tag], move || async move {
                l.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, std::io::Error>(k)
            })
            .await
            .unwrap();
            if !loaded.load(std::sync::atomic::Ordering::Relaxed) {
                hits += 1;
            }
        }
    }
    let ours = hits as f64 / reads as f64;
    let perfect = oracle_hits as f64 / oracle_reads as f64;
    eprintln!(
        "  {OPS} Zipf ops in {:?}: {hits}/{reads} hits",
        started.elapsed()
    );
    line("hit_ratio", ours, perfect, "ratio");
}

async fn profile_one(redis: &TestRedis, ns: &Namespace, what: &str) {
    let key = Key::new("user").part(7);
    let tags = [Tag::from("profiles"), Tag::new("user").part(7)];
    ns.set(&key, &profile(), TTL, &tags).await.unwrap();
    let bytes = {
        let mut b = vec![b'j'];
        serde_json::to_writer(&mut b, &profile()).unwrap();
        b
    };
    let raw_key = redis.key("raw");
    let mut c = redis.connection();
    let () = c.pset_ex(&raw_key, &bytes, 600_000).await.unwrap();
    let (n, k, c, b) = (ns.clone(), key.clone(), redis.connection(), Arc::new(bytes));
    let rate = match what {
        "get" => {
            throughput(CONCURRENCY, move |_| {
                let (n, k) = (n.clone(), k.clone());
                async move {
                    assert!(n.get::<Profile>(&k).await.unwrap().is_some());
                }
            })
            .await
        }
        "get-or-load" => {
            throughput(CONCURRENCY, move |_| {
                let (n, k) = (n.clone(), k.clone());
                async move {
                    let tags = [Tag::from("profiles"), Tag::new("user").part(7)];
                    let v = n
                        .get_or_load(&k, TTL, &tags, || async {
                            Ok::<_, std::io::Error>(profile())
                        })
                        .await
                        .unwrap();
                    assert_eq!(v.id, 7);
                }
            })
            .await
        }
        "set" => {
            throughput(CONCURRENCY, move |i| {
                let (n, t) = (n.clone(), tags.clone());
                async move {
                    n.set(&Key::new("w").part(i % 1_000), &profile(), TTL, &t)
                        .await
                        .unwrap();
                }
            })
            .await
        }
        "raw-get" => {
            throughput(CONCURRENCY, move |_| {
                let (mut c, k) = (c.clone(), raw_key.clone());
                async move {
                    let v: Vec<u8> = c.get(&k).await.unwrap();
                    assert!(!v.is_empty());
                }
            })
            .await
        }
        _ => {
            throughput(CONCURRENCY, move |i| {
                let (mut c, k, b) = (c.clone(), format!("{raw_key}:{}", i % 1_000), b.clone());
                async move {
                    let () = c.pset_ex(&k, b.as_slice(), 600_000).await.unwrap();
                }
            })
            .await
        }
    };
    eprintln!("profile {what}: {rate:.0} ops/s");
}

async fn cluster_get(redis: &TestRedis) {
    const KEYS: usize = 1_000;
    let _guard = tidewell_testkit::cluster::ClusterGuard::ensure();
    let cluster = tidewell_testkit::cluster::LocalCluster::get();
    let cache = Cache::builder()
        .url(cluster.redis_url())
        .prefix(redis.prefix())
        .build()
        .await
        .unwrap();
    let ns = cache.namespace("bench").unwrap();
    let bytes = {
        let mut b = vec![b'j'];
        serde_json::to_writer(&mut b, &profile()).unwrap();
        b
    };
    let nodes = tidewell_core::redis_conn::cluster_nodes(&cluster.redis_url());
    let client = redis::cluster::ClusterClient::new(nodes).unwrap();
    let mut raw = client.get_async_connection().await.unwrap();
    let raw_keys: Arc<Vec<String>> = Arc::new(
        (0..KEYS)
            .map(|i| format!("{}:raw:{{{i}}}", redis.prefix()))
            .collect(),
    );
    let keys: Arc<Vec<Key>> = Arc::new((0..KEYS).map(|i| Key::new("user").part(i)).collect());
    for (i, (raw_key, key)) in raw_keys.iter().zip(keys.iter()).enumerate() {
        let () = raw.pset_ex(raw_key, &bytes, 600_000).await.unwrap();
        ns.set(key, &profile(), TTL, &[Tag::new("user").part(i)])
            .await
            .unwrap();
    }
    // What a cache read asks at least on a cluster: the entry and one tag version, in two slots
    // (redis-rs splits the MGET by slot and sends the parts side by side).
    let tag_keys: Arc<Vec<String>> = Arc::new(
        (0..KEYS)
            .map(|i| format!("{}:rawtag:{{t{i}}}", redis.prefix()))
            .collect(),
    );
    for k in tag_keys.iter() {
        let () = raw.pset_ex(k, "v1", 600_000).await.unwrap();
    }
    let (mut ours, mut base, mut two_slots) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let (c, k, t) = (raw.clone(), raw_keys.clone(), tag_keys.clone());
        two_slots.push(
            throughput(CONCURRENCY, move |i| {
                let (mut c, k, t) = (c.clone(), k.clone(), t.clone());
                async move {
                    let v: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                        .arg(&k[i % KEYS])
                        .arg(&t[i % KEYS])
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    assert!(v[0].is_some());
                }
            })
            .await,
        );
        let (c, k) = (raw.clone(), raw_keys.clone());
        base.push(
            throughput(CONCURRENCY, move |i| {
                let (mut c, k) = (c.clone(), k.clone());
                async move {
                    let v: Vec<u8> = c.get(&k[i % KEYS]).await.unwrap();
                    assert!(!v.is_empty());
                }
            })
            .await,
        );
        let (n, k) = (ns.clone(), keys.clone());
        ours.push(
            throughput(CONCURRENCY, move |i| {
                let (n, k) = (n.clone(), k.clone());
                async move {
                    assert!(n.get::<Profile>(&k[i % KEYS]).await.unwrap().is_some());
                }
            })
            .await,
        );
    }
    eprintln!(
        "  cluster c32: raw GET {base:.0?}, cache get {ours:.0?}, raw MGET over two slots {two_slots:.0?}"
    );
    line("cluster_cache_get_c32", best(&ours), best(&base), "ops/s");
    cache.clear_all().await.unwrap();
    for k in raw_keys.iter().chain(tag_keys.iter()) {
        let () = raw.del(k).await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let redis = TestRedis::connect().await;
    let cache = Cache::builder()
        .url(redis.url())
        .prefix(redis.prefix())
        .build()
        .await
        .unwrap();
    let ns = cache.namespace("bench").unwrap();
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |part: &str| only.is_empty() || only.iter().any(|o| o == part);

    if run("redis") {
        eprintln!("redis tier: {OPS} ops per run, best of 3, sequential and {CONCURRENCY} tasks");
        redis_tier(&redis, &ns).await;
    }
    if let Some(what) = only.iter().find_map(|o| o.strip_prefix("profile-")) {
        // One workload alone (32 tasks), for a profiler: get, get-or-load, set, raw-get or raw-set.
        profile_one(&redis, &ns, what).await;
        return;
    }
    if run("local") {
        eprintln!("local tier:");
        l1(&redis).await;
    }
    if run("invalidate") {
        eprintln!("tag invalidation:");
        invalidation_cost(&redis, &ns, &cache).await;
    }
    if run("hit_ratio") {
        eprintln!("hit ratio:");
        hit_ratio(&cache.namespace("zipf").unwrap()).await;
    }
    if run("cluster") {
        eprintln!("Redis Cluster, {CONCURRENCY} tasks, best of 3:");
        cluster_get(&redis).await;
    }

    // Remove everything this run wrote.
    let mut c = redis.connection();
    for pattern in [
        format!("{{{}}}*", redis.prefix()),
        format!("{{{}-l1}}*", redis.prefix()),
    ] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut c)
            .await
            .unwrap();
        for chunk in keys.chunks(1_000) {
            let () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }
}
