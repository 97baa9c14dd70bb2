//! Registers the metrics other Tidewell crates expose, under their `tidewell_<area>_*` names.

#[cfg(any(feature = "event-hub", feature = "cache", feature = "websocket"))]
use crate::{Error, MetricsRegistry};

/// Registers an event hub's metrics (`tidewell_event_hub_*`).
#[cfg(feature = "event-hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "event-hub")))]
pub fn register_event_hub(
    registry: &MetricsRegistry,
    metrics: &tidewell_event_hub::HubMetrics,
) -> Result<(), Error> {
    metrics.register(registry.registry()).map_err(Error::from)
}

/// Registers a cache's metrics (`tidewell_cache_*`).
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub fn register_cache(
    registry: &MetricsRegistry,
    metrics: &tidewell_cache::CacheMetrics,
) -> Result<(), Error> {
    metrics.register(registry.registry()).map_err(Error::from)
}

/// Registers a WebSocket server's metrics (`tidewell_websocket_*`, read at scrape time).
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub fn register_websocket(
    registry: &MetricsRegistry,
    metrics: &tidewell_websocket::WsMetrics,
) -> Result<(), Error> {
    metrics.register(registry.registry()).map_err(Error::from)
}
