//! # tidewell-event-hub
//!
//! Typed, versioned events over RabbitMQ (lapin): topology as code, pipelined publisher confirms,
//! retries with backoff through wait queues, dead-lettering with reasons, reconnect that re-declares
//! topology and re-subscribes consumers, and an in-memory backend with the same semantics.
//!
//! **Status:** this crate is reserved and has no public API yet. Its design and acceptance criteria are
//! tracked in issue #3; until that lands, depending on it brings in nothing. See the workspace
//! `ARCHITECTURE.md` for where it fits.
