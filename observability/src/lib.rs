//! # tidewell-observability
//!
//! Observability for Tidewell applications: the tracing subscriber stack with OTLP export,
//! Prometheus metrics with bounded labels, and correlation ids carried across HTTP, AMQP and WebSocket.
//!
//! **Status:** this crate is reserved and has no public API yet. Its design and acceptance criteria are
//! tracked in issue #5; until that lands, depending on it brings in nothing. See the workspace
//! `ARCHITECTURE.md` for where it fits.
