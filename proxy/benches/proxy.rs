//! Tidewell's proxy against nginx on the same machine, same upstream, same wrk load.
//!
//! Run: `cargo bench -p tidewell-proxy --bench proxy` (needs `wrk` and `nginx`: apt-get install wrk
//! nginx-light). The upstream is a hyper hello server on its own one-thread runtime; the proxy runs
//! on a current-thread runtime on its own thread (one event loop, as nginx's single worker process)
//! and nginx with one worker (keep-alive upstream pool, the same X-Forwarded-* headers), so each
//! proxy has one core. wrk: `-t1 -c32 -d3s --latency`, 7 rounds (direct, then the four forwarders
//! in alternating order); rounds with over 5% of the machine stolen by the hypervisor are dropped and
//! the figures are medians of the rest. `streaming_rss` is the peak RSS while curl downloads 1 GiB:
//! the whole bench process (proxy and upstream) against the nginx worker alone.
//!
//! A third forwarder, `hyper_floor_throughput`, is not a proxy: hyper's HTTP/1 server and client
//! and nothing else (one upstream connection per client connection, requests passed through
//! untouched). It is the most any proxy built on hyper can do here, measured against the same
//! nginx in the same rounds, so the distance between Tidewell and nginx splits into what Tidewell
//! adds (ours against the floor) and what hyper costs (the floor against nginx).
//! `hyper_policy_floor_throughput` is the same forwarder doing, in the cheapest way, only the
//! header edits the issue requires of every request (hop-by-hop scan, `Via` both ways, the four
//! `X-Forwarded-*`/`X-Real-IP` fields, one request id kept or made and echoed, three security
//! headers): the most a hyper-based proxy that follows the required policy can reach here.
//! `-- profile`, `-- profile-floor`, `-- profile-policy-floor` and `-- profile-nginx` run wrk
//! against one of them only, for a profiler.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use tidewell_proxy::{Proxy, ProxyConfig, Route};
use tidewell_testkit::bench::{Steal, calm_rounds, median};

mod support;
use support::Nginx;

/// Short alternating rounds: the machine's speed drifts over tens of seconds.
const ROUNDS: usize = 7;

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// The upstream: `/` says hello; `/big` streams 1 GiB.
fn start_upstream(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            if req.uri().path() == "/big" {
                                let chunk = Bytes::from(vec![0u8; 64 * 1024]);
                                let frames =
                                    futures_util::stream::iter((0..16_384).map(move |_| {
                                        Ok::<_, Infallible>(Frame::data(chunk.clone()))
                                    }));
                                return Ok::<_, Infallible>(http::Response::new(
                                    StreamBody::new(frames).boxed_unsync(),
                                ));
                            }
                            Ok(http::Response::new(
                                Full::new(Bytes::from_static(b"hello"))
                                    .map_err(|n| match n {})
                                    .boxed_unsync(),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    })
}

/// Tidewell's proxy on its own thread with a current-thread runtime: one event loop on one core,
/// as nginx's single worker process is.
fn start_ours(upstream: SocketAddr) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("tidewell".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let proxy = Proxy::new(
                    ProxyConfig::new().route(
                        Route::new("/", &[&format!("http://{upstream}")])
                            .unwrap()
                            .max_body(u64::MAX)
                            .timeout(Duration::from_secs(120)),
                    ),
                )
                .unwrap();
                tidewell_proxy::serve(
                    listener,
                    proxy,
                    std::future::pending::<()>(),
                    Duration::from_secs(1),
                )
                .await;
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

/// The floor on hyper: the least any proxy built on hyper's HTTP/1 server and client can do per
/// request. Each client connection gets one dedicated upstream connection (no pool, no lock
/// contention, no timer), and each request goes up and comes back untouched (no routing, no header
/// policy, no request id, no `Via`). Same runtime and thread layout as [`start_ours`]. If this
/// stays under nginx, so must any hyper-based proxy that does the work a proxy has to do.
///
/// With `policy`, the same forwarder also makes the header edits the issue requires of every
/// request, in the cheapest way there is and nothing else: a scan for hop-by-hop fields, `Via`
/// both ways, `X-Forwarded-For` / `X-Real-IP` (the peer's text made once per connection),
/// `X-Forwarded-Proto`, `X-Forwarded-Host`, one request id kept or made (UUID v7) and sent both
/// ways, and the three default security headers unless the upstream set them. Still no routing,
/// no pool, no 504 timer, no rate limiter, no tracing span: the floor of the required work.
fn start_hyper_floor(upstream: SocketAddr, name: &str, policy: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let (client, peer) = listener.accept().await.unwrap();
                    let _ = client.set_nodelay(true);
                    let peer = http::HeaderValue::from_str(&peer.ip().to_string()).unwrap();
                    tokio::spawn(async move {
                        let up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                        let _ = up.set_nodelay(true);
                        let (sender, conn) =
                            hyper::client::conn::http1::handshake::<_, hyper::body::Incoming>(
                                hyper_util::rt::TokioIo::new(up),
                            )
                            .await
                            .unwrap();
                        tokio::spawn(conn);
                        let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
                        let svc = hyper::service::service_fn(
                            move |mut req: http::Request<hyper::body::Incoming>| {
                                let sender = std::sync::Arc::clone(&sender);
                                let id = policy.then(|| policy_request(&mut req, &peer));
                                async move {
                                    let mut sender = sender.lock().await;
                                    sender.ready().await?;
                                    let mut res = sender.send_request(req).await?;
                                    if let Some(id) = id {
                                        policy_response(&mut res, id);
                                    }
                                    Ok::<_, hyper::Error>(res)
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(client), svc)
                            .await;
                    });
                }
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header;
    [
        header::CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        || name == "keep-alive"
        || name == "proxy-connection"
}

const VIA: http::HeaderValue = http::HeaderValue::from_static("1.1 tidewell");
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: http::HeaderName = tidewell_core::http::REQUEST_ID_HEADER;
const SECURITY: [(http::HeaderName, http::HeaderValue); 3] = [
    (
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    ),
    (
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    ),
    (
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("strict-origin-when-cross-origin"),
    ),
];

/// The policy floor's request edits (see [`start_hyper_floor`]); returns the request id.
fn policy_request(
    req: &mut http::Request<hyper::body::Incoming>,
    peer: &http::HeaderValue,
) -> http::HeaderValue {
    use http::header;
    let h = req.headers_mut();
    assert!(
        !h.keys().any(is_hop_by_hop),
        "wrk sends no hop-by-hop field"
    );
    let id = tidewell_core::correlation::correlation_header(h);
    h.append(header::VIA, VIA);
    h.insert(X_FORWARDED_FOR, peer.clone());
    h.insert(X_REAL_IP, peer.clone());
    h.insert(X_FORWARDED_PROTO, http::HeaderValue::from_static("http"));
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(X_FORWARDED_HOST, host);
    }
    h.insert(X_REQUEST_ID, id.clone());
    id
}

/// The policy floor's response edits (see [`start_hyper_floor`]).
fn policy_response(res: &mut http::Response<hyper::body::Incoming>, id: http::HeaderValue) {
    use http::header;
    let h = res.headers_mut();
    assert!(
        !h.keys().any(is_hop_by_hop),
        "the upstream sends no hop-by-hop field"
    );
    h.append(header::VIA, VIA);
    for (name, value) in SECURITY {
        h.entry(name).or_insert(value);
    }
    h.insert(X_REQUEST_ID, id);
}

/// nginx with one worker in front of `upstream`. With `same_headers`, it also sends what
/// Tidewell's proxy sends, so nothing differs on the wire: `Via` both ways, a request id (nginx's
/// own `$request_id`) upstream and back under both names, and the three security headers.
fn start_nginx(upstream: SocketAddr, same_headers: bool) -> Nginx {
    let extra = if same_headers {
        r#"
            proxy_set_header Via "1.1 nginx";
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Correlation-Id $request_id;
            add_header Via "1.1 nginx" always;
            add_header X-Frame-Options DENY always;
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy strict-origin-when-cross-origin always;
            add_header X-Request-Id $request_id always;
            add_header X-Correlation-Id $request_id always;"#
    } else {
        ""
    };
    let body = format!(
        r#"    upstream up {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{{port}};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_buffering off;{extra}
        }}
    }}"#
    );
    Nginx::start(&format!("plain-{same_headers}"), &body)
}

/// One wrk run: requests per second, p99 in ms, and the share of the machine the hypervisor
/// stole meanwhile.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    p99: f64,
    steal: f64,
}

fn measure(addr: SocketAddr) -> Run {
    let steal = Steal::start();
    let (rps, p99) = wrk(addr);
    Run {
        rps,
        p99,
        steal: steal.share(),
    }
}

/// (requests per second, p99 in ms).
fn wrk(addr: SocketAddr) -> (f64, f64) {
    let report = support::wrk(&format!("http://{addr}/"), &[]);
    let p99 = report
        .p99_ms
        .unwrap_or_else(|| panic!("no p99 in wrk output"));
    (report.rps, p99)
}

fn rss_of(pid: u32) -> u64 {
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

/// Downloads 1 GiB through `addr` with curl while sampling the RSS of `pid`; answers the peak,
/// in bytes.
fn stream_rss(addr: SocketAddr, pid: u32) -> u64 {
    let mut child = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &format!("http://{addr}/big")])
        .spawn()
        .expect("curl on PATH");
    let mut peak = rss_of(pid);
    loop {
        peak = peak.max(rss_of(pid));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}

fn nginx_worker(master: u32) -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &master.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    let up_rt = runtime("upstream");
    let upstream = start_upstream(&up_rt);
    let ours = start_ours(upstream);
    let floor = start_hyper_floor(upstream, "hyper-floor", false);
    let policy_floor = start_hyper_floor(upstream, "policy-floor", true);
    if std::env::args().any(|a| a == "profile-floor") {
        // `-- profile-floor`: only wrk against the bare hyper forwarder (thread `hyper-floor`).
        let (rps, _) = wrk(floor);
        eprintln!("  hyper floor {rps:.0} req/s");
        return;
    }
    if std::env::args().any(|a| a == "profile-policy-floor") {
        // `-- profile-policy-floor`: only wrk against the floor with the required header edits.
        let (rps, _) = wrk(policy_floor);
        eprintln!("  policy floor {rps:.0} req/s");
        return;
    }
    if std::env::args().any(|a| a == "profile") {
        // `-- profile`: only wrk against Tidewell's proxy, for a profiler (callgrind with
        // `--separate-threads=yes`: the proxy's thread is named `tidewell`).
        let (rps, _) = wrk(ours);
        eprintln!("  tidewell {rps:.0} req/s");
        return;
    }
    let nginx = start_nginx(upstream, false);
    let nginx_same = start_nginx(upstream, true);
    if std::env::args().any(|a| a == "profile-nginx") {
        // `-- profile-nginx`: only wrk against nginx (`strace -c -p` its worker for syscalls).
        let (rps, _) = wrk(nginx.addr);
        eprintln!("  nginx {rps:.0} req/s");
        return;
    }

    // Measured in each round: direct, ours, nginx, hyper floor, policy floor, nginx (same headers).
    let targets = [
        upstream,
        ours,
        nginx.addr,
        floor,
        policy_floor,
        nginx_same.addr,
    ];
    let mut rounds: Vec<[Run; 6]> = Vec::new();
    for round in 0..ROUNDS {
        // Direct first, then the forwarders in alternating order: none always runs right after
        // the direct measurement.
        let mut order: Vec<usize> = (1..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let direct = measure(upstream);
        let mut runs = [direct; 6];
        for i in order {
            runs[i] = measure(targets[i]);
        }
        let [direct, o, n, f, pf, ns] = runs;
        eprintln!(
            "  round {round}: direct {:.0} req/s p99 {:.2} ms; tidewell {:.0} req/s p99 {:.2} ms; nginx {:.0} req/s p99 {:.2} ms; hyper floor {:.0} req/s p99 {:.2} ms; policy floor {:.0} req/s; nginx same headers {:.0} req/s; stolen {:.0}%",
            direct.rps,
            direct.p99,
            o.rps,
            o.p99,
            n.rps,
            n.p99,
            f.rps,
            f.p99,
            pf.rps,
            ns.rps,
            100.0 * runs.iter().map(|r| r.steal).fold(0.0, f64::max)
        );
        rounds.push(runs);
    }
    // Rounds the hypervisor disturbed (over 5% of the machine stolen in any of the three runs)
    // are dropped; the figures are medians over the rest (each side's own median for req/s, the
    // median of each round's difference for the added p99).
    let stolen: Vec<f64> = rounds
        .iter()
        .map(|r| r.iter().map(|m| m.steal).fold(0.0, f64::max))
        .collect();
    let (keep, too_few) = calm_rounds(&stolen, 3);
    eprintln!(
        "  {} of {ROUNDS} rounds count{}",
        keep.len(),
        if too_few {
            " (too few had at most 5% stolen by the hypervisor: all of them)"
        } else {
            ""
        }
    );
    let kept = |f: &dyn Fn(&[Run; 6]) -> f64| keep.iter().map(|&i| f(&rounds[i])).collect();
    let ours_rps = median(kept(&|r| r[1].rps));
    let nginx_rps = median(kept(&|r| r[2].rps));
    let floor_rps = median(kept(&|r| r[3].rps));
    let policy_floor_rps = median(kept(&|r| r[4].rps));
    let nginx_same_rps = median(kept(&|r| r[5].rps));
    let added_ours = median(kept(&|r| r[1].p99 - r[0].p99));
    let added_nginx = median(kept(&|r| r[2].p99 - r[0].p99));
    let added_floor = median(kept(&|r| r[3].p99 - r[0].p99));
    // Peak RSS while 1 GiB streams: this whole process (proxy and upstream together) against the
    // nginx worker alone, so the comparison is tilted against Tidewell.
    let ours_rss = stream_rss(ours, std::process::id());
    let worker = nginx_worker(nginx.child.id()).expect("the nginx worker process");
    let nginx_rss = stream_rss(nginx.addr, worker);
    println!(
        "bench: proxy_throughput ours={ours_rps:.2} baseline={nginx_rps:.2} ratio={:.3} unit=req/s",
        ours_rps / nginx_rps
    );
    // The same comparison with nginx sending what Tidewell sends (informative: the goal is
    // against plain nginx, above).
    println!(
        "bench: proxy_throughput_same_headers ours={ours_rps:.2} baseline={nginx_same_rps:.2} ratio={:.3} unit=req/s",
        ours_rps / nginx_same_rps
    );
    // Not ours: the ceiling of any hyper-based proxy here, against the same nginx.
    println!(
        "bench: hyper_floor_throughput ours={floor_rps:.2} baseline={nginx_rps:.2} ratio={:.3} unit=req/s",
        floor_rps / nginx_rps
    );
    // Not ours either: the same floor doing only the header edits every request needs.
    println!(
        "bench: hyper_policy_floor_throughput ours={policy_floor_rps:.2} baseline={nginx_rps:.2} ratio={:.3} unit=req/s",
        policy_floor_rps / nginx_rps
    );
    println!(
        "bench: added_latency_p99 ours={added_ours:.3} baseline={added_nginx:.3} ratio={:.3} unit=ms",
        added_ours / added_nginx
    );
    println!(
        "bench: hyper_floor_added_latency_p99 ours={added_floor:.3} baseline={added_nginx:.3} ratio={:.3} unit=ms",
        added_floor / added_nginx
    );
    let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
    println!(
        "bench: streaming_rss ours={:.2} baseline={:.2} ratio={:.3} unit=MiB",
        mib(ours_rss),
        mib(nginx_rss),
        ours_rss as f64 / nginx_rss.max(1) as f64
    );
}
