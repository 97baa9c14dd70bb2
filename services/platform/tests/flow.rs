//! The whole platform end to end, through the gateway: on embedded defaults (in-memory hub and
//! cache, SQLite), and on RabbitMQ + Redis + Postgres.
//!
//! register → sign in on two devices → WebSocket on each → create a payment → its owner's
//! connections get the event within a second, another user's do not → the admin audit log has
//! the events → the profile was made → revoke the other device → its WebSocket closes (4001)
//! and its token is refused → repeated reads come from the cache (hit ratio > 80 %).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::{DataDir, access, call, login, next_json, on_rabbit, register, send, ws};
use tidewell_platform::{Platform, PlatformConfig};
use tidewell_testkit::{TestDatabase, TestRabbit, TestRedis, unique_name};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"flow-secret-flow-secret-flow-secret!";

/// Polls `f` until it answers `Some` or `limit` passes.
async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn flow(config: PlatformConfig, rabbit: Option<&TestRabbit>) {
    let platform = Platform::start(config).await.unwrap();
    if let Some(rabbit) = rabbit {
        support::owns(rabbit, &platform);
    }
    let a = platform.addr;
    let (s, ready) = call(a, "GET", "/readyz", None, None).await;
    assert_eq!(s, 200, "{ready}");
    let (s, doc) = call(a, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    for path in [
        "/api/auth/login",
        "/api/auth/devices/{device_id}/revoke",
        "/api/payments",
        "/api/payments/{id}/status",
        "/api/admin/audit",
        "/api/profile/me/preferences",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "the merged OpenAPI document lacks {path}"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc.get("x-missing").is_none(), "{}", doc["x-missing"]);

    for (email, name) in [
        ("ann@example.com", "Ann"),
        ("bob@example.com", "Bob"),
        ("root@example.com", "Root"),
    ] {
        register(a, email, name).await;
    }
    let laptop = login(a, "ann@example.com", Some("ann-laptop")).await;
    let phone = login(a, "ann@example.com", Some("ann-phone")).await;
    let bob = login(a, "bob@example.com", Some("bob-laptop")).await;
    let root = login(a, "root@example.com", Some("root-1")).await;

    let mut ws_laptop = ws(a, &access(&laptop)).await;
    let mut ws_phone = ws(a, &access(&phone)).await;
    let mut ws_bob = ws(a, &access(&bob)).await;

    let started = Instant::now();
    let (s, payment) = call(
        a,
        "POST",
        "/api/payments",
        Some(&access(&laptop)),
        Some(json!({"amount": "42.00", "currency": "EUR", "description": "flow"})),
    )
    .await;
    assert_eq!(s, 201, "{payment}");
    let id = payment["id"].as_str().unwrap().to_owned();
    for ws in [&mut ws_laptop, &mut ws_phone] {
        let frame = next_json(ws, Duration::from_secs(1))
            .await
            .expect("the owner hears of the payment within a second");
        assert_eq!(frame["type"], "event");
        assert_eq!(frame["event"]["type"], "payments.payment.created");
        assert_eq!(frame["event"]["payload"]["payment_id"], id.as_str());
    }
    let delivered = started.elapsed();
    assert!(
        next_json(&mut ws_bob, Duration::from_millis(300))
            .await
            .is_none(),
        "another user hears nothing"
    );
    // The payment's own room: its owner and an admin may join it, nobody else.
    let room = format!("payment:{id}");
    for (ws, answer) in [(&mut ws_phone, "subscribed"), (&mut ws_bob, "forbidden")] {
        ws.send(Message::text(
            json!({"type": "subscribe", "id": 9, "room": room}).to_string(),
        ))
        .await
        .unwrap();
        let a = next_json(ws, Duration::from_secs(5)).await.unwrap();
        assert_eq!(a["id"], 9, "{a}");
        assert_eq!(
            a["code"].as_str().or(a["type"].as_str()),
            Some(answer),
            "{a}"
        );
    }
    let mut ws_root = ws(a, &access(&root)).await;
    ws_root
        .send(Message::text(
            json!({"type": "subscribe", "id": 1, "room": room}).to_string(),
        ))
        .await
        .unwrap();
    let answer = next_json(&mut ws_root, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer["type"], "subscribed", "an admin may join: {answer}");

    // The admin audit log has the events; the profile was made.
    let root_token = access(&root);
    let audit = eventually(Duration::from_secs(10), || {
        let t = root_token.clone();
        async move {
            let (_, log) = call(a, "GET", "/api/admin/audit?limit=200", Some(&t), None).await;
            let events = log.as_array()?.clone();
            let types: Vec<String> = events
                .iter()
                .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
                .collect();
            (types.iter().any(|t| t == "payments.payment.created")
                && types.iter().filter(|t| *t == "auth.user.created").count() >= 3)
                .then_some(events)
        }
    })
    .await;
    let audit = audit.expect("the audit log did not get the events");
    // Every event names the service that emitted it (docs/events.md), inside the platform too.
    for e in &audit {
        let (ty, source) = (
            e["event_type"].as_str().unwrap(),
            e["source"].as_str().unwrap(),
        );
        let service = ty.split('.').next().unwrap();
        assert_eq!(source, service, "{e}");
    }
    let (s, _) = call(a, "GET", "/api/admin/audit", Some(&access(&laptop)), None).await;
    assert_eq!(s, 403, "not an admin");
    let laptop_token = access(&laptop);
    let profile = eventually(Duration::from_secs(10), || {
        let t = laptop_token.clone();
        async move {
            let (s, p) = call(a, "GET", "/api/profile/me", Some(&t), None).await;
            (s == 200).then_some(p)
        }
    })
    .await
    .expect("the profile was made from auth.user.created");
    assert_eq!(profile["display_name"], "Ann");

    // Ann's laptop signs out her phone: its WebSocket closes with 4001, its token is refused.
    let (s, v) = call(
        a,
        "POST",
        "/api/auth/devices/ann-phone/revoke",
        Some(&access(&laptop)),
        None,
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let mut code = None;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(3), ws_phone.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                code = Some(u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    assert_eq!(
        code,
        Some(4001),
        "the revoked device's WebSocket closes with 4001"
    );
    let phone_token = access(&phone);
    let refused = eventually(Duration::from_secs(3), || {
        let t = phone_token.clone();
        async move { (call(a, "GET", "/api/payments", Some(&t), None).await.0 == 401).then_some(()) }
    })
    .await;
    assert!(
        refused.is_some(),
        "the revoked token is refused at the gateway"
    );
    let (s, _) = call(a, "GET", "/api/payments", Some(&access(&laptop)), None).await;
    assert_eq!(s, 200, "the laptop keeps working");

    // Repeated reads come from the cache.
    for _ in 0..30 {
        assert_eq!(
            call(
                a,
                "GET",
                &format!("/api/payments/{id}"),
                Some(&access(&laptop)),
                None
            )
            .await
            .0,
            200
        );
        assert_eq!(
            call(a, "GET", "/api/payments", Some(&access(&laptop)), None)
                .await
                .0,
            200
        );
    }
    let ratio = platform.payments.cache_hit_ratio();
    assert!(ratio > 0.8, "cache hit ratio {ratio}");

    // Account changes reach the other services: a new name, a deleted account.
    let (s, v) = call(
        a,
        "PATCH",
        "/api/auth/me",
        Some(&access(&laptop)),
        Some(json!({"name": "Ann B"})),
    )
    .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("Ann B")));
    let (s, _) = call(a, "DELETE", "/api/auth/me", Some(&access(&bob)), None).await;
    assert_eq!(s, 204);
    let bob_token = access(&bob);
    let refused = eventually(Duration::from_secs(3), || {
        let t = bob_token.clone();
        async move { (call(a, "GET", "/api/payments", Some(&t), None).await.0 == 401).then_some(()) }
    })
    .await;
    assert!(refused.is_some(), "a deleted account's token is refused");
    let users = eventually(Duration::from_secs(10), || {
        let t = root_token.clone();
        async move {
            let (_, users) = call(a, "GET", "/api/admin/users", Some(&t), None).await;
            let list = users.as_array()?.clone();
            let ann = list
                .iter()
                .any(|u| u["email"] == "ann@example.com" && u["name"] == "Ann B");
            let bob = list.iter().any(|u| u["email"] == "bob@example.com");
            (ann && !bob).then_some(list.len())
        }
    })
    .await;
    assert_eq!(
        users,
        Some(2),
        "the admin's users table follows auth.user.updated and deleted"
    );
    assert_operable(a).await;
    eprintln!(
        "payment event reached both of the owner's connections in {delivered:?}; cache hit ratio {ratio:.2}"
    );
    platform.shutdown().await;
}

/// What an operator reads from the platform after the flow: `/healthz`, `/readyz` naming every
/// dependency, and a `/metrics` that promtool accepts, in which every metric the shipped
/// dashboards and alert rules use exists, every service is told apart by its `service` label,
/// and no label takes unbounded values.
async fn assert_operable(a: SocketAddr) {
    let (s, alive) = call(a, "GET", "/healthz", None, None).await;
    assert_eq!((s, &alive["alive"]), (200, &json!(true)), "{alive}");
    let (s, ready) = call(a, "GET", "/readyz", None, None).await;
    assert_eq!(s, 200, "{ready}");
    let checks = ready["checks"].as_object().unwrap();
    for dep in [
        "auth",
        "payments",
        "admin",
        "profile",
        "auth.database",
        "payments.database",
        "admin.database",
        "profile.database",
        "platform.broker",
        "platform.redis",
    ] {
        assert_eq!(checks.get(dep), Some(&json!("up")), "{dep} in {ready}");
    }

    let scrape = get_text(a, "/metrics").await;
    if let Err(said) = tidewell_testkit::metrics::promtool_check(&scrape) {
        panic!("promtool check metrics:\n{said}");
    }
    let exposed = tidewell_testkit::metrics::series_names(&scrape);
    let dashboards =
        tidewell_testkit::metrics::dashboard_queries(&tidewell_testkit::metrics::dashboards_dir());
    let alerts =
        tidewell_testkit::metrics::alert_queries(&tidewell_testkit::metrics::alerts_file());
    assert!(
        dashboards.len() >= 10 && alerts.len() >= 6,
        "{dashboards:?} {alerts:?}"
    );
    let used = dashboards
        .iter()
        .map(|(file, panel, expr)| (format!("{file}: {panel}"), expr))
        .chain(
            alerts
                .iter()
                .map(|(alert, expr)| (format!("alerts.yml: {alert}"), expr)),
        );
    for (place, expr) in used {
        let names = tidewell_testkit::metrics::referenced(expr);
        assert!(!names.is_empty(), "{place}: {expr}");
        for n in names {
            assert!(
                exposed.contains(&n),
                "{place} uses {n}, which the platform does not expose"
            );
        }
    }
    for service in [
        "gateway", "auth", "payments", "admin", "profile", "platform",
    ] {
        assert!(
            scrape.contains(&format!(r#"service="{service}""#)),
            "series of {service} in the scrape"
        );
    }
    // Bounded labels: every route is a template (no ids), and no family has a runaway number
    // of series.
    for label in scrape.split(r#"route=""#).skip(1) {
        let value = label.split('"').next().unwrap();
        assert!(
            value.split('/').filter(|seg| !seg.is_empty()).all(|seg| {
                seg.len() < 40
                    && !seg.chars().all(|c| c.is_ascii_digit())
                    && uuid::Uuid::parse_str(seg).is_err()
            }),
            "route label {value:?} is not a template"
        );
    }
    let mut per_family: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        *per_family.entry(name).or_default() += 1;
    }
    for (name, n) in per_family {
        assert!(n < 500, "{name} has {n} series");
    }
    for route in [
        "/api/auth/*",
        "/api/payments/*",
        "/api/payments/{id}",
        "/ws",
    ] {
        assert!(
            scrape.contains(&format!(r#"route="{route}""#)),
            "{route} in the scrape"
        );
    }
}

/// The body of `GET path` as text.
async fn get_text(addr: SocketAddr, path: &str) -> String {
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    String::from_utf8_lossy(&send(addr, req).await.2).into_owned()
}

fn embedded(data: &std::path::Path) -> PlatformConfig {
    let mut c = support::local_config(SECRET, data);
    c.admin_emails = vec!["root@example.com".into()];
    c.rate_limits = (100, 1000);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_on_embedded_defaults() {
    let data = DataDir::new("platform");
    Box::pin(flow(embedded(data.path()), None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_on_rabbitmq_redis_and_postgres() {
    let rabbit = TestRabbit::connect().await;
    let redis = TestRedis::connect().await;
    let dbs = [
        TestDatabase::create().await,
        TestDatabase::create().await,
        TestDatabase::create().await,
        TestDatabase::create().await,
    ];
    let data = DataDir::new("platform");
    let mut c = embedded(data.path());
    support::on_real_services(&mut c, &rabbit, &redis, &dbs);
    Box::pin(flow(c, Some(&rabbit))).await;
}

/// Closes every RabbitMQ connection whose client properties mention `needle`; answers how many.
fn close_connections(needle: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
            "-q",
        ])
        .output()
        .expect("rabbitmqctl runs (the fault test needs it on PATH)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|pid| {
            std::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "tidewell fault test"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_connections_closed_mid_flow_lose_no_event() {
    let rabbit = TestRabbit::connect().await;
    let data = DataDir::new("platform");
    let mut c = embedded(data.path());
    on_rabbit(&mut c, &rabbit);
    let platform = Platform::start(c).await.unwrap();
    support::owns(&rabbit, &platform);
    let a = platform.addr;
    for (email, name) in [("ann@example.com", "Ann"), ("root@example.com", "Root")] {
        register(a, email, name).await;
    }
    let ann = access(&login(a, "ann@example.com", None).await);
    let root = access(&login(a, "root@example.com", None).await);

    let prefix = rabbit.prefix().to_owned();
    let killer = tokio::spawn(async move {
        let mut closed = Vec::new();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let p = prefix.clone();
            closed.push(
                tokio::task::spawn_blocking(move || close_connections(&p))
                    .await
                    .unwrap(),
            );
        }
        closed
    });
    let mut ids = Vec::new();
    for i in 0..40 {
        let (s, p) = call(
            a,
            "POST",
            "/api/payments",
            Some(&ann),
            Some(json!({"amount": format!("{}.00", i + 1), "currency": "EUR"})),
        )
        .await;
        assert_eq!(
            s, 201,
            "the API keeps answering while the broker connection is down: {p}"
        );
        ids.push(p["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let closed = killer.await.unwrap();
    assert!(
        closed.iter().any(|&n| n > 0),
        "the faults really happened: {closed:?}"
    );
    // Every payment's event reaches the admin's audit log (through the outbox, after reconnects).
    let all = eventually(Duration::from_secs(60), || {
        let t = root.clone();
        let ids = ids.clone();
        async move {
            let (_, log) = call(
                a,
                "GET",
                "/api/admin/audit?type=payments.payment.created&limit=200",
                Some(&t),
                None,
            )
            .await;
            let seen: std::collections::BTreeSet<String> = log
                .as_array()?
                .iter()
                .filter_map(|e| e["payload"]["payment_id"].as_str().map(str::to_owned))
                .collect();
            ids.iter().all(|id| seen.contains(id)).then_some(seen.len())
        }
    })
    .await;
    assert_eq!(
        all,
        Some(40),
        "every event arrived exactly once in the audit log"
    );
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_and_leak_nothing() {
    let data = DataDir::new("platform");
    let platform = Platform::start(embedded(data.path())).await.unwrap();
    let a = platform.addr;
    for email in ["ann@example.com", "bob@example.com"] {
        register(a, email, "X").await;
    }
    let ann = access(&login(a, "ann@example.com", None).await);
    let bob = access(&login(a, "bob@example.com", None).await);
    let (_, p) = call(
        a,
        "POST",
        "/api/payments",
        Some(&ann),
        Some(json!({"amount": "1", "currency": "EUR"})),
    )
    .await;
    let anns = p["id"].as_str().unwrap().to_owned();

    let forged = tidewell_auth::Issuer::new(
        tidewell_auth::SigningKey::hs256("k1", b"not-the-secret-not-the-secret-not-t").unwrap(),
        "tidewell-auth",
        "tidewell",
    );
    let forged = forged
        .sign(&forged.claims_for("ann"))
        .unwrap()
        .into_string();
    type Case = (&'static str, String, Option<String>, Option<Value>, u16);
    let cases: Vec<Case> = vec![
        (
            "GET",
            format!("/api/payments/{anns}"),
            Some(bob.clone()),
            None,
            404,
        ),
        (
            "PATCH",
            format!("/api/payments/{anns}/status"),
            Some(bob.clone()),
            Some(json!({"status": "cancelled"})),
            404,
        ),
        (
            "GET",
            "/api/admin/audit".into(),
            Some(ann.clone()),
            None,
            403,
        ),
        (
            "GET",
            "/api/admin/users".into(),
            Some(bob.clone()),
            None,
            403,
        ),
        ("GET", "/api/payments".into(), Some(forged), None, 401),
        (
            "GET",
            "/api/payments".into(),
            Some("garbage".into()),
            None,
            401,
        ),
        (
            "GET",
            "/api/payments?limit=1%3B%20DROP%20TABLE%20payments".into(),
            Some(ann.clone()),
            None,
            422,
        ),
        (
            "GET",
            "/api/payments/'%20OR%201=1%20--".into(),
            Some(ann.clone()),
            None,
            404,
        ),
        (
            "POST",
            "/api/auth/login".into(),
            None,
            Some(json!({"email": "' OR '1'='1", "password": "' OR '1'='1"})),
            401,
        ),
        (
            "POST",
            "/api/payments".into(),
            Some(ann.clone()),
            Some(json!({"amount": "1", "currency": "EUR", "description": "x".repeat(100_000)})),
            413,
        ),
        ("GET", "/api/nothing-here".into(), None, None, 404),
    ];
    for (method, path, token, body, want) in cases {
        let (s, v) = call(a, method, &path, token.as_deref(), body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("sqlx") && !text.contains("SELECT") && !text.contains("panicked"),
            "{path} leaked: {text}"
        );
    }
    // Bob's payment list does not show Ann's.
    let (s, page) = call(a, "GET", "/api/payments", Some(&bob), None).await;
    assert_eq!(page["total"], 0, "status {s}: {page}");
    platform.shutdown().await;
}

/// Sends `head` then `body` on a raw connection while reading the answer (a client that
/// stops sending once it has its answer, as browsers do); answers the status code.
async fn raw_status(addr: SocketAddr, head: String, body: Bytes, chunked: bool) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::clone(&answered);
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for piece in body.chunks(64 * 1024) {
            if done.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let sent = if chunked {
                let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                framed.extend_from_slice(piece);
                framed.extend_from_slice(b"\r\n");
                wr.write_all(&framed).await
            } else {
                wr.write_all(piece).await
            };
            if sent.is_err() {
                return;
            }
        }
        if chunked {
            let _ = wr.write_all(b"0\r\n\r\n").await;
        }
        // Keep the sending half open until the answer is read (no half-close: a client that
        // half-closes is taken as gone by most servers).
        std::future::pending::<()>().await;
    });
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Err(e) => {
                    eprintln!("read: {e}");
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    answered.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.abort();
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line (the connection was dropped): {text:?}"));
    if status >= 500 {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), rd.read_to_end(&mut rest)).await;
        eprintln!(
            "answered {status}: {text}{}",
            String::from_utf8_lossy(&rest)
        );
    }
    status
}

/// Bodies over a service's limit, with a length or chunked, again and again: each gets a 413,
/// never a 5xx (the service answers before it has read the body and closes politely, and the
/// gateway relays the answer that came before the body was all sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_a_413_every_time_never_a_5xx() {
    let data = DataDir::new("platform");
    let mut config = embedded(data.path());
    config.rate_limits = (0, 0);
    let platform = Platform::start(config).await.unwrap();
    let a = platform.addr;
    register(a, "big@example.com", "B").await;
    let token = access(&login(a, "big@example.com", None).await);
    let json_of = |size: usize| {
        Bytes::from(format!(
            "{{\"amount\": \"1\", \"currency\": \"EUR\", \"description\": \"{}\"}}",
            "x".repeat(size)
        ))
    };
    let mut statuses = std::collections::BTreeMap::<(String, u16), usize>::new();
    for path in ["/api/payments", "/api/auth/register"] {
        for chunked in [false, true] {
            let body = if chunked {
                json_of(10 << 20)
            } else {
                json_of(600 << 10)
            };
            for _ in 0..30 {
                let framing = if chunked {
                    "transfer-encoding: chunked".to_owned()
                } else {
                    format!("content-length: {}", body.len())
                };
                let head = format!(
                    "POST {path} HTTP/1.1\r\nhost: {a}\r\nauthorization: Bearer {token}\r\n\
                     content-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
                );
                let status = raw_status(a, head, body.clone(), chunked).await;
                let case = format!("{path} {}", if chunked { "chunked" } else { "length" });
                *statuses.entry((case, status)).or_default() += 1;
            }
        }
    }
    assert!(
        statuses.keys().all(|(_, status)| *status == 413),
        "every oversized body gets a 413: {statuses:?}"
    );
    platform.shutdown().await;
}

/// Everything the gateway answers with an error has one shape, whoever made it: the proxy (404,
/// 429, 502), the WebSocket upgrade (401) and a service (422).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_error_has_one_shape() {
    let data = DataDir::new("platform");
    let platform = Platform::start(embedded(data.path())).await.unwrap();
    // A second gateway in front of the same services, with payments unreachable and a
    // credential limit of one a minute.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut config = tidewell_gateway::GatewayConfig::new(SECRET.to_vec());
    let s = platform.service_addrs;
    config.auth_url = format!("http://{}", s.auth);
    config.admin_url = format!("http://{}", s.admin);
    config.profile_url = format!("http://{}", s.profile);
    config.payments_url = format!("http://{dead_addr}");
    config.auth_per_minute = 1;
    config.queue_service = unique_name("gateway");
    let hub = tidewell_event_hub::Hub::memory(
        "gateway",
        config.queues().into_iter().fold(
            tidewell_event_hub::Topology::new(),
            tidewell_event_hub::Topology::service,
        ),
    )
    .await
    .unwrap();
    let gateway = tidewell_gateway::Gateway::start(config, hub).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s2 = stop.clone();
    let g = gateway.clone();
    let served =
        tokio::spawn(async move { g.serve(listener, async move { s2.cancelled().await }).await });

    let login = json!({"email": "nobody@example.com", "password": "a sound password 42"});
    let _ = call(a, "POST", "/api/auth/login", None, Some(login.clone())).await;
    let upgrade = Request::get("/ws")
        .header("host", a.to_string())
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (ws_status, _, ws_body) = send(a, upgrade).await;
    let answers = [
        (
            "proxy: no route",
            call(a, "GET", "/api/nothing", None, None).await,
            404,
        ),
        (
            "proxy: rate limit",
            call(a, "POST", "/api/auth/login", None, Some(login)).await,
            429,
        ),
        (
            "proxy: upstream down",
            call(a, "GET", "/api/payments", None, None).await,
            502,
        ),
        (
            "websocket upgrade",
            (
                ws_status,
                serde_json::from_slice(&ws_body).unwrap_or(Value::Null),
            ),
            401,
        ),
        (
            "service",
            call(
                a,
                "POST",
                "/api/auth/register",
                None,
                Some(json!({"email": "x@example.com"})),
            )
            .await,
            422,
        ),
    ];
    for (who, (status, body), want) in answers {
        assert_eq!(status, want, "{who}: {body}");
        let top = body.as_object().unwrap_or_else(|| panic!("{who}: {body}"));
        assert_eq!(top.keys().collect::<Vec<_>>(), ["error"], "{who}: {body}");
        let e = &body["error"];
        assert!(
            e["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{who}: {body}"
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{who}: {body}"
        );
        assert!(
            e["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{who}: {body}"
        );
        assert_eq!(e.as_object().unwrap().len(), 3, "{who}: {body}");
    }
    stop.cancel();
    let _ = served.await;
    platform.shutdown().await;
}
