//! A read-through cache in front of a slow loader, with tag invalidation.
//!
//! In memory (the default): `cargo run --example cache`
//! On Redis, with a local tier: `TIDEWELL_CACHE_URL=redis://127.0.0.1:6379 TIDEWELL_CACHE_LOCAL_CAPACITY=10000 cargo run --example cache`
#![allow(
    clippy::print_stdout,
    reason = "an example prints for a person to read"
)]

use std::error::Error;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidewell::cache::{Cache, CacheConfig, Key, Namespace, Tag};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Payment {
    id: u64,
    user_id: u64,
    amount_cents: i64,
}

/// The slow database query the cache protects.
async fn load_payments(user_id: u64) -> Result<Vec<Payment>, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((1..=3)
        .map(|id| Payment {
            id,
            user_id,
            amount_cents: 1_000 * id as i64,
        })
        .collect())
}

async fn payments_of(ns: &Namespace, user_id: u64) -> Result<Vec<Payment>, tidewell::cache::Error> {
    ns.get_or_load(
        &Key::new("payments").part(user_id),
        Duration::from_secs(300),
        &[Tag::new("user").part(user_id), Tag::from("payments")],
        move || load_payments(user_id),
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let cache = Cache::builder()
        .config(CacheConfig::from_env()?)
        .prefix("tidewell-example")
        .build()
        .await?;
    println!("cache: {cache:?}");
    let ns = cache.namespace("payments")?;
    ns.clear().await?; // start from nothing, even on a shared Redis

    for (what, user) in [("cold", 7), ("warm", 7), ("warm", 7), ("cold", 8)] {
        let t = Instant::now();
        let list = payments_of(&ns, user).await?;
        println!(
            "{what:>4} read of user {user}'s payments: {} items in {:>6.1} ms",
            list.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }

    println!("\nuser 7 pays again: invalidate tag user:7 (one write, whatever the number of keys)");
    cache.invalidate_tags(&[Tag::new("user").part(7)]).await?;
    for user in [7, 8] {
        let t = Instant::now();
        payments_of(&ns, user).await?;
        println!(
            "read of user {user}'s payments: {:>6.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }

    println!("\n100 concurrent reads of a cold key run the loader once:");
    let t = Instant::now();
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let ns = ns.clone();
        reads.spawn(async move { payments_of(&ns, 9).await });
    }
    let mut answers = 0;
    while let Some(r) = reads.join_next().await {
        answers += usize::from(matches!(r, Ok(Ok(_))));
    }
    println!(
        "  {answers} answers in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let s = cache
        .stats()
        .namespaces
        .get("payments")
        .copied()
        .unwrap_or_default();
    println!(
        "\nstats: hits={} local_hits={} misses={} stale={} loader_calls={} hit_ratio={:.2}",
        s.hits,
        s.local_hits,
        s.misses,
        s.stale,
        s.loader_calls,
        s.hit_ratio()
    );
    println!("health: {:?}", cache.health().await);
    ns.clear().await?;
    Ok(())
}
