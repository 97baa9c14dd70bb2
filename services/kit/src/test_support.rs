//! What the services' tests share (feature `test-support`): a service's router called in
//! process, a database per test on SQLite or Postgres, tokens, the events a hub delivered, and
//! the checks of a service's binary.
//!
//! Like `tidewell-testkit`, it fails the test with a clear message instead of returning errors.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{Router, routing::get};
//! use tidewell_service_kit::test_support::{TestClient, token};
//!
//! let client = TestClient::new(Router::new().route("/hello", get(|| async { "\"hi\"" })));
//! let (status, body) = client.call("GET", "/hello", Some(&token("ann", &[])), None).await;
//! assert_eq!((status.as_u16(), body.as_str()), (200, Some("hi")));
//! # }
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test kit fails the test with a clear message"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tidewell_core::RawEnvelope;
use tidewell_event_hub::{Hub, Router as EventRouter, ServiceQueue, Subscription, Topology};
use tidewell_testkit::{TestDatabase, unique_name};
use tower::ServiceExt as _;

use crate::Service;

/// The JWT secret of the tests.
pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// An access token signed with [`SECRET`] for `user` with `roles`, valid for ten minutes.
pub fn token(user: &str, roles: &[&str]) -> String {
    let issuer = crate::issuer(SECRET, Duration::from_secs(600)).expect("the test secret is valid");
    let mut claims = issuer.claims_for(user);
    claims.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    issuer
        .sign(&claims)
        .expect("test claims sign")
        .into_string()
}

/// A database for one test: a SQLite file in the temporary folder (removed, with its `-wal`
/// and `-shm`, on drop) or a fresh Postgres database (dropped with this value).
#[derive(Debug)]
pub struct TestDb {
    url: String,
    file: Option<PathBuf>,
    _postgres: Option<TestDatabase>,
}

impl TestDb {
    /// A fresh Postgres database when `postgres`, else a SQLite file named after `name`.
    pub async fn new(postgres: bool, name: &str) -> Self {
        if postgres {
            let db = TestDatabase::create().await;
            return Self {
                url: db.url().to_owned(),
                file: None,
                _postgres: Some(db),
            };
        }
        let file = std::env::temp_dir().join(format!("{}.db", unique_name(name)));
        Self {
            url: format!("sqlite://{}?mode=rwc", file.display()),
            file: Some(file),
            _postgres: None,
        }
    }

    /// Its URL, for a service's `database_url`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                // ok to ignore: a file that is not there is what we want
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
    }
}

/// The events a hub delivered to one queue of this test, in order.
#[derive(Clone, Debug, Default)]
pub struct EventLog(Arc<Mutex<Vec<RawEnvelope>>>);

impl EventLog {
    /// An in-memory hub emitting as `source`, with a queue of a unique name bound to `binding`
    /// whose events are recorded in the log.
    pub async fn hub(source: &str, binding: &str) -> (Hub, Self) {
        let queue = ServiceQueue::new(unique_name("audit")).bind(binding);
        let name = queue.name();
        let hub = Hub::memory(source, Topology::new().service(queue))
            .await
            .expect("an in-memory hub starts");
        let log = Self::default();
        let events = Arc::clone(&log.0);
        hub.subscribe_router(
            Subscription::new(name),
            EventRouter::new().fallback(move |e: RawEnvelope| {
                let events = Arc::clone(&events);
                async move {
                    events.lock().expect("not poisoned").push(e);
                    Ok(())
                }
            }),
        )
        .await
        .expect("the test queue subscribes");
        (hub, log)
    }

    /// The types of the events recorded, once there are `n` of them (or after four seconds).
    pub async fn types(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            if self.0.lock().expect("not poisoned").len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.0
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|e| e.event_type().to_owned())
            .collect()
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<RawEnvelope> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// A service's router called in process, with what [`serve`](crate::serve()) adds
/// ([`layers`](crate::layers)).
#[derive(Clone, Debug)]
pub struct TestClient {
    router: Router,
    headers: HeaderMap,
}

impl TestClient {
    /// Calls `router` as served.
    pub fn new(router: Router) -> Self {
        Self {
            router: crate::layers(router),
            headers: HeaderMap::new(),
        }
    }

    /// Sends the header `name: value` with every request.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        self
    }

    /// `method path` with `token` as the bearer token and `body` as JSON: the status and the
    /// body as JSON (`null` when empty, a string when it is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_owned())),
            None => req.body(Body::empty()),
        }
        .expect("a valid request");
        let res = self.send(req).await;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .expect("the body is read")
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    /// [`call`](Self::call) with `body` as the JSON body.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.call(method, path, token, Some(&body.to_string()))
            .await
    }

    /// Sends `req` as it is (with the client's headers).
    pub async fn send(&self, mut req: Request<Body>) -> Response<Body> {
        for (name, value) in &self.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        self.router
            .clone()
            .oneshot(req)
            .await
            .expect("a router is infallible")
    }
}

/// Checks the binary `bin` of the service `S`: `--help` lists every variable of `S::VARS` and
/// the telemetry's, `--version` and a usage error behave (see
/// `tidewell_testkit::assert_behaves_like_a_tool`), and without `TIDEWELL_JWT_SECRET` it stops
/// with a message for a person that names the variable (exit 1). Answers that message.
pub fn assert_service_binary<S: Service>(bin: &str) -> String {
    for vars in S::VARS {
        tidewell_testkit::assert_behaves_like_a_tool(bin, vars);
    }
    tidewell_testkit::assert_behaves_like_a_tool(
        bin,
        tidewell_observability::TelemetryConfig::VARS,
    );
    tidewell_testkit::assert_start_error(
        bin,
        &[(crate::JWT_SECRET.name, None)],
        &["environment variable TIDEWELL_JWT_SECRET is not set"],
    )
}
