//! Prometheus metrics of a [`WsServer`], read from its counters at scrape time (nothing is
//! recorded on the hot path).

use prometheus::core::{Collector, Desc, Describer as _};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Opts};

use crate::server::WsServer;

/// The server's metrics under `tidewell_websocket_*`: register them with
/// [`WsMetrics::register`] (the registry of `tidewell_observability::MetricsRegistry::registry`, say).
///
/// | metric | kind |
/// |---|---|
/// | `tidewell_websocket_connections` | gauge: open connections |
/// | `tidewell_websocket_rooms` | gauge: rooms held |
/// | `tidewell_websocket_queued_bytes` | gauge: bytes waiting in connection queues |
/// | `tidewell_websocket_upgrades_rejected_total` | counter: 401s |
/// | `tidewell_websocket_events_delivered_total` | counter: event frames queued to connections |
/// | `tidewell_websocket_events_shed_total` | counter: frames dropped or coalesced by policy |
/// | `tidewell_websocket_slow_consumer_disconnects_total` | counter: 4000 closes |
/// | `tidewell_websocket_heartbeat_timeouts_total` | counter: 4004 closes |
#[derive(Clone, Debug)]
pub struct WsMetrics {
    server: WsServer,
    descs: Vec<Desc>,
}

const GAUGES: [(&str, &str); 3] = [
    (
        "tidewell_websocket_connections",
        "Open WebSocket connections.",
    ),
    (
        "tidewell_websocket_rooms",
        "Rooms held (with members or history).",
    ),
    (
        "tidewell_websocket_queued_bytes",
        "Bytes waiting in connection queues.",
    ),
];

const COUNTERS: [(&str, &str); 5] = [
    (
        "tidewell_websocket_upgrades_rejected_total",
        "Upgrades refused for a missing or invalid token.",
    ),
    (
        "tidewell_websocket_events_delivered_total",
        "Event frames queued to connections.",
    ),
    (
        "tidewell_websocket_events_shed_total",
        "Event frames dropped or coalesced because a connection's queue was full.",
    ),
    (
        "tidewell_websocket_slow_consumer_disconnects_total",
        "Connections closed as slow consumers (close code 4000).",
    ),
    (
        "tidewell_websocket_heartbeat_timeouts_total",
        "Connections closed for a missing pong (close code 4004).",
    ),
];

impl WsMetrics {
    pub(crate) fn new(server: WsServer) -> Self {
        let descs = GAUGES
            .iter()
            .chain(COUNTERS.iter())
            .filter_map(|(name, help)| Opts::new(*name, *help).describe().ok())
            .collect();
        Self { server, descs }
    }

    /// Registers the metrics with `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.clone()))
    }
}

impl Collector for WsMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = self.server.stats();
        let gauges = [s.connections, s.rooms, s.queued_bytes];
        let counters = [
            s.rejected,
            s.delivered,
            s.shed,
            s.slow_disconnects,
            s.heartbeat_timeouts,
        ];
        let mut out = Vec::new();
        for ((name, help), v) in GAUGES.iter().zip(gauges) {
            if let Ok(g) = IntGauge::new(*name, *help) {
                g.set(i64::try_from(v).unwrap_or(i64::MAX));
                out.extend(g.collect());
            }
        }
        for ((name, help), v) in COUNTERS.iter().zip(counters) {
            if let Ok(c) = IntCounter::new(*name, *help) {
                c.inc_by(v);
                out.extend(c.collect());
            }
        }
        out
    }
}
