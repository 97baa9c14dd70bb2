//! One test per rule of the header policy, and the error, streaming, upgrade and bad-input cases,
//! through a real proxy in front of a real upstream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use tidewell_proxy::{HostHeader, ProxyConfig, Route};

async fn proxy_to_upstream(route: impl FnOnce(Route) -> Route) -> std::net::SocketAddr {
    let up = start_upstream().await;
    let r = route(Route::new("/", &[&format!("http://{up}")]).unwrap());
    start_proxy(ProxyConfig::new().route(r)).await
}

async fn get(
    proxy: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let mut req = http::Request::get(format!("http://{proxy}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    client().request(req.body(empty()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn connection_named_fields_are_removed() {
    let proxy = proxy_to_upstream(|r| r).await;
    let res = get(
        proxy,
        "/echo",
        &[
            ("connection", "x-hop, keep-alive"),
            ("x-hop", "1"),
            ("x-end", "2"),
        ],
    )
    .await;
    let json = echo_json(res).await;
    assert!(seen(&json, "x-hop").is_empty());
    assert_eq!(seen(&json, "x-end"), ["2"]);
}

#[tokio::test]
async fn fixed_hop_by_hop_fields_are_removed() {
    let proxy = proxy_to_upstream(|r| r).await;
    let json = echo_json(
        get(
            proxy,
            "/echo",
            &[
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("upgrade", "h2c"),
            ],
        )
        .await,
    )
    .await;
    for h in ["keep-alive", "proxy-connection", "upgrade"] {
        assert!(seen(&json, h).is_empty(), "{h}");
    }
}

#[tokio::test]
async fn te_is_removed_but_trailers_kept() {
    let proxy = proxy_to_upstream(|r| r).await;
    let json = echo_json(get(proxy, "/echo", &[("te", "gzip")]).await).await;
    assert!(seen(&json, "te").is_empty());
    let json = echo_json(get(proxy, "/echo", &[("te", "trailers")]).await).await;
    assert_eq!(seen(&json, "te"), ["trailers"]);
}

#[tokio::test]
async fn transfer_encoding_is_not_forwarded_but_the_body_is() {
    let proxy = proxy_to_upstream(|r| r).await;
    let response = raw(
        proxy,
        b"POST /count HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with("11"),
        "chunked body arrived whole: {response}"
    );
}

#[tokio::test]
async fn via_is_added_both_ways() {
    let proxy = proxy_to_upstream(|r| r).await;
    let res = get(proxy, "/echo", &[("via", "1.1 edge")]).await;
    assert_eq!(
        res.headers().get_all("via").iter().collect::<Vec<_>>(),
        ["1.1 tidewell"]
    );
    let json = echo_json(res).await;
    assert_eq!(seen(&json, "via"), ["1.1 edge", "1.1 tidewell"]);
}

#[tokio::test]
async fn response_hop_by_hop_removed_and_set_cookie_never_merged() {
    let proxy = proxy_to_upstream(|r| r).await;
    let res = get(proxy, "/cookies", &[]).await;
    let cookies: Vec<_> = res.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);
    assert!(!res.headers().contains_key("x-upstream-private"));
    assert!(!res.headers().contains_key("keep-alive"));
}

#[tokio::test]
async fn trailers_are_forwarded() {
    let proxy = proxy_to_upstream(|r| r).await;
    let res = get(proxy, "/trailers", &[("te", "trailers")]).await;
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "part1 part2");
}

#[tokio::test]
async fn forwarded_headers_and_untrusted_chain_replaced() {
    let proxy = proxy_to_upstream(|r| r).await;
    let json = echo_json(
        get(
            proxy,
            "/echo",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(seen(&json, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&json, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen(&json, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen(&json, "x-forwarded-host"), [proxy.to_string()]);
}

#[tokio::test]
async fn forwarded_chain_appended_from_a_trusted_proxy() {
    let up = start_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new()
            .route(Route::new("/", &[&format!("http://{up}")]).unwrap())
            .trust_proxies(&["127.0.0.0/8"])
            .unwrap(),
    )
    .await;
    let json = echo_json(get(proxy, "/echo", &[("x-forwarded-for", "7.7.7.7")]).await).await;
    assert_eq!(seen(&json, "x-forwarded-for"), ["7.7.7.7, 127.0.0.1"]);
    assert_eq!(seen(&json, "x-real-ip"), ["7.7.7.7"]);
}

#[tokio::test]
async fn host_preserved_or_rewritten() {
    let proxy = proxy_to_upstream(|r| r).await;
    let json = echo_json(get(proxy, "/echo", &[("host", "shop.test")]).await).await;
    assert_eq!(seen(&json, "host"), ["shop.test"]);

    let up = start_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new().route(
            Route::new("/", &[&format!("http://{up}")])
                .unwrap()
                .host_header(HostHeader::Upstream),
        ),
    )
    .await;
    let json = echo_json(get(proxy, "/echo", &[("host", "shop.test")]).await).await;
    assert_eq!(seen(&json, "host"), [up.to_string()]);
    assert_eq!(seen(&json, "x-forwarded-host"), ["shop.test"]);
}

#[tokio::test]
async fn expect_100_continue_is_honoured() {
    let proxy = proxy_to_upstream(|r| r).await;
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    s.write_all(b"POST /count HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    s.write_all(b"hello").await.unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).await.unwrap();
    assert!(rest.contains("200 OK") && rest.ends_with('5'), "{rest}");
}

#[tokio::test]
async fn routes_rewrite_and_first_match_wins() {
    let a = start_upstream().await;
    let b = start_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new()
            .route(
                Route::new("/api/users", &[&format!("http://{a}")])
                    .unwrap()
                    .rewrite("/v2/people"),
            )
            .route(
                Route::new("/api", &[&format!("http://{b}")])
                    .unwrap()
                    .rewrite(""),
            ),
    )
    .await;
    let json = echo_json(get(proxy, "/api/users/7?x=1", &[]).await).await;
    assert_eq!(json["path"], "/v2/people/7");
    assert_eq!(json["query"], "x=1");
    let json = echo_json(get(proxy, "/api/orders", &[]).await).await;
    assert_eq!(json["path"], "/orders");
    let res = get(proxy, "/other", &[]).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn request_id_forwarded_and_echoed() {
    let proxy = proxy_to_upstream(|r| r).await;
    let res = get(proxy, "/echo", &[("x-request-id", "req-123")]).await;
    assert_eq!(res.headers()["x-correlation-id"], "req-123");
    let json = echo_json(res).await;
    assert_eq!(seen(&json, "x-request-id"), ["req-123"]);
    let res = get(proxy, "/echo", &[]).await;
    let made = res.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "a UUID v7 is made");
    assert_eq!(seen(&echo_json(res).await, "x-request-id"), [made]);
}

#[tokio::test]
async fn security_headers_added_unless_set() {
    let proxy = proxy_to_upstream(|r| r).await;
    let res = get(proxy, "/echo", &[]).await;
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        res.headers()["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
}

#[tokio::test]
async fn dead_upstream_is_a_quick_502_with_the_request_id() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = start_proxy(
        ProxyConfig::new().route(Route::new("/", &[&format!("http://{dead}")]).unwrap()),
    )
    .await;
    let started = Instant::now();
    let res = get(proxy, "/x", &[("x-request-id", "dead-1")]).await;
    assert_eq!(res.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(2));
    let json = echo_json(res).await;
    assert_eq!(json["error"]["code"], "bad_gateway");
    assert_eq!(json["error"]["request_id"], "dead-1");
}

#[tokio::test]
async fn connect_failure_moves_to_the_next_upstream() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = start_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new()
            .route(Route::new("/", &[&format!("http://{dead}"), &format!("http://{up}")]).unwrap()),
    )
    .await;
    for _ in 0..6 {
        assert_eq!(get(proxy, "/echo", &[]).await.status(), 200);
    }
}

#[tokio::test]
async fn slow_upstream_is_a_504_within_the_timeout() {
    let proxy = proxy_to_upstream(|r| r.timeout(Duration::from_millis(300))).await;
    let started = Instant::now();
    let res = get(proxy, "/slow", &[]).await;
    assert_eq!(res.status(), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(echo_json(res).await["error"]["code"], "upstream_timeout");
}

/// `serve` reuses one 504 timer per connection: a slow request after quick ones on the same
/// connection still gets its own full timeout, neither cut short by an earlier request's deadline
/// nor left without one, and the connection goes on answering.
#[tokio::test]
async fn each_request_on_a_kept_alive_connection_gets_its_own_504_deadline() {
    let proxy = proxy_to_upstream(|r| r.timeout(Duration::from_millis(300))).await;
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = |path: &str| {
        http::Request::get(path)
            .header("host", "a")
            .body(empty())
            .unwrap()
    };
    for _ in 0..5 {
        let res = sender.send_request(request("/")).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    // The quick requests' deadlines pass while the slow one waits.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let res = sender.send_request(request("/slow")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), 504);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    res.into_body().collect().await.unwrap();
    // Twice more: after a timeout fired, and once more after that.
    for _ in 0..2 {
        let started = Instant::now();
        let res = sender.send_request(request("/slow")).await.unwrap();
        assert_eq!(res.status(), 504);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        res.into_body().collect().await.unwrap();
    }
    let res = sender.send_request(request("/")).await.unwrap();
    assert_eq!(res.status(), 200, "the connection still answers");
}

#[tokio::test]
async fn upstream_reset_mid_body_is_an_error_not_a_short_success() {
    let up = start_resetting_upstream().await;
    let proxy =
        start_proxy(ProxyConfig::new().route(Route::new("/", &[&format!("http://{up}")]).unwrap()))
            .await;
    let res = get(proxy, "/file", &[]).await;
    assert_eq!(res.status(), 200, "the head arrived");
    assert!(
        res.into_body().collect().await.is_err(),
        "the client sees the body fail"
    );
}

#[tokio::test]
async fn body_limit_is_413_upfront_and_mid_stream() {
    let proxy = proxy_to_upstream(|r| r.max_body(1000)).await;
    let res = client()
        .request(
            http::Request::post(format!("http://{proxy}/count"))
                .body(body(vec![0u8; 2000]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 413, "declared length over the limit");

    let response = raw(
        proxy,
        format!(
            "POST /count HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3e8\r\n{}\r\n3e8\r\n{}\r\n0\r\n\r\n",
            "a".repeat(1000),
            "b".repeat(1000)
        )
        .as_bytes(),
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 413"),
        "chunked body over the limit: {response}"
    );
}

/// An upstream may answer before it has read the request body (a 413 from a body limit). Its
/// connection is then still busy sending that body and must not serve the next request: before
/// the fix it went back to the pool, and the next request waited on it until its 504 (or, when
/// the upstream closed, failed with 502 "error writing a body to connection").
/// An upstream that answers 413 before it has read the body and then resets the connection:
/// the client gets the 413 every time, never a 502 (hyper fails the request on the write error
/// unless the proxy takes the rest of the body as sent and reads the answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_sent_before_a_reset_reaches_the_client() {
    let up = start_resetting_early_answerer().await;
    let proxy = start_proxy(
        ProxyConfig::new().route(
            Route::new("/", &[&format!("http://{up}")])
                .unwrap()
                .max_body(64 << 20),
        ),
    )
    .await;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..30 {
        let res = client()
            .request(
                http::Request::post(format!("http://{proxy}/upload"))
                    .body(body(vec![b'x'; 4 << 20]))
                    .unwrap(),
            )
            .await
            .unwrap();
        *statuses.entry(res.status().as_u16()).or_default() += 1;
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [413],
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_connection_answered_before_its_body_was_sent_is_not_reused() {
    let up = start_early_answering_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new().route(
            Route::new("/", &[&format!("http://{up}")])
                .unwrap()
                .timeout(Duration::from_secs(3)),
        ),
    )
    .await;
    // A slow upload: a first chunk, then nothing more (the body never ends while the test runs).
    let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
        hyper::body::Frame::data(bytes::Bytes::from(vec![0u8; 64 * 1024])),
    )])
    .chain(futures_util::stream::pending());
    let upload = http_body_util::StreamBody::new(chunks).boxed_unsync();
    let uploader = client();
    let res = uploader
        .request(
            http::Request::post(format!("http://{proxy}/upload"))
                .body(upload)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        413,
        "the upstream's early answer is passed on"
    );
    for i in 0..5 {
        let started = Instant::now();
        let res = get(proxy, "/after", &[]).await;
        assert_eq!(
            res.status(),
            200,
            "request {i} after the early answer, {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after() {
    let proxy = proxy_to_upstream(|r| r.rate_limit(1.0, 2)).await;
    assert_eq!(get(proxy, "/echo", &[]).await.status(), 200);
    assert_eq!(get(proxy, "/echo", &[]).await.status(), 200);
    let res = get(proxy, "/echo", &[]).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let proxy = proxy_to_upstream(|r| r).await;
    let (mut ws, res) = tokio_tungstenite::connect_async(format!("ws://{proxy}/ws"))
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    for i in 0..10 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn idle_upgraded_connections_are_closed() {
    use futures_util::StreamExt as _;
    let proxy = proxy_to_upstream(|r| r.upgrade_idle_timeout(Duration::from_millis(300))).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{proxy}/ws"))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next()).await;
    assert!(
        matches!(end, Ok(None | Some(Err(_)))),
        "closed after the idle timeout: {end:?}"
    );
}

#[tokio::test]
async fn bad_input_is_answered_never_a_panic() {
    let proxy = proxy_to_upstream(|r| r).await;
    let cases: &[(&[u8], &str)] = &[
        (b"GARBAGE\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nhost: a b\r\nconnection: close\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n", "400"),
        (
            b"POST /count HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello",
            "400",
        ),
    ];
    for (request, status) in cases {
        let response = raw(proxy, request).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{}: {response}",
            String::from_utf8_lossy(request)
        );
    }
    let big = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(70_000)
    );
    let response = raw(proxy, big.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    // The proxy still serves.
    assert_eq!(get(proxy, "/echo", &[]).await.status(), 200);
}

#[tokio::test]
async fn conflicting_lengths_cannot_smuggle_a_request() {
    let proxy = proxy_to_upstream(|r| r).await;
    // Content-Length says 5 bytes, chunked says an empty body followed by a second request.
    let response = raw(
        proxy,
        b"POST /count HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    // Framed by Transfer-Encoding alone (the upstream saw an empty body), and the connection is
    // closed after the answer (RFC 9112 6.3), so the trailing bytes are never read as a request.
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let first_body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        first_body.starts_with('0'),
        "the upstream saw an empty body: {response}"
    );
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
    assert!(!response.contains("smuggled"), "{response}");
}

#[tokio::test]
async fn h2c_upstream_and_http2_downstream() {
    let up = start_upstream().await;
    let proxy =
        start_proxy(ProxyConfig::new().route(Route::new("/", &[&format!("h2c://{up}")]).unwrap()))
            .await;
    let json = echo_json(get(proxy, "/echo", &[]).await).await;
    assert_eq!(json["version"], "HTTP/2.0", "the upstream spoke HTTP/2");

    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let res = h2
        .request(
            http::Request::get(format!("http://{proxy}/echo"))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
}

/// Reads until the connection closes (or `limit` passes); returns what came and when it closed.
async fn read_until_closed(
    s: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    use tokio::io::AsyncReadExt as _;
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), s.read(&mut buf)).await {
            Err(_) => return (out, None),
            Ok(Ok(0) | Err(_)) => return (out, Some(started.elapsed())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_request_head_slower_than_the_header_read_timeout_closes_the_connection() {
    use tokio::io::AsyncWriteExt as _;
    let up = start_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new()
            .route(Route::new("/", &[&format!("http://{up}")]).unwrap())
            .header_read_timeout(Duration::from_millis(400)),
    )
    .await;
    // Slowloris: the head arrives a few bytes at a time and never ends.
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for chunk in [
        &b"GET /hello HT"[..],
        b"TP/1.1\r\n",
        b"Host: a",
        b".test\r\n",
        b"X-A: 1\r\n",
    ] {
        if s.write_all(chunk).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (_, at) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed || at.is_some(), "the connection is closed");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "closed after the 400 ms timeout (plus at most a tick), not before: {elapsed:?}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt as _;
    let up = start_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new()
            .route(Route::new("/", &[&format!("http://{up}")]).unwrap())
            .header_read_timeout(Duration::from_millis(400)),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    // Requests 150 ms apart keep the connection: each head starts its own 400 ms.
    for _ in 0..4 {
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Then idle: closed after the timeout, without a response.
    let (bytes, at) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let at = at.expect("the idle connection is closed");
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(
        at >= Duration::from_millis(200) && at < Duration::from_secs(3),
        "closed about 400 ms after the last response: {at:?}"
    );
}

#[tokio::test]
async fn a_slow_response_is_not_cut_by_the_header_read_timeout() {
    let up = start_upstream().await;
    let proxy = start_proxy(
        ProxyConfig::new()
            .route(Route::new("/", &[&format!("http://{up}")]).unwrap())
            .header_read_timeout(Duration::from_millis(200)),
    )
    .await;
    let res = get(proxy, "/sleep/700", &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "slept");
}

#[test]
fn the_header_read_timeout_is_read_from_toml_and_checked() {
    let config = ProxyConfig::from_toml(
        "header_read_timeout = \"2s\"\n[[route]]\nprefix = \"/\"\nupstreams = [\"http://127.0.0.1:1\"]\n",
    )
    .unwrap();
    assert_eq!(config.header_read_timeout, Duration::from_secs(2));
    let err = ProxyConfig::from_toml(
        "header_read_timeout = \"0s\"\n[[route]]\nprefix = \"/\"\nupstreams = [\"http://127.0.0.1:1\"]\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("header_read_timeout"), "{err}");
}

/// A proxy served until `stop` is sent, draining for up to `drain`: its address, the sender and
/// the server's task.
async fn start_stoppable_proxy(
    drain: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let up = start_upstream().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = tidewell_proxy::Proxy::new(
        ProxyConfig::new().route(Route::new("/", &[&format!("http://{up}")]).unwrap()),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tidewell_proxy::serve(
        listener,
        proxy,
        async move {
            let _ = stopped.await;
        },
        drain,
    ));
    (addr, stop, server)
}

#[tokio::test]
async fn graceful_shutdown_closes_idle_connections_at_once() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (addr, stop, server) = start_stoppable_proxy(Duration::from_secs(30)).await;
    // Three keep-alive connections, each answered once and then left idle.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        idle.push(s);
    }
    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("idle connections do not hold the drain (it would wait 30 s)")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    for mut s in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the idle connection is closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without another response");
    }
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let (addr, stop, server) = start_stoppable_proxy(Duration::from_secs(5)).await;
    let in_flight = tokio::spawn(async move { get(addr, "/sleep/500", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let res = in_flight.await.unwrap();
    assert_eq!(res.status(), 200, "the in-flight request finished");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "slept");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once drained")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
