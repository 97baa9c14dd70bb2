//! # tidewell-observability
//!
//! Metrics and correlation for Tidewell services.
//!
//! - [`MetricsRegistry`]: one Prometheus registry per service (optionally prefixed) and its
//!   `/metrics` response, mountable on any router.
//! - [`HttpMetrics`]: a tower layer for HTTP RED metrics labelled by route *template*, with a guard
//!   on the number of distinct routes.
//! - [`CorrelationLayer`]: a tower layer that reads `x-correlation-id` / `x-request-id` (or makes a
//!   UUID v7), stores it in the request extensions and span, and echoes it on the response.
//! - [`Carrier`] with [`extract_traceparent`] / [`inject_traceparent`]: W3C trace context through
//!   HTTP headers (and any other header map).
//! - Adapters that register the event hub's and the cache's metrics (features `event-hub`,
//!   `cache`).
//!
//! The crate also ships Grafana dashboards (`dashboards/*.json`: HTTP RED, event hub, cache) and
//! Prometheus alert rules (`alerts.yml`), checked by its tests against the metrics that exist.
//!
//! **Status:** the OTLP tracing `init` and the overhead benchmark of issue #5 are not built yet;
//! libraries in the workspace emit `tracing` spans that any subscriber the application installs
//! will see.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adapters;
mod correlation;
mod error;
mod http_metrics;
mod propagation;
mod registry;

#[cfg(feature = "cache")]
pub use adapters::register_cache;
#[cfg(feature = "event-hub")]
pub use adapters::register_event_hub;
pub use correlation::{
    CORRELATION_HEADER, CorrelationFuture, CorrelationLayer, CorrelationService, REQUEST_ID_HEADER,
    correlation_id_of,
};
pub use error::Error;
pub use http_metrics::{
    DEFAULT_BUCKETS, HttpMetrics, HttpMetricsLayer, HttpMetricsService, MetricsFuture,
    OVERFLOW_ROUTE, UNMATCHED_ROUTE,
};
pub use propagation::{
    Carrier, TRACEPARENT, extract_traceparent, inject_traceparent, is_valid_traceparent,
};
pub use registry::MetricsRegistry;

/// Re-exported so that users build collectors with the same `prometheus` version.
pub use prometheus;
