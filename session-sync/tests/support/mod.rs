//! The demo server the end-to-end tests and the benchmark drive Chromium against: the demo page
//! and the npm package (`session-sync/pkg`, from `scripts/build-pkg`), a refresh endpoint that
//! counts its calls, sign-in that registers the device, device revocation through the registry,
//! the event hub and the WebSocket bridge, and the WebSocket server itself. In-memory hub and
//! SQLite in memory: the same wiring as a real gateway, in one process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code,
    unreachable_pub,
    reason = "test support"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tidewell_auth::{Issuer, KeySet, SigningKey, Verifier, VerifyingKey};
use tidewell_event_hub::{Hub, ServiceQueue, Subscription, Topology};
use tidewell_session_sync::server::{DeviceRegistry, NewDevice, RevokedSessions};
use tidewell_websocket::{Bridge, WsServer};

const SECRET: &[u8] = b"demo-secret-demo-secret-demo-secret!";

/// A running demo server.
pub struct Demo {
    /// Where it listens.
    pub addr: SocketAddr,
    /// POST /api/refresh calls so far.
    pub refreshes: Arc<AtomicU64>,
    /// The device registry behind it.
    pub registry: DeviceRegistry,
    /// The revoked sessions the WebSocket server refuses (fed by the hub).
    pub revoked: RevokedSessions,
    /// The WebSocket server.
    pub ws: WsServer,
}

impl Demo {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The crate's folder.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Says what to run when the package, the npm tools or Chromium are missing.
pub fn preflight() {
    let dir = crate_dir();
    let wasm = dir.join("pkg/tidewell_session_sync_bg.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: build the npm package first with session-sync/scripts/build-pkg \
         (needs `rustup target add wasm32-unknown-unknown` and \
         `cargo install wasm-bindgen-cli --version <Cargo.lock's wasm-bindgen>`)",
        wasm.display()
    );
    let playwright = dir.join("tests/e2e/node_modules/playwright-core");
    assert!(
        playwright.exists(),
        "{} is missing: run `npm ci --prefix session-sync/tests/e2e`",
        playwright.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install chromium chromium-driver` (or set CHROMIUM)"
    );
}

/// Runs scenario `scenario` of tests/e2e/run.mjs against `demo`; answers its result.
pub async fn run(demo: &Demo, scenario: &str, runs: usize) -> serde_json::Value {
    let out = tokio::process::Command::new("node")
        .arg(crate_dir().join("tests/e2e/run.mjs"))
        .arg(demo.url())
        .arg(scenario)
        .arg(runs.to_string())
        .output()
        .await
        .expect("node is needed for the browser tests: apt-get install nodejs npm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scenario {scenario} failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or_else(|| panic!("scenario {scenario} printed no result:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// Starts a demo server on a free port.
pub async fn start() -> Demo {
    let signing = SigningKey::hs256("k1", SECRET).unwrap();
    let issuer = Arc::new(Issuer::new(signing, "demo", "tidewell").ttl(Duration::from_secs(600)));
    let verifier = Verifier::new(
        KeySet::from_keys([VerifyingKey::hs256("k1", SECRET).unwrap()]),
        "demo",
        "tidewell",
    );
    let gateway = ServiceQueue::new("gateway").bind("auth.#");
    let revocations = ServiceQueue::new("gateway-revoked").bind("auth.session.revoked");
    let (queue, revoked_queue) = (gateway.name(), revocations.name());
    let hub = Hub::memory(
        "demo",
        Topology::new().service(gateway).service(revocations),
    )
    .await
    .unwrap();
    let registry = DeviceRegistry::connect("sqlite::memory:")
        .await
        .unwrap()
        .with_hub(hub.clone());
    let revoked = RevokedSessions::new(registry.clone(), 10_000, Duration::from_secs(600));
    hub.subscribe_router(Subscription::new(revoked_queue), revoked.router())
        .await
        .unwrap();
    let admit = revoked.clone();
    let ws = WsServer::builder(verifier.clone())
        .admit(move |claims| admit.permits(claims))
        // The demo's payment rooms are open to every signed-in user.
        .authorize(|_, room| room.starts_with("payment:"))
        .build()
        .unwrap();
    let bridge = Bridge::new(ws.clone()).revoke_sessions("auth.session.revoked", |e| {
        let p = e.payload();
        Some((
            p["session_id"].as_str()?.to_owned(),
            p["device_id"].as_str().map(str::to_owned),
        ))
    });
    hub.subscribe_router(Subscription::new(queue), bridge.into_router())
        .await
        .unwrap();

    let state = Arc::new(State {
        issuer,
        verifier,
        registry: registry.clone(),
        ws: ws.clone(),
        refreshes: Arc::new(AtomicU64::new(0)),
        _hub: hub,
    });
    let refreshes = Arc::clone(&state.refreshes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(state.route(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Demo {
        addr,
        refreshes,
        registry,
        revoked,
        ws,
    }
}

struct State {
    issuer: Arc<Issuer>,
    verifier: Verifier,
    registry: DeviceRegistry,
    ws: WsServer,
    refreshes: Arc<AtomicU64>,
    _hub: Hub,
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .unwrap()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

impl State {
    async fn route(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let param = |k: &str| {
            query
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/ws") => self.ws.handle(req),
            (Method::GET, "/") => file("demo/index.html"),
            (Method::GET, "/demo.js") => file("demo/demo.js"),
            (Method::GET, p) if p.starts_with("/pkg/") => {
                let name = &p["/pkg/".len()..];
                if name.contains('/') || name.contains("..") {
                    return respond(StatusCode::NOT_FOUND, "text/plain", "not found");
                }
                file(&format!("pkg/{name}"))
            }
            (Method::POST, "/api/refresh") => {
                let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
                // Long enough that refreshes started together overlap.
                let delay = param("delay").parse().unwrap_or(300).min(30_000);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                json(
                    StatusCode::OK,
                    serde_json::json!({ "access": format!("A{n}") }),
                )
            }
            (Method::POST, "/api/publish") => {
                // n test events into a room, as the event bridge would publish them.
                let room = param("room");
                let n: u32 = param("n").parse().unwrap_or(1);
                for i in 0..n {
                    let id = tidewell_testkit::unique_name("evt");
                    let event = serde_json::json!({
                        "id": id, "type": "demo.test.published", "version": 1, "source": "demo",
                        "occurred_at": "2026-11-26T00:00:00Z", "correlation_id": id,
                        "payload": { "i": i },
                    });
                    if self.ws.publish_json(&room, &event.to_string()).is_err() {
                        return json(
                            StatusCode::BAD_REQUEST,
                            serde_json::json!({ "error": "bad room" }),
                        );
                    }
                }
                json(StatusCode::OK, serde_json::json!({ "published": n }))
            }
            (Method::GET, "/api/connections") => {
                // The WebSocket connections the server holds for a user, with their sessions.
                let conns = self.ws.connections_of_user(&param("user"));
                let sessions: Vec<_> = conns.iter().map(|c| c.session.clone()).collect();
                json(
                    StatusCode::OK,
                    serde_json::json!({ "count": conns.len(), "sessions": sessions }),
                )
            }
            (Method::POST, "/api/stream") => {
                // `n` events into a room at `rate` per second, from a task (answers at once).
                let room = param("room");
                let n: u32 = param("n").parse().unwrap_or(1).min(100_000);
                let rate: u64 = param("rate").parse().unwrap_or(50).clamp(1, 10_000);
                let ws = self.ws.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                    for i in 0..n {
                        tick.tick().await;
                        let id = tidewell_testkit::unique_name("evt");
                        let event = serde_json::json!({
                            "id": id, "type": "payments.payment.created", "version": 1,
                            "source": "demo", "occurred_at": "2026-11-26T00:00:00Z",
                            "correlation_id": id, "payload": { "i": i },
                        });
                        let _ = ws.publish_json(&room, &event.to_string());
                    }
                });
                json(StatusCode::OK, serde_json::json!({ "streaming": n }))
            }
            (Method::POST, "/api/login") => {
                let (user, device) = (param("user"), param("device"));
                let session = format!("s-{}", tidewell_testkit::unique_name("sid"));
                let ua = req
                    .headers()
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let mut new = NewDevice::new(&user, &device, &session, ua);
                if !param("name").is_empty() {
                    new.name = param("name");
                }
                if let Err(e) = self.registry.register(new).await {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({ "error": e.to_string() }),
                    );
                }
                let mut claims = self.issuer.claims_for(&user);
                claims.sid = Some(session.clone());
                claims.did = Some(device);
                let token = self.issuer.sign(&claims).unwrap().into_string();
                json(
                    StatusCode::OK,
                    serde_json::json!({ "token": token, "session_id": session }),
                )
            }
            (Method::POST, p) if p.starts_with("/api/devices/") && p.ends_with("/revoke") => {
                let device = &p["/api/devices/".len()..p.len() - "/revoke".len()];
                let token = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default();
                let Ok(claims) = self.verifier.verify(token) else {
                    return json(
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({ "error": "unauthorized" }),
                    );
                };
                match self.registry.revoke(&claims.sub, device).await {
                    Ok(_) => json(StatusCode::OK, serde_json::json!({ "revoked": device })),
                    Err(e) => json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({ "error": e.to_string() }),
                    ),
                }
            }
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
        }
    }
}

fn file(relative: &str) -> Response<Full<Bytes>> {
    let path = crate_dir().join(relative);
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("ts") => "text/plain",
        _ => "application/octet-stream",
    };
    match std::fs::read(&path) {
        Ok(body) => respond(StatusCode::OK, content_type, body),
        Err(_) => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}
