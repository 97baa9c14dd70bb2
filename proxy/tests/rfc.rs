//! The proxy against the requirements RFC 9110 and RFC 9112 place on an intermediary, one row
//! per MUST or MUST NOT, each naming its clause, checked on raw bytes: the request as the
//! client wrote it, what the upstream read, and the response as the client read it. The proxy
//! README's header policy lists the requirements it does not meet and why.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start_proxy;
use tidewell_proxy::{ProxyConfig, Route};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What one exchange gave.
struct Outcome {
    /// The whole response as the client read it (until the proxy closed).
    response: String,
    /// The request as the upstream read it, if one reached it.
    upstream: Option<String>,
}

impl Outcome {
    fn status(&self) -> u16 {
        self.response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The values of `name` in the response head (the final one, after any 1xx).
    fn header(&self, name: &str) -> Vec<String> {
        values(final_head(&self.response), name)
    }

    /// The values of `name` the upstream saw.
    fn upstream_header(&self, name: &str) -> Vec<String> {
        values(head_of(self.upstream.as_deref().unwrap_or("")), name)
    }

    /// The response body, as sent (chunked framing included).
    fn body(&self) -> &str {
        let head = final_head(&self.response);
        let at = self.response.find(head).unwrap_or(0) + head.len();
        self.response.get(at..).unwrap_or("")
    }
}

fn head_of(message: &str) -> &str {
    message
        .find("\r\n\r\n")
        .map_or(message, |end| &message[..end + 4])
}

/// The last response head (a 1xx may come before it).
fn final_head(response: &str) -> &str {
    let mut rest = response;
    loop {
        let head = head_of(rest);
        if head.starts_with("HTTP/1.1 1") && head.len() < rest.len() {
            rest = &rest[head.len()..];
        } else {
            return head;
        }
    }
}

fn values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// An upstream that reads one request (head and body, by its framing), keeps it, and answers
/// `response` as raw bytes, then closes.
async fn start_upstream(response: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keep = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let keep = Arc::clone(&keep);
            tokio::spawn(async move {
                let request = read_request(&mut stream).await;
                if request.is_empty() {
                    return;
                }
                keep.lock().unwrap().push(request);
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest))
                    .await;
            });
        }
    });
    (addr, seen)
}

/// One request as the upstream reads it: the head, then a body framed by chunked coding or
/// Content-Length (or none).
async fn read_request(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0_u8; 8192];
    let complete = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        let Some(end) = text.find("\r\n\r\n") else {
            return false;
        };
        let head = &text[..end + 4];
        let body = &text[end + 4..];
        if !values(head, "transfer-encoding").is_empty() {
            body.starts_with("0\r\n\r\n")
                || body.contains("\r\n0\r\n") && body.ends_with("\r\n\r\n")
        } else {
            let len: usize = values(head, "content-length")
                .first()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.len() >= len
        }
    };
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !complete(&got) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the upstream waited 5 s for a whole request");
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `request` to a proxy in front of an upstream answering `response`; reads the whole
/// answer (every request here asks to close).
async fn exchange(request: &[u8], response: &'static [u8]) -> Outcome {
    let (up, seen) = start_upstream(response).await;
    let proxy =
        start_proxy(ProxyConfig::new().route(Route::new("/", &[&format!("http://{up}")]).unwrap()))
            .await;
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let upstream = seen.lock().unwrap().first().cloned();
    Outcome {
        response: String::from_utf8_lossy(&out).into_owned(),
        upstream,
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

type Check = fn(&Outcome) -> Result<(), String>;

struct Row {
    clause: &'static str,
    rule: &'static str,
    request: &'static [u8],
    response: &'static [u8],
    check: Check,
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn refused(o: &Outcome) -> Result<(), String> {
    ensure(o.status() == 400 && o.upstream.is_none(), || {
        format!("want a 400 and nothing forwarded; got {}", o.status())
    })
}

const ROWS: &[Row] = &[
    // Host and the request target.
    Row {
        clause: "RFC 9112 3.2",
        rule: "an HTTP/1.1 request without Host is answered 400",
        request: b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 3.2",
        rule: "a request with two Host fields is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 3.2",
        rule: "a Host whose port is not a number is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: a.test:abc\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 3.2",
        rule: "a Host whose port is over 65535 is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: a.test:99999\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 3.2 / RFC 9110 4.2.4",
        rule: "a Host with userinfo is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: user@a.test\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 3.2.2",
        rule: "an absolute-form target's authority replaces the received Host",
        request: b"GET http://a.test/path?q=1 HTTP/1.1\r\nhost: b.test\r\nconnection: close\r\n\r\n",
        response: OK,
        check: |o| {
            let up = o.upstream.as_deref().unwrap_or("");
            ensure(up.starts_with("GET /path?q=1 HTTP/1.1\r\n"), || format!("request line: {up}"))?;
            ensure(o.upstream_header("host") == ["a.test"], || format!("host: {up}"))?;
            ensure(o.upstream_header("x-forwarded-host") == ["a.test"], || {
                format!("x-forwarded-host: {up}")
            })
        },
    },
    // Request framing.
    Row {
        clause: "RFC 9112 6.3 (3)",
        rule: "a request with Transfer-Encoding and Content-Length is framed by the chunked coding, \
               forwarded without Content-Length, and its connection closed after the response",
        request: b"POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 50\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a.test\r\n\r\n",
        response: OK,
        check: |o| {
            let up = o.upstream.as_deref().unwrap_or("");
            ensure(o.status() == 200, || format!("status {}", o.status()))?;
            ensure(o.upstream_header("content-length").is_empty(), || format!("upstream: {up}"))?;
            ensure(up.contains("hello") && !up.contains("smuggled"), || format!("upstream: {up}"))?;
            ensure(o.response.matches("HTTP/1.1 ").count() == 1, || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9112 6.3 (5)",
        rule: "a request with differing Content-Length values is answered 400",
        request: b"POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello!",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 6.3 (5) / RFC 9110 8.6",
        rule: "a request whose Content-Length is not a number is answered 400",
        request: b"POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5a\r\nconnection: close\r\n\r\nhello",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 6.3 (4)",
        rule: "a request whose final transfer coding is not chunked is answered 400",
        request: b"POST / HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\nhello",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 7.1",
        rule: "a request with a malformed chunk is never forwarded as a whole request",
        request: b"POST / HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        response: OK,
        check: |o| {
            let up = o.upstream.as_deref().unwrap_or("");
            ensure(!up.contains("hello"), || format!("upstream: {up}"))?;
            ensure(o.status() != 200, || format!("status {}", o.status()))
        },
    },
    // Field syntax.
    Row {
        clause: "RFC 9112 5.1",
        rule: "whitespace between a field name and the colon is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nx-a : 1\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 5.2",
        rule: "obsolete line folding in a request is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nx-a: 1\r\n 2\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 2.2",
        rule: "a bare CR in a request head is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nx-a: 1\r2\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9110 5.5",
        rule: "a NUL in a field value is answered 400",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nx-a: 1\x002\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    Row {
        clause: "RFC 9112 3",
        rule: "a request line with an invalid method is answered 400",
        request: b"G(T / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: OK,
        check: refused,
    },
    // Connection and hop-by-hop fields.
    Row {
        clause: "RFC 9110 7.6.1",
        rule: "Connection and the request fields it names are not forwarded",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: x-hop, close\r\nx-hop: 1\r\nx-end: 2\r\n\r\n",
        response: OK,
        check: |o| {
            let up = o.upstream.as_deref().unwrap_or("");
            ensure(o.upstream_header("x-hop").is_empty(), || format!("upstream: {up}"))?;
            ensure(o.upstream_header("x-end") == ["2"], || format!("upstream: {up}"))?;
            ensure(
                o.upstream_header("connection")
                    .iter()
                    .all(|v| !v.contains("x-hop")),
                || format!("upstream: {up}"),
            )
        },
    },
    Row {
        clause: "RFC 9110 7.6.1",
        rule: "Keep-Alive, Proxy-Connection, TE (but trailers), Upgrade and Transfer-Encoding are \
               not forwarded",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nte: gzip\r\nupgrade: websocket\r\nconnection: close\r\n\r\n",
        response: OK,
        check: |o| {
            let up = o.upstream.as_deref().unwrap_or("");
            for name in ["keep-alive", "proxy-connection", "te", "upgrade", "transfer-encoding"] {
                ensure(o.upstream_header(name).is_empty(), || format!("{name} went up: {up}"))?;
            }
            Ok(())
        },
    },
    Row {
        clause: "RFC 9110 7.6.1",
        rule: "Connection and the response fields it names are not forwarded",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 200 OK\r\nconnection: x-up, close\r\nx-up: 1\r\nx-keep: 2\r\nkeep-alive: timeout=5\r\ncontent-length: 2\r\n\r\nok",
        check: |o| {
            ensure(o.header("x-up").is_empty(), || o.response.clone())?;
            ensure(o.header("keep-alive").is_empty(), || o.response.clone())?;
            ensure(o.header("x-keep") == ["2"], || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9110 7.8",
        rule: "Upgrade without Connection: upgrade is not treated as an upgrade",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nupgrade: websocket\r\nconnection: close\r\n\r\n",
        response: OK,
        check: |o| {
            ensure(o.status() == 200, || o.response.clone())?;
            ensure(o.upstream_header("upgrade").is_empty(), || {
                o.upstream.clone().unwrap_or_default()
            })
        },
    },
    // Via.
    Row {
        clause: "RFC 9110 7.6.3",
        rule: "Via is appended to a forwarded request with the received protocol version, after \
               the ones already there",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nvia: 1.1 first\r\nconnection: close\r\n\r\n",
        response: OK,
        check: |o| {
            let via = o.upstream_header("via").join(", ");
            ensure(via.starts_with("1.1 first, 1.1 "), || format!("via: {via}"))
        },
    },
    Row {
        clause: "RFC 9110 7.6.3",
        rule: "Via names HTTP/1.0 for a request received as HTTP/1.0",
        request: b"GET / HTTP/1.0\r\nhost: a.test\r\n\r\n",
        response: OK,
        check: |o| {
            let via = o.upstream_header("via").join(", ");
            ensure(via.starts_with("1.0 "), || format!("via: {via}"))
        },
    },
    Row {
        clause: "RFC 9110 7.6.3",
        rule: "Via is appended to a forwarded response",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 200 OK\r\nvia: 1.1 origin\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        check: |o| {
            let via = o.header("via").join(", ");
            ensure(via.starts_with("1.1 origin, 1.1 "), || format!("via: {via}"))
        },
    },
    // Response framing.
    Row {
        clause: "RFC 9112 6.3 (3) / 6.2",
        rule: "a response with Transfer-Encoding and Content-Length loses its Content-Length",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        check: |o| {
            ensure(o.header("content-length").is_empty(), || o.response.clone())?;
            ensure(o.body().contains("hello") && o.body().ends_with("0\r\n\r\n"), || {
                o.response.clone()
            })
        },
    },
    Row {
        clause: "RFC 9112 6.3 (1) / RFC 9110 9.3.2",
        rule: "a response to HEAD keeps its Content-Length and has no body",
        request: b"HEAD / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
        check: |o| {
            ensure(o.header("content-length") == ["5"], || o.response.clone())?;
            ensure(o.body().is_empty(), || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9112 6.3 (1) / RFC 9110 15.3.5",
        rule: "a 204 response has no body and no framing fields",
        request: b"DELETE / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
        check: |o| {
            ensure(o.status() == 204, || o.response.clone())?;
            ensure(o.header("transfer-encoding").is_empty(), || o.response.clone())?;
            ensure(o.body().is_empty(), || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9112 6.3 (8)",
        rule: "a response delimited by the upstream's close is relayed whole",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the upstream closes",
        check: |o| {
            ensure(o.body().contains("until the upstream closes"), || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9110 6.5 / 7.6.1",
        rule: "trailer fields of a chunked response reach a client that accepts them (TE: \
               trailers)",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nte: trailers\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\nconnection: close\r\n\r\n2\r\nok\r\n0\r\nx-sum: 7\r\n\r\n",
        check: |o| {
            ensure(o.upstream_header("te") == ["trailers"], || {
                o.upstream.clone().unwrap_or_default()
            })?;
            ensure(o.body().contains("x-sum: 7"), || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9110 15.2",
        rule: "a final response that follows an upstream's 1xx is relayed intact (the 1xx itself \
               is not: see the README)",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
        response: b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        check: |o| {
            ensure(o.status() == 200 && o.body() == "ok", || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9112 9.6",
        rule: "a request with Connection: close gets its response, then the connection closes",
        request: b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\nGET /second HTTP/1.1\r\nhost: a.test\r\n\r\n",
        response: OK,
        check: |o| {
            ensure(o.response.matches("HTTP/1.1 ").count() == 1, || o.response.clone())?;
            ensure(o.header("connection").iter().any(|v| v.eq_ignore_ascii_case("close")), || {
                o.response.clone()
            })
        },
    },
    Row {
        clause: "RFC 9110 7.6.2",
        rule: "OPTIONS with Max-Forwards: 0 is answered by the proxy, not forwarded",
        request: b"OPTIONS * HTTP/1.1\r\nhost: a.test\r\nmax-forwards: 0\r\nconnection: close\r\n\r\n",
        response: OK,
        check: |o| {
            ensure(o.upstream.is_none(), || o.upstream.clone().unwrap_or_default())?;
            ensure(o.status() == 200 || o.status() == 204, || o.response.clone())
        },
    },
    Row {
        clause: "RFC 9110 7.6.2",
        rule: "OPTIONS with Max-Forwards over 0 is forwarded with the value less one",
        request: b"OPTIONS /x HTTP/1.1\r\nhost: a.test\r\nmax-forwards: 3\r\nconnection: close\r\n\r\n",
        response: OK,
        check: |o| {
            ensure(o.upstream_header("max-forwards") == ["2"], || {
                o.upstream.clone().unwrap_or_default()
            })
        },
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_table_holds() {
    let mut failures = Vec::new();
    for row in ROWS {
        let outcome = exchange(row.request, row.response).await;
        if let Err(why) = (row.check)(&outcome) {
            failures.push(format!("{} — {}: {why}", row.clause, row.rule));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows fail:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

/// 100-continue: the client waits for `100 Continue` before sending its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    // RFC 9110 10.1.1: a client that sent Expect: 100-continue gets a 100 (or the final status)
    // before it must send the body.
    let (up, seen) = start_upstream(OK).await;
    let proxy =
        start_proxy(ProxyConfig::new().route(Route::new("/", &[&format!("http://{up}")]).unwrap()))
            .await;
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0_u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("a 100 Continue before the body")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
    s.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    let up = seen.lock().unwrap().first().cloned().unwrap();
    // The expectation goes on upstream with the request (RFC 9110 10.1.1 lets a proxy forward
    // it); the body follows it there at once.
    assert!(up.ends_with("\r\n\r\nhello"), "{up}");
}
