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

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Value, json};
use support::DataDir;
use tidewell_platform::{Platform, PlatformConfig};
use tidewell_testkit::unique_name;

/// The platform on embedded defaults with the default rate limits, on a free port.
async fn start(data: &Path) -> Platform {
    let c = support::local_config(b"demo-page-secret-demo-page-secret!!", data);
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
    let req = support::request(addr, method, path, token, body.as_ref());
    let (status, headers, bytes) = support::send(addr, req).await;
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        (header("retry-after"), header("cache-control")),
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
    tidewell_testkit::assert_start_error(
        bin,
        &[("GATEWAY_ADDR", Some("port 8080"))],
        &["GATEWAY_ADDR", "127.0.0.1:8080"],
    );
    // The gateway's address taken: which address, and what to do.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let data = DataDir::new("platform-cli");
    let data = data.path().to_string_lossy();
    tidewell_testkit::assert_start_error(
        bin,
        &[
            ("GATEWAY_ADDR", Some(taken.as_str())),
            ("TIDEWELL_DATA_DIR", Some(&data)),
        ],
        &[&format!("cannot listen on {taken}"), "set GATEWAY_ADDR"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_limit_spares_signed_in_requests_and_answers_429_in_the_error_shape() {
    let data = DataDir::new("demo-limits");
    let platform = start(data.path()).await;
    let a = platform.addr;
    let email = format!("{}@example.com", unique_name("limits"));
    support::register(a, &email, "L").await;
    let login = json!({"email": email, "password": support::PASSWORD});
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
    let data = DataDir::new("demo-page");
    let platform = start(data.path()).await;
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
}

/// `GET path` with `headers`: status, response headers, body as received.
async fn get_raw(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> (u16, http::HeaderMap, Bytes) {
    let mut req = support::request(addr, "GET", path, None, None);
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    support::send(addr, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_compressed_revalidated_and_under_a_content_security_policy() {
    let data = DataDir::new("demo-assets");
    let platform = start(data.path()).await;
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
}
