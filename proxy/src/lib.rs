//! # tidewell-proxy
//!
//! A streaming HTTP reverse proxy on hyper, for the front door of a Tidewell deployment.
//!
//! - **Routes** ([`Route`], [`ProxyConfig`], from code or TOML): path prefix on segment boundaries,
//!   optional host and methods, first match wins in the order given; prefix rewrite or strip;
//!   several upstreams per route, round robin or least in flight, with passive health (an
//!   upstream is ejected after N consecutive connect failures, for a cool-down).
//! - **Streaming**: request and response bodies pass frame by frame (trailers included), never
//!   collected; a route's body limit answers 413 as soon as it is exceeded, even mid-stream.
//! - **RFC 9110 headers**: hop-by-hop fields removed (every field named in `Connection`, and
//!   `Keep-Alive`, `Proxy-Connection`, `TE` except `TE: trailers`, `Transfer-Encoding`, `Upgrade`
//!   except on an upgrade; `Trailer` is end to end in RFC 9110 and kept); `Via` added both ways; repeated fields (`Set-Cookie`) never
//!   merged; `X-Forwarded-For` appended when the peer is a trusted proxy and replaced otherwise,
//!   `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`; `Host` preserved or set to the upstream.
//! - **Upgrades**: a 101 from the upstream becomes a two-way tunnel with an idle timeout, closed on
//!   shutdown ([`Proxy::close_tunnels`]; [`serve`] calls it).
//! - **Request smuggling**: a request with both `Content-Length` and `Transfer-Encoding` is framed
//!   by `Transfer-Encoding` alone (hyper drops the `Content-Length`, RFC 9112 6.3) and re-framed
//!   upstream, so the upstream never sees the ambiguity; duplicate differing `Content-Length`,
//!   malformed heads and bad `Host` are 400, oversized heads 431.
//! - **Errors**: connect failure 502, no response head in time 504, each with a JSON body carrying
//!   the request id. A request is tried on another upstream only when that is safe: after a
//!   failure where nothing of the request was sent (connect failure, a pooled connection found
//!   closed), streamed body included since it was never read; never after any of it went out;
//!   and within a per-route retry budget (retries at most a fifth of the route's requests, plus
//!   ten saved up) so a failing fleet is not hit by a retry storm. Idle upstream connections are
//!   reused for 4 s at most (below common upstream keep-alive timeouts, e.g. Node's 5 s).
//! - **Gateway layers**: per-client token-bucket rate limits per route (429 + `Retry-After`),
//!   security response headers, request id forwarded upstream (`x-request-id`) and echoed.
//!
//! Use it as a `tower::Service` ([`Proxy`], e.g. under axum) or serve it directly with [`serve`]
//! (HTTP/1.1 and HTTP/2 downstream, graceful drain). Upstreams speak HTTP/1.1 (`http://`) or
//! HTTP/2 cleartext (`h2c://`).
//!
//! ```
//! use tidewell_proxy::{Proxy, ProxyConfig, Route};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_proxy::Error> {
//! let config = ProxyConfig::new()
//!     .route(Route::new("/api/users", &["http://127.0.0.1:3001"])?.rewrite("/users"))
//!     .route(Route::new("/", &["http://127.0.0.1:3000"])?)
//!     .trust_proxies(&["10.0.0.0/8"])?;
//! let proxy = Proxy::new(config)?;
//! # let _ = proxy; Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod error;
mod forward;
mod headers;
mod limit;
mod pool;
mod request;
mod response;
mod server;
mod service;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod shared_limit;
mod state;
mod stats;
mod tunnel;
mod upstream;
mod upstream_io;

pub use body::{BoxError, ProxyBody};
pub use config::{Balance, HostHeader, ProxyConfig, RateLimit, Route, SecurityHeaders};
pub use error::Error;
pub use request::ClientAddr;
pub use server::{serve, serve_redirect, serve_tls};
pub use service::Proxy;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use shared_limit::SharedLimits;
pub use stats::UpstreamStats;
/// The request id header the proxy keeps or makes, sends upstream and echoes (`x-request-id`).
pub use tidewell_core::http::REQUEST_ID_HEADER;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
