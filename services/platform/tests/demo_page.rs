//! The platform as a new user meets it: the binary's command line, the default rate limits, and
//! the demo page in Chromium (tests/demo/run.mjs). Needs Node.js, Chromium and the npm packages
//! of session-sync/tests/e2e (scripts/setup installs them); the browser test says which is
//! missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tidewell_platform::{Platform, PlatformConfig};
use tidewell_testkit::unique_name;

/// The platform on embedded defaults with the default rate limits, on a free port.
async fn start(data: &Path) -> Platform {
    let mut c = PlatformConfig::embedded(b"demo-page-secret-demo-page-secret!!".to_vec());
    c.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    c.data_dir = data.to_path_buf();
    c.hub_url = format!("memory://{}", unique_name("demo"));
    assert_eq!(
        c.rate_limits,
        (10, 100),
        "the defaults are what is tested here"
    );
    Platform::start(c).await.unwrap()
}

/// One request on a fresh connection: status, `Retry-After` and `Cache-Control`, JSON body.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, (Option<String>, Option<String>), Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default()));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(req.body(body).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let headers = (header("retry-after"), header("cache-control"));
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[test]
fn the_binary_behaves_like_a_tool() {
    let bin = env!("CARGO_BIN_EXE_tidewell-platform");
    tidewell_testkit::assert_behaves_like_a_tool(bin, PlatformConfig::VARS);
    tidewell_testkit::assert_behaves_like_a_tool(
        bin,
        tidewell_observability::TelemetryConfig::VARS,
    );
    // A bad variable: its name, what it expects and where the list is; exit 1.
    let out = std::process::Command::new(bin)
        .env("GATEWAY_ADDR", "port 8080")
        .env("TIDEWELL_LOG_FORMAT", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GATEWAY_ADDR")
            && err.contains("127.0.0.1:8080")
            && err.contains("tidewell-platform --help"),
        "{err}"
    );
    // The gateway's address taken: which address, and what to do.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = std::env::temp_dir().join(unique_name("platform-cli"));
    let out = std::process::Command::new(bin)
        .env("GATEWAY_ADDR", taken.local_addr().unwrap().to_string())
        .env("TIDEWELL_DATA_DIR", &data)
        .env("TIDEWELL_LOG_FORMAT", "off")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {}", taken.local_addr().unwrap()))
            && err.contains("set GATEWAY_ADDR"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_limit_spares_signed_in_requests_and_answers_429_in_the_error_shape() {
    let data = std::env::temp_dir().join(unique_name("demo-limits"));
    let platform = start(&data).await;
    let a = platform.addr;
    let email = format!("{}@example.com", unique_name("limits"));
    let (s, _, v) = call(
        a,
        "POST",
        "/api/auth/register",
        None,
        Some(json!({"email": email, "password": "a sound password 42", "name": "L"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let login = json!({"email": email, "password": "a sound password 42"});
    let (s, (_, cache_control), tokens) =
        call(a, "POST", "/api/auth/login", None, Some(login.clone())).await;
    assert_eq!(s, 200, "{tokens}");
    // A response carrying tokens may not be stored by any cache (RFC 6749 5.1).
    assert_eq!(cache_control.as_deref(), Some("no-store"));
    let token = tokens["access_token"].as_str().unwrap().to_owned();

    // Signed-in requests to /api/auth, many more than the credential limit: none limited.
    for _ in 0..30 {
        let (s, _, v) = call(a, "GET", "/api/auth/me", Some(&token), None).await;
        assert_eq!(s, 200, "{v}");
        let (s, _, v) = call(a, "GET", "/api/auth/devices", Some(&token), None).await;
        assert_eq!(s, 200, "{v}");
    }
    // Logins: the burst of 10 a minute (one spent above), then a 429. (A slow machine may earn a
    // token back meanwhile, one per 6 s: the count before the 429 is a lower bound.)
    let mut allowed = 0;
    let (s, (retry_after, _), v) = loop {
        let answer = call(a, "POST", "/api/auth/login", None, Some(login.clone())).await;
        if answer.0 != 200 || allowed == 20 {
            break answer;
        }
        allowed += 1;
    };
    assert!(allowed >= 9, "only {allowed} logins before {s}: {v}");
    assert_eq!(s, 429, "{v}");
    let wait: u64 = retry_after
        .expect("a 429 carries Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many requests")
    );
    assert!(
        v["error"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{v}"
    );
    // The limit is per endpoint; the signed-in user carries on.
    let (s, _, v) = call(a, "GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = call(
        a,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": tokens["refresh_token"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    platform.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_works_in_chromium_with_the_default_limits() {
    let playwright = repo_dir().join("session-sync/tests/e2e/node_modules/playwright-core");
    assert!(
        playwright.exists(),
        "{} is missing: run scripts/setup (or `npm ci --prefix session-sync/tests/e2e`)",
        playwright.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/setup (or `apt-get install chromium`)"
    );
    let data = std::env::temp_dir().join(unique_name("demo-page"));
    let platform = start(&data).await;
    let out = tokio::process::Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/demo/run.mjs"))
        .arg(format!("http://{}", platform.addr))
        .arg(&playwright)
        .output()
        .await
        .expect(
            "node is needed for the browser test: run scripts/setup (or apt-get install nodejs)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the demo page failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or_else(|| panic!("no result:\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(line).unwrap();
    assert_eq!(result["payment_live"], true, "{result}");
    assert_eq!(result["logout_across_tabs"], true, "{result}");
    assert_eq!(
        result["revoke_others_ms"].as_array().map(Vec::len),
        Some(2),
        "both tabs of the first device were signed out: {result}"
    );
    eprintln!("demo page: {result}");
    platform.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

/// `GET path` with `headers`: status, response headers, body as received.
async fn get_raw(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Bytes) {
    let mut req = Request::get(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_compressed_revalidated_and_under_a_content_security_policy() {
    let data = std::env::temp_dir().join(unique_name("demo-assets"));
    let platform = start(&data).await;
    let a = platform.addr;
    let (s, h, plain) = get_raw(a, "/pkg/tidewell_session_sync_bg.wasm", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/wasm");
    assert!(h.get("content-encoding").is_none());
    for (accept, encoding) in [("gzip", "gzip"), ("br", "br"), ("gzip, br", "br")] {
        let (s, h, packed) = get_raw(
            a,
            "/pkg/tidewell_session_sync_bg.wasm",
            &[("accept-encoding", accept)],
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(h["content-encoding"], encoding, "accept-encoding: {accept}");
        assert!(
            packed.len() < plain.len() / 2,
            "{encoding}: {} of {} bytes",
            packed.len(),
            plain.len()
        );
    }
    for path in ["/", "/app.js", "/app.css", "/pkg/tidewell_session_sync.js"] {
        let (s, h, _) = get_raw(a, path, &[]).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let etag = h["etag"].to_str().unwrap().to_owned();
        let (s, h, body) = get_raw(a, path, &[("if-none-match", &etag)]).await;
        assert_eq!(s, 304, "{path} with its ETag");
        assert!(body.is_empty());
        assert_eq!(h["etag"], etag.as_str());
        let (s, _, _) = get_raw(a, path, &[("if-none-match", "W/\"stale\"")]).await;
        assert_eq!(s, 200, "{path} with another ETag");
    }
    platform.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}
