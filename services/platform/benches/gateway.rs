//! The platform under load: `cargo bench -p tidewell-platform` (embedded defaults, rate limits off).
//!
//! - `gateway_p95_cached_get`: GET /api/payments/{id} (a cached read) at a steady 1,000 requests/s
//!   for 10 s through the gateway; baseline: the same straight to the payments service (what the
//!   gateway adds). Open loop: each request is timed from when it was due, so falling behind counts.
//! - `gateway_p95_post`: POST /api/payments (a write with its outbox row) the same way.
//! - `ws_concurrent_p99`: 10,000 authenticated WebSocket connections (one user, in a child
//!   process: a process has 20,000 descriptors here) held while payments are made at 5/s; the
//!   delivery p99 from the event's `occurred_at` to its arrival on every connection, through
//!   outbox, hub, bridge and rooms; baseline: the same fleet fed by `WsServer::publish` directly.
//!
//! Prints p50/p95/p99 and one `bench:` line per figure.
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

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use load::{Load, open_loop};
use serde_json::{Value, json};
use tidewell_platform::Platform;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-sec!";
const RATE: u64 = 1_000;
const SECONDS: u64 = 10;
const CONNS: usize = 10_000;
const WS_EVENTS: u64 = 50;
const WS_RATE: u64 = 5;

fn main() {
    if std::env::var("TIDEWELL_BENCH_ROLE").as_deref() == Ok("ws-clients") {
        return ws_clients();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let data = support::DataDir::new("tidewell-bench");
    let mut config = support::local_config(SECRET, data.path());
    config.rate_limits = (0, 0);
    let platform = Platform::start(config).await.unwrap();
    let gw = platform.addr;
    let direct = platform.service_addrs.payments;

    support::register(gw, "bench@example.com", "Bench").await;
    let token = support::access(&support::login(gw, "bench@example.com", None).await);
    let (_, p) = support::call(
        gw,
        "POST",
        "/api/payments",
        Some(&token),
        Some(json!({"amount": "1.00", "currency": "EUR"})),
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let get = format!("/api/payments/{id}");

    let tokens = [token.clone()];
    let steady = |method, path, body| Load {
        method,
        path,
        tokens: &tokens,
        body,
        rate: RATE,
        seconds: SECONDS,
        connections: 1_000,
        keep_bodies: false,
    };
    let g_get = open_loop(gw, &steady("GET", &get, None)).await;
    let d_get = open_loop(direct, &steady("GET", &get, None)).await;
    let body = json!({"amount": "2.50", "currency": "EUR", "description": "bench"});
    let g_post = open_loop(gw, &steady("POST", "/api/payments", Some(body.clone()))).await;
    let d_post = open_loop(direct, &steady("POST", "/api/payments", Some(body))).await;
    for (name, l) in [
        ("gateway GET", &g_get),
        ("direct GET", &d_get),
        ("gateway POST", &g_post),
        ("direct POST", &d_post),
    ] {
        eprintln!(
            "  {name}: {} requests, {} errors, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            l.count,
            l.errors + l.refused,
            l.p(50.0),
            l.p(95.0),
            l.p(99.0)
        );
    }
    eprintln!(
        "  payments cache hit ratio {:.3}",
        platform.payments.cache_hit_ratio()
    );

    // Let the writes' events drain first: they go to the bench user's room, not the fleet's.
    while platform.payments.outbox_pending().await.unwrap_or(0) > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 10,000 WebSocket connections of a second user, in a child process.
    support::register(gw, "fleet@example.com", "Fleet").await;
    let token = support::access(&support::login(gw, "fleet@example.com", None).await);
    let mut fleet = Fleet::spawn(&format!("ws://{gw}/ws"), &token);
    fleet.wait_for("ready");
    let start = Instant::now();
    for i in 0..WS_EVENTS {
        let _ = support::call(
            gw,
            "POST",
            "/api/payments",
            Some(&token),
            Some(json!({"amount": "3.00", "currency": "EUR"})),
        )
        .await;
        pace(start, i, WS_RATE).await;
    }
    let ours = fleet.report(WS_EVENTS);
    let ws = platform.gateway.websocket().clone();
    let user = login_sub(&token);
    let start = Instant::now();
    for i in 0..WS_EVENTS {
        let envelope = tidewell_core::Envelope::new("bench", DirectEvent { n: i });
        ws.publish(&format!("user:{user}"), &envelope).unwrap();
        pace(start, i, WS_RATE).await;
    }
    let base = fleet.report(WS_EVENTS);
    drop(fleet);
    eprintln!("  websocket through outbox + hub + bridge: {ours:?}; direct publish: {base:?}");

    let line = |name: &str, ours: f64, base: f64, unit: &str| {
        println!(
            "bench: {name} ours={ours:.3} baseline={base:.3} ratio={:.3} unit={unit}",
            ours / base
        );
    };
    line("gateway_p95_cached_get", g_get.p(95.0), d_get.p(95.0), "ms");
    line("gateway_p99_cached_get", g_get.p(99.0), d_get.p(99.0), "ms");
    line("gateway_p95_post", g_post.p(95.0), d_post.p(95.0), "ms");
    line("ws_concurrent_p99", ours.1, base.1, "ms");
    platform.shutdown().await;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DirectEvent {
    n: u64,
}
impl tidewell_core::Event for DirectEvent {
    const TYPE: &'static str = "bench.direct.published";
    const VERSION: u16 = 1;
}

fn login_sub(token: &str) -> String {
    let v = tidewell_service_kit::verifier(SECRET).unwrap();
    v.verify(token).unwrap().sub
}

async fn pace(start: Instant, i: u64, rate: u64) {
    let due = start + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
    tokio::time::sleep_until(due.into()).await;
}

/// The WebSocket fleet in a child process, driven over stdin/stdout.
struct Fleet {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Fleet {
    fn spawn(url: &str, token: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("TIDEWELL_BENCH_ROLE", "ws-clients")
            .env("BENCH_URL", url)
            .env("BENCH_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l.trim().to_owned()
    }

    fn wait_for(&mut self, what: &str) {
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "the client fleet died");
            if l.starts_with(what) {
                return;
            }
        }
    }

    /// Waits until every connection got `events` more events; answers (deliveries, p99 ms).
    fn report(&mut self, events: u64) -> (usize, f64) {
        writeln!(self.stdin, "report {events}").unwrap();
        let l = self.line();
        let mut it = l.split_whitespace().skip(1);
        let n = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let p99 = it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        (n, p99)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child: CONNS connections; on `report N`, waits (up to 60 s) until each has N more events,
/// then prints `report <deliveries> <p99 ms>` and resets.
fn ws_clients() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = std::env::var("BENCH_URL").unwrap();
        let token = std::env::var("BENCH_TOKEN").unwrap();
        let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
        let sem = Arc::new(tokio::sync::Semaphore::new(200));
        let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..CONNS {
            let (url, token, lat, sem, ready) = (
                url.clone(),
                token.clone(),
                Arc::clone(&latencies),
                Arc::clone(&sem),
                Arc::clone(&ready),
            );
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await.unwrap();
                let mut req = url.into_client_request().unwrap();
                req.headers_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
                let _welcome = ws.next().await;
                drop(permit);
                ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        let now = time_now_ns();
                        let Ok(frame) = serde_json::from_str::<Value>(&t) else {
                            continue;
                        };
                        let Ok(env) = tidewell_core::RawEnvelope::parse(
                            frame["event"].to_string().as_bytes(),
                        ) else {
                            continue;
                        };
                        let sent = env.occurred_at().unix_timestamp_nanos();
                        lat.lock().unwrap().push((now - sent) as f64 / 1e6);
                    }
                }
            });
        }
        while ready.load(std::sync::atomic::Ordering::SeqCst) < CONNS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("ready");
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.unwrap();
            let Some(n) = line
                .strip_prefix("report ")
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let want = n * CONNS;
            let deadline = Instant::now() + Duration::from_secs(60);
            while latencies.lock().unwrap().len() < want && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut v = std::mem::take(&mut *latencies.lock().unwrap());
            v.sort_by(f64::total_cmp);
            let p99 = v
                .get(((v.len().max(1) - 1) as f64 * 0.99) as usize)
                .copied()
                .unwrap_or(f64::NAN);
            println!("report {} {p99:.3}", v.len());
            std::io::stdout().flush().unwrap();
        }
    });
}

fn time_now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}
