//! Tidewell's WebSocket server against a Node.js server on the npm `ws` package, same clients,
//! same frames, one run, loopback.
//!
//! Run: `cargo bench -p tidewell-websocket --bench fanout` (needs node; `npm ci --prefix
//! websocket/benches/node`). The server under test runs in this process (our server) or in node
//! (the baseline); the client fleet runs in a child process (this binary again, role `clients`),
//! so each server's RSS is its own.
//!
//! - `fanout_deliveries_per_s`: CONNS connections in one room, EVENTS events of 1 KiB broadcast;
//!   deliveries per second until every client has every event.
//! - `idle_conn_memory`: server RSS growth per idle connection, at CONNS connections (authenticated
//!   for Tidewell). The fd limit here is 20,000 per process, so the issue's 20,000 connections are
//!   measured as CONNS.
//! - `delivery_latency_p99`: LAT_EVENTS events published at LAT_RATE per second to the same
//!   CONNS connections; p99 of (received - sent) on a sample of connections, in ms. That is 5
//!   million deliveries per second, far more than this machine serves, so it measures the backlog.
//! - `delivery_latency_p99_within_capacity`: the same, SUS_EVENTS events at SUS_RATE per second
//!   (SUS_RATE × CONNS deliveries per second, which both servers keep up with here): the latency
//!   a client sees when the server is not overloaded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tidewell_auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
use tidewell_websocket::{WsConfig, WsServer};

const CONNS: usize = 5_000;
const EVENTS: usize = 100;
/// `delivery_latency_p99`: this many events at LAT_RATE per second, latency sampled on every
/// LAT_SAMPLE-th connection.
const LAT_EVENTS: usize = 1_000;
const LAT_RATE: usize = 1_000;
const LAT_SAMPLE: usize = 50;
/// `delivery_latency_p99_within_capacity`: this many events at SUS_RATE per second.
const SUS_EVENTS: usize = 100;
const SUS_RATE: usize = 10;
const SIZE: usize = 1024;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn main() {
    if std::env::var("TIDEWELL_BENCH_ROLE").as_deref() == Ok("clients") {
        return clients();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server, addr) = rt.block_on(start_ours());
    let token = Issuer::new(SigningKey::hs256("k1", SECRET).unwrap(), "auth", "tidewell")
        .sign(
            &Issuer::new(SigningKey::hs256("k1", SECRET).unwrap(), "auth", "tidewell")
                .claims_for("bench"),
        )
        .unwrap()
        .into_string();
    let me = std::process::id();

    // Tidewell.
    let before = rss(me);
    let mut fleet = Fleet::spawn(&format!("ws://{addr}/ws"), &token);
    fleet.wait_for("ready");
    std::thread::sleep(Duration::from_millis(500));
    let ours_idle = rss(me).saturating_sub(before) as f64 / CONNS as f64;
    let event = serde_json::json!({"id": "ev", "type": "bench.thing.happened", "payload": "x".repeat(SIZE)});
    fleet.send("go");
    let started = Instant::now();
    for _ in 0..EVENTS {
        server.publish("broadcast", &event).unwrap();
    }
    fleet.wait_for("done");
    let ours_rate = (CONNS * EVENTS) as f64 / started.elapsed().as_secs_f64();
    // Each event is stamped with the time it was due, so falling behind counts as latency.
    let publish = |event: &serde_json::Value| server.publish("broadcast", event).unwrap();
    let ours_p99 = paced(&mut fleet, LAT_EVENTS, LAT_RATE, publish);
    let ours_sus_p99 = paced(&mut fleet, SUS_EVENTS, SUS_RATE, publish);
    drop(fleet);
    eprintln!(
        "  tidewell: {ours_rate:.0} deliveries/s, {ours_idle:.0} B per idle connection; {:?}",
        server.stats()
    );

    // Node `ws`.
    let (mut node, port) = start_node();
    let node_pid = node.id();
    let node_before = rss(node_pid);
    let mut fleet = Fleet::spawn(&format!("ws://127.0.0.1:{port}/"), "none");
    fleet.wait_for("ready");
    std::thread::sleep(Duration::from_millis(500));
    let node_idle = rss(node_pid).saturating_sub(node_before) as f64 / CONNS as f64;
    fleet.send("go");
    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://127.0.0.1:{port}/broadcast?n={EVENTS}&size={SIZE}"),
        ])
        .output()
        .expect("curl on PATH");
    assert!(out.status.success());
    fleet.wait_for("done");
    let node_rate = (CONNS * EVENTS) as f64 / started.elapsed().as_secs_f64();
    let node_p99 = node_paced(&mut fleet, port, LAT_EVENTS, LAT_RATE);
    let node_sus_p99 = node_paced(&mut fleet, port, SUS_EVENTS, SUS_RATE);
    drop(fleet);
    let _ = node.kill();
    let _ = node.wait();
    eprintln!("  node ws: {node_rate:.0} deliveries/s, {node_idle:.0} B per idle connection");

    println!(
        "bench: fanout_deliveries_per_s ours={ours_rate:.0} baseline={node_rate:.0} ratio={:.3} unit=deliveries/s",
        ours_rate / node_rate
    );
    println!(
        "bench: delivery_latency_p99 ours={ours_p99:.2} baseline={node_p99:.2} ratio={:.3} unit=ms",
        ours_p99 / node_p99
    );
    println!(
        "bench: delivery_latency_p99_within_capacity ours={ours_sus_p99:.2} baseline={node_sus_p99:.2} ratio={:.3} unit=ms",
        ours_sus_p99 / node_sus_p99
    );
    println!(
        "bench: idle_conn_memory ours={ours_idle:.0} baseline={node_idle:.0} ratio={:.3} unit=bytes/connection",
        ours_idle / node_idle
    );
}

/// Tells the fleet `go`, publishes `n` events at `rate` per second through `publish` (each
/// stamped with the time it was due), and returns the fleet's p99 in ms.
fn paced(fleet: &mut Fleet, n: usize, rate: usize, publish: impl Fn(&serde_json::Value)) -> f64 {
    fleet.send("go");
    let schedule_us = now_us();
    let start = Instant::now();
    for i in 0..n {
        let due_us = schedule_us + (i * 1_000_000 / rate) as u64;
        let event = serde_json::json!({"id": "ev", "type": "bench.thing.happened",
            "payload": {"sent_us": due_us, "pad": "x".repeat(SIZE - 64)}});
        publish(&event);
        let due = start + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    fleet.p99()
}

/// Tells the fleet `go`, has the Node server publish `n` events at `rate` per second (stamped
/// when due, like [`paced`]), and returns the fleet's p99 in ms.
fn node_paced(fleet: &mut Fleet, port: u16, n: usize, rate: usize) -> f64 {
    fleet.send("go");
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!(
                "http://127.0.0.1:{port}/paced?n={n}&rate={rate}&size={}",
                SIZE - 64
            ),
        ])
        .output()
        .expect("curl on PATH");
    assert!(out.status.success());
    fleet.p99()
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

async fn start_ours() -> (WsServer, SocketAddr) {
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("k1", SECRET).unwrap()]),
        "auth",
        "tidewell",
    );
    let mut config = WsConfig::default();
    config.queue_bytes = 4 * 1024 * 1024; // bursts must queue, not be shed: frames are shared bytes
    config.history_len = 16;
    let server = WsServer::builder(verifier).config(config).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            // As any WebSocket server should (Node's `ws` does it by default): small frames go out
            // at once instead of waiting for the previous segment's ACK.
            let _ = stream.set_nodelay(true);
            let s = s.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(s.handle(req)) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (server, addr)
}

fn start_node() -> (Child, u16) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/node");
    let mut child = Command::new("node")
        .arg(format!("{dir}/server.mjs"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node on PATH, and `npm ci --prefix websocket/benches/node`");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("node server said {line:?}"));
    (child, port)
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The client fleet: this binary in the `clients` role.
struct Fleet {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Fleet {
    fn spawn(url: &str, token: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("TIDEWELL_BENCH_ROLE", "clients")
            .args([url, token])
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

    fn wait_for(&mut self, word: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), word, "client fleet");
    }

    /// Waits for the fleet's `p99 <ms>` line.
    fn p99(&mut self) -> f64 {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix("p99 ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("client fleet said {line:?}"))
    }

    fn send(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `clients` role: CONNS connections; prints `ready` once all are welcomed, then `done` once
/// each has EVENTS event frames after `go`.
fn clients() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let url = args.next().unwrap();
    let token = args.next().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (welcomed_tx, mut welcomed) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (lat_tx, mut lat_done) = tokio::sync::mpsc::unbounded_channel::<Vec<u64>>();
        for index in 0..CONNS {
            let mut req =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    url.as_str(),
                )
                .unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            let (welcomed_tx, done_tx, lat_tx) =
                (welcomed_tx.clone(), done_tx.clone(), lat_tx.clone());
            tokio::spawn(async move {
                let (_sink, mut stream) = ws.split();
                let mut events = 0;
                let mut welcomed = false;
                let mut latencies = Vec::new();
                // Latency phases: events after the throughput run, then after the first phase.
                let phase_ends = [EVENTS + LAT_EVENTS, EVENTS + LAT_EVENTS + SUS_EVENTS];
                while let Some(Ok(m)) = stream.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                        if !welcomed {
                            welcomed = true;
                            let _ = welcomed_tx.send(());
                            continue;
                        }
                        if t.starts_with(r#"{"type":"event""#) {
                            events += 1;
                            if events == EVENTS {
                                let _ = done_tx.send(());
                            }
                            if events > EVENTS && index % LAT_SAMPLE == 0 {
                                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                                let sent = v["event"]["payload"]["sent_us"].as_u64().unwrap();
                                latencies.push(now_us().saturating_sub(sent));
                            }
                            if phase_ends.contains(&events) {
                                let _ = lat_tx.send(std::mem::take(&mut latencies));
                            }
                        }
                    }
                }
            });
        }
        for _ in 0..CONNS {
            welcomed.recv().await.unwrap();
        }
        println!("ready");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        tokio::task::spawn_blocking(move || {
            std::io::stdin().read_line(&mut line).unwrap();
        })
        .await
        .unwrap();
        for _ in 0..CONNS {
            done.recv().await.unwrap();
        }
        println!("done");
        std::io::stdout().flush().unwrap();
        for _phase in 0..2 {
            // Each latency phase starts on the parent's `go`.
            let mut line = String::new();
            tokio::task::spawn_blocking(move || {
                std::io::stdin().read_line(&mut line).unwrap();
            })
            .await
            .unwrap();
            let mut all = Vec::new();
            for _ in 0..CONNS {
                all.extend(lat_done.recv().await.unwrap());
            }
            all.sort_unstable();
            let p99 = all
                .get(all.len().saturating_sub(1) * 99 / 100)
                .copied()
                .unwrap_or(0);
            println!("p99 {:.3}", p99 as f64 / 1000.0);
            std::io::stdout().flush().unwrap();
        }
        std::future::pending::<()>().await;
    });
}
