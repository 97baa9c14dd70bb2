//! The proxy's upstream pools as metrics, read from the proxy at each scrape.

use tidewell_observability::prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tidewell_proxy::Proxy;
use tidewell_service_kit::Ops;

const LABELS: [&str; 2] = ["route", "upstream"];

/// Registers `tidewell_proxy_upstream_*` on `ops`, labelled by route prefix and upstream
/// authority (both from the configuration: bounded).
pub(crate) fn register(ops: &Ops, proxy: &Proxy) -> Result<(), tidewell_observability::Error> {
    let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &LABELS);
    let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &LABELS);
    let in_flight = gauge(
        "tidewell_proxy_upstream_in_flight",
        "Requests the proxy has on the upstream now.",
    )?;
    let idle = gauge(
        "tidewell_proxy_upstream_idle_connections",
        "Idle HTTP/1.1 connections the proxy pools for the upstream.",
    )?;
    let ejected = gauge(
        "tidewell_proxy_upstream_ejected",
        "1 while the upstream is ejected after connect failures (it gets no requests).",
    )?;
    let opened = counter(
        "tidewell_proxy_upstream_connections_opened_total",
        "Connections the proxy opened to the upstream.",
    )?;
    let failed = counter(
        "tidewell_proxy_upstream_connect_failures_total",
        "Connection attempts to the upstream that failed (TCP connect or TLS handshake).",
    )?;
    for metric in [&in_flight, &idle, &ejected] {
        ops.metrics().register(Box::new(metric.clone()))?;
    }
    for metric in [&opened, &failed] {
        ops.metrics().register(Box::new(metric.clone()))?;
    }
    let proxy = proxy.clone();
    let refresh = move || {
        for s in proxy.upstream_stats() {
            let labels = [s.route.as_str(), s.upstream.as_str()];
            let set = |g: &IntGaugeVec, v: usize| {
                g.with_label_values(&labels)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            };
            set(&in_flight, s.in_flight);
            set(&idle, s.idle_connections);
            set(&ejected, usize::from(s.ejected));
            // Counters move by what happened since the last scrape.
            let advance = |c: &IntCounterVec, total: u64| {
                let c = c.with_label_values(&labels);
                c.inc_by(total.saturating_sub(c.get()));
            };
            advance(&opened, s.connections_opened);
            advance(&failed, s.connect_failures);
        }
    };
    refresh();
    ops.before_scrape(move || {
        refresh();
        async {}
    });
    Ok(())
}
