//! Open-loop HTTP load for the platform's benchmarks: requests sent on schedule over keep-alive
//! connections, each timed from when it was due (falling behind counts).
#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::support;

/// Latencies of the requests that succeeded, and what happened to the others.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    /// Milliseconds from due to answered, per 2xx/3xx answer.
    pub(crate) ms: Vec<f64>,
    /// Requests sent.
    pub(crate) count: usize,
    /// Answers 503 (refused under load).
    pub(crate) refused: usize,
    /// Other failures (other statuses, connection errors).
    pub(crate) errors: usize,
    /// From the first due time to the last answer.
    pub(crate) elapsed: Duration,
    /// The bodies of successful answers (when asked to keep them).
    pub(crate) bodies: Vec<(Instant, Bytes)>,
}

impl Latencies {
    /// The `q`th percentile in ms (NaN when nothing succeeded).
    pub(crate) fn p(&self, q: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((q / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }

    /// Successful answers per second.
    pub(crate) fn rate(&self) -> f64 {
        self.ms.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A keep-alive HTTP/1.1 connection to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// One request on `s`: its status and body.
pub(crate) async fn send(
    s: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Bytes), hyper::Error> {
    s.ready().await?;
    let req = support::request(addr, method, path, token, body);
    let res = s.send_request(req).await?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// What to send, how fast, for how long.
pub(crate) struct Load<'a> {
    pub(crate) method: &'static str,
    pub(crate) path: &'a str,
    /// Request `i` carries `tokens[i % tokens.len()]`.
    pub(crate) tokens: &'a [String],
    pub(crate) body: Option<Value>,
    pub(crate) rate: u64,
    pub(crate) seconds: u64,
    /// At most this many connections (requests wait for one: the wait counts).
    pub(crate) connections: usize,
    /// Keep the bodies of successful answers, with when they came.
    pub(crate) keep_bodies: bool,
}

/// Runs `load` against `addr`.
pub(crate) async fn open_loop(addr: SocketAddr, load: &Load<'_>) -> Latencies {
    let pool: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>> = Arc::default();
    for _ in 0..load.connections.min(32) {
        let c = connect(addr).await;
        pool.lock().unwrap().push(c);
    }
    let slots = Arc::new(Semaphore::new(load.connections));
    let results: Arc<Mutex<Latencies>> = Arc::default();
    let start = Instant::now();
    let total = load.rate * load.seconds;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_micros(i * 1_000_000 / load.rate);
        tokio::time::sleep_until(due.into()).await;
        let (pool, results, slots) = (Arc::clone(&pool), Arc::clone(&results), Arc::clone(&slots));
        let path = load.path.to_owned();
        let token = load.tokens[i as usize % load.tokens.len()].clone();
        let (method, body, keep) = (load.method, load.body.clone(), load.keep_bodies);
        tasks.spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            let conn = pool.lock().unwrap().pop();
            let mut conn = match conn {
                Some(c) => c,
                None => connect(addr).await,
            };
            let r = send(&mut conn, addr, method, &path, Some(&token), body.as_ref()).await;
            let took = due.elapsed().as_secs_f64() * 1000.0;
            let mut res = results.lock().unwrap();
            res.count += 1;
            match r {
                Ok((s, bytes)) if s < 400 => {
                    res.ms.push(took);
                    if keep {
                        res.bodies.push((due, bytes));
                    }
                    drop(res);
                    pool.lock().unwrap().push(conn);
                }
                Ok((503, _)) => {
                    res.refused += 1;
                    drop(res);
                    pool.lock().unwrap().push(conn);
                }
                _ => res.errors += 1,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut out = std::mem::take(&mut *results.lock().unwrap());
    out.elapsed = start.elapsed();
    out
}
