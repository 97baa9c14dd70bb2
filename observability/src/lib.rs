//! # tidewell-observability
//!
//! Metrics and correlation for Tidewell services.
//!
//! - [`init`]: the application's tracing stack: filtered human or JSON logs, OTLP/HTTP span export
//!   configured by the standard `OTEL_*` variables, W3C TraceContext + Baggage propagators, and a
//!   guard that flushes on drop. Libraries never call it. `https://` collectors need the `tls`
//!   feature (rustls with the system's roots and the `OTEL_EXPORTER_OTLP_CERTIFICATE` /
//!   `_CLIENT_CERTIFICATE` / `_CLIENT_KEY` files).
//! - [`MetricsRegistry`]: one Prometheus registry per service (optionally prefixed) and its
//!   `/metrics` response, mountable on any router.
//! - [`HttpMetrics`]: a tower layer for HTTP RED metrics labelled by route *template*, with a guard
//!   on the number of distinct routes.
//! - [`CorrelationLayer`] (from `tidewell_core::correlation`, re-exported): a tower layer that reads
//!   `x-correlation-id` / `x-request-id` (or makes a UUID v7), keeps it in the request's headers
//!   and span, and echoes it on the response.
//! - [`Carrier`] with [`inject_span`] / [`set_span_parent`]: W3C trace context through HTTP
//!   headers, AMQP headers (the event hub does it for you) and any other header map;
//!   [`record_error`] marks a span failed with an `exception` event, as every OTLP backend shows.
//!
//! The crates it measures do not depend on it, nor it on them: each registers its own metrics into
//! the registry it is given (`hub.metrics().register(registry.registry())`, and likewise for the
//! cache's `CacheMetrics` and the WebSocket server's `WsMetrics`).
//!
//! The crate also ships Grafana dashboards (`dashboards/*.json`: HTTP RED, event hub, cache, WebSocket) and
//! Prometheus alert rules (`alerts.yml`), checked by its tests against the metrics that exist.
//!
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod http_metrics;
mod otlp_tls;
mod registry;
mod telemetry;
#[cfg(feature = "tls")]
mod tls;

pub use error::Error;
pub use http_metrics::{
    DEFAULT_BUCKETS, HttpMetrics, HttpMetricsLayer, HttpMetricsService, MetricsFuture,
    OVERFLOW_ROUTE, UNMATCHED_ROUTE,
};
pub use otlp_tls::OtlpTls;
pub use registry::MetricsRegistry;
pub use telemetry::{LogFormat, OtlpEndpoint, TelemetryConfig, TelemetryGuard, init};
pub use tidewell_core::correlation::{
    CorrelationFuture, CorrelationLayer, CorrelationService, correlation_header, correlation_id_of,
};
pub use tidewell_core::http::{CORRELATION_HEADER, REQUEST_ID_HEADER};
pub use tidewell_core::propagation::{
    Carrier, TRACEPARENT, extract_traceparent, inject_span, inject_traceparent,
    is_valid_traceparent, record_error, set_span_parent,
};

/// Re-exported so that users build collectors with the same `prometheus` version, and name the
/// same OpenTelemetry API and `tracing` bridge as Tidewell (they break between 0.x releases).
pub use {opentelemetry, prometheus, tracing_opentelemetry};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
