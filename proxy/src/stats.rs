//! What the proxy reports about its upstreams, for metrics.

use std::time::Instant;

use crate::state::ProxyState;

/// One upstream of one route, as it is now: read by [`Proxy::upstream_stats`](crate::Proxy::upstream_stats)
/// (for a metrics scrape, say).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpstreamStats {
    /// The route's path prefix.
    pub route: String,
    /// The upstream's authority (`host:port`).
    pub upstream: String,
    /// Requests on it now.
    pub in_flight: usize,
    /// Idle HTTP/1.1 connections pooled for it.
    pub idle_connections: usize,
    /// Whether it is ejected now (after connect failures) and gets no requests.
    pub ejected: bool,
    /// Connections opened to it since the proxy started.
    pub connections_opened: u64,
    /// Connection attempts (TCP connect or TLS handshake) that failed.
    pub connect_failures: u64,
}

pub(crate) fn upstream_stats(state: &ProxyState) -> Vec<UpstreamStats> {
    let now = Instant::now();
    (0..state.route_count())
        .filter_map(|i| state.route(i))
        .flat_map(|rs| {
            rs.upstreams().iter().map(move |u| {
                let (connections_opened, connect_failures) = u.pool.connects();
                UpstreamStats {
                    route: rs.route().prefix.clone(),
                    upstream: u.authority().to_owned(),
                    in_flight: u.in_flight(),
                    idle_connections: u.pool.idle_count(),
                    ejected: u.ejected(now),
                    connections_opened,
                    connect_failures,
                }
            })
        })
        .collect()
}
