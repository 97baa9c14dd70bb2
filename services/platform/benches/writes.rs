//! The write path: `cargo bench -p tidewell-platform --bench writes` (rate limits off).
//!
//! `POST /api/payments` through the gateway, open loop (each request timed from when it was
//! due), at rising rates (250, 500, 1,000, 2,000, 4,000 per second; `BENCH_SECONDS` each, 10 by
//! default) from 50 users, on the embedded default (SQLite, in-memory hub and cache) and on
//! PostgreSQL + RabbitMQ + Redis (the local services, as the tests use them). For each backend:
//! p50/p95/p99, the rate achieved, and the highest rate whose p95 stays under 50 ms with at
//! least 95 % of the offered rate answered (`payments_create_max_rate_<backend>`); its baseline
//! is the **design floor**: the same transaction (a payment row and its outbox row), issued by
//! raw sqlx from as many tasks as the load has connections, as fast as it goes.
//!
//! Then, on PostgreSQL + RabbitMQ + Redis at 500/s: the time from each `POST` (when it was due)
//! to its event on the owner's WebSocket (`payment_to_websocket_p99`; baseline: the `POST`'s own
//! p99, so the ratio is what the event's way adds), and the outbox backlog's oldest age.
//!
//! `BENCH_PARTS` (comma-separated, default all) runs only some of `embedded`, `postgres`, `e2e`;
//! `BENCH_RATES` (comma-separated) replaces the rate ladder (to profile one rate).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    reason = "benchmark"
)]

// The allocator the service binaries ship with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod load;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use load::{Latencies, Load, open_loop};
use serde_json::{Value, json};
use tidewell_platform::{Platform, PlatformConfig};
use tidewell_testkit::{TestDatabase, TestRabbit, TestRedis};

const SECRET: &[u8] = b"writes-secret-writes-secret-writes!!";
const RATES: [u64; 5] = [250, 500, 1_000, 2_000, 4_000];
const USERS: usize = 50;
const CONNECTIONS: usize = 64;
const P95_GOAL_MS: f64 = 50.0;

fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Whether `BENCH_PARTS` (default: all) names `part`.
fn part(part: &str) -> bool {
    std::env::var("BENCH_PARTS").map_or(true, |v| v.split(',').any(|p| p.trim() == part))
}

/// `BENCH_RATES`, else the ladder.
fn rates() -> Vec<u64> {
    std::env::var("BENCH_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| RATES.to_vec())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn line(name: &str, ours: f64, base: f64, unit: &str) {
    println!(
        "bench: {name} ours={ours:.3} baseline={base:.3} ratio={:.3} unit={unit}",
        ours / base
    );
}

async fn run() {
    if part("embedded") {
        let data = support::DataDir::new("tidewell-writes");
        let mut config = support::local_config(SECRET, data.path());
        config.rate_limits = (0, 0);
        let payments_db = format!(
            "sqlite:{}?mode=rwc",
            data.path().join("payments.db").display()
        );
        let (max, floor) = ladder("embedded", config, &payments_db, None).await;
        line("payments_create_max_rate_embedded", max, floor, "req/s");
    }

    let rabbit = TestRabbit::connect().await;
    let redis = TestRedis::connect().await;
    let mut dbs = Vec::new();
    for _ in 0..4 {
        dbs.push(TestDatabase::create().await);
    }
    let data = support::DataDir::new("tidewell-writes-pg");
    let config = || {
        let mut c = support::local_config(SECRET, data.path());
        c.rate_limits = (0, 0);
        support::on_real_services(&mut c, &rabbit, &redis, &dbs);
        c
    };
    if part("postgres") {
        let (max, floor) = ladder("postgres", config(), dbs[1].url(), Some(&rabbit)).await;
        line("payments_create_max_rate_postgres", max, floor, "req/s");
    }
    if part("e2e") {
        end_to_end(config(), &rabbit).await;
    }
}

/// The rate ladder on a platform started from `config`, then the design floor on the payments
/// database at `payments_db`: (highest rate meeting the goal, floor rate).
async fn ladder(
    backend: &str,
    config: PlatformConfig,
    payments_db: &str,
    rabbit: Option<&TestRabbit>,
) -> (f64, f64) {
    let platform = Platform::start(config).await.unwrap();
    if let Some(rabbit) = rabbit {
        support::owns(rabbit, &platform);
    }
    let gw = platform.addr;
    let tokens = users(gw, backend).await;
    let body = json!({"amount": "2.50", "currency": "EUR", "description": "bench"});
    let mut best = 0.0;
    eprintln!("{backend}: POST /api/payments through the gateway, open loop, {USERS} users");
    for rate in rates() {
        let l = open_loop(gw, &payments(&tokens, &body, rate, false)).await;
        report(&format!("  {rate}/s"), &l);
        let met = l.p(95.0) < P95_GOAL_MS && l.ms.len() as f64 >= 0.95 * l.count as f64;
        if met && l.rate() >= 0.95 * rate as f64 {
            best = rate as f64;
        }
        drain(&platform).await;
        if l.rate() < 0.5 * rate as f64 {
            break; // far behind: the higher rates say nothing more
        }
    }
    platform.shutdown().await;
    let floor = design_floor(payments_db).await;
    eprintln!(
        "  design floor (payment row + outbox row, raw sqlx, {CONNECTIONS} tasks): {floor:.0}/s"
    );
    (best, floor)
}

/// `POST /api/payments` with `body` at `rate` for `BENCH_SECONDS`, from `tokens` over at most
/// `CONNECTIONS` connections.
fn payments<'a>(tokens: &'a [String], body: &Value, rate: u64, keep_bodies: bool) -> Load<'a> {
    Load {
        method: "POST",
        path: "/api/payments",
        tokens,
        body: Some(body.clone()),
        rate,
        seconds: seconds(),
        connections: CONNECTIONS,
        keep_bodies,
    }
}

fn report(label: &str, l: &Latencies) {
    eprintln!(
        "{label}: achieved {:.0}/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, {} refused (503), {} errors",
        l.rate(),
        l.p(50.0),
        l.p(95.0),
        l.p(99.0),
        l.refused,
        l.errors
    );
}

/// Signs up `USERS` users; their access tokens.
async fn users(gw: SocketAddr, tag: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let email = format!("{tag}-{i}@example.com");
        support::register(gw, &email, "Bench").await;
        tokens.push(support::access(&support::login(gw, &email, None).await));
    }
    tokens
}

/// Waits (up to 60 s) until the payments outbox is relayed.
async fn drain(platform: &Platform) {
    let until = Instant::now() + Duration::from_secs(60);
    while platform.payments.outbox_pending().await.unwrap_or(0) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The payment row and its outbox row in one transaction, from `CONNECTIONS` tasks, for 5 s:
/// transactions per second.
async fn design_floor(url: &str) -> f64 {
    let pool = tidewell_event_hub::outbox::connect(url).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for t in 0..CONNECTIONS {
        let (pool, stop, done) = (pool.clone(), Arc::clone(&stop), Arc::clone(&done));
        tasks.spawn(async move {
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("floor-{t}-{n}-{}", uuid::Uuid::new_v4());
                let now = tidewell_service_kit::now_ms();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO payments (id, user_id, amount_cents, currency, description, \
                     status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(id.clone())
                .bind("floor")
                .bind(250_i64)
                .bind("EUR")
                .bind("bench")
                .bind("pending")
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query(
                    "INSERT INTO tidewell_outbox (id, event_type, body, created_at, published_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(id)
                .bind("payments.payment.created")
                .bind(r#"{"type":"payments.payment.created","payload":{}}"#)
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// At 500/s on PostgreSQL + RabbitMQ + Redis: from each POST's due time to its event on the
/// owner's WebSocket.
async fn end_to_end(config: PlatformConfig, rabbit: &TestRabbit) {
    const RATE: u64 = 500;
    let platform = Platform::start(config).await.unwrap();
    support::owns(rabbit, &platform);
    let gw = platform.addr;
    let tokens = users(gw, "e2e").await;
    // One WebSocket per user: each hears of its own payments.
    let arrivals: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut readers = Vec::new();
    for token in &tokens {
        let ws = support::ws(gw, token).await;
        let arrivals = Arc::clone(&arrivals);
        readers.push(tokio::spawn(async move {
            let (_, mut rx) = ws.split();
            while let Some(Ok(m)) = rx.next().await {
                let Ok(v) = serde_json::from_str::<Value>(m.to_text().unwrap_or("")) else {
                    continue;
                };
                if let Some(id) = v["event"]["payload"]["payment_id"].as_str() {
                    arrivals
                        .lock()
                        .unwrap()
                        .insert(id.to_owned(), Instant::now());
                }
            }
        }));
    }
    let body = json!({"amount": "1.00", "currency": "EUR"});
    let l = open_loop(gw, &payments(&tokens, &body, RATE, true)).await;
    report(&format!("e2e POST at {RATE}/s"), &l);
    let mut oldest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let age = platform
            .payments
            .outbox_oldest_age()
            .await
            .unwrap_or_default();
        oldest = oldest.max(age);
        if arrivals.lock().unwrap().len() >= l.bodies.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let mut ms: Vec<f64> = Vec::new();
    let mut missing = 0;
    for (due, bytes) in &l.bodies {
        let id = serde_json::from_slice::<Value>(bytes).unwrap()["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match arrivals.get(&id) {
            Some(at) => ms.push(at.duration_since(*due).as_secs_f64() * 1000.0),
            None => missing += 1,
        }
    }
    let e2e = Latencies {
        ms,
        ..Latencies::default()
    };
    eprintln!(
        "  POST to WebSocket: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; {missing} events not seen in 30 s; outbox oldest age seen {oldest:?}",
        e2e.p(50.0),
        e2e.p(95.0),
        e2e.p(99.0)
    );
    line("payment_to_websocket_p99", e2e.p(99.0), l.p(99.0), "ms");
    for r in readers {
        r.abort();
    }
    platform.shutdown().await;
}
