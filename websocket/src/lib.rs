//! # tidewell-websocket
//!
//! Authenticated WebSocket rooms on tokio-tungstenite: JWT on upgrade, rooms, heartbeat,
//! byte-bounded outbound queues, a bridge from the event hub, and fan-out across many nodes.
//!
//! **Status:** this crate is reserved and has no public API yet. Its design and acceptance criteria are
//! tracked in issue #7; until that lands, depending on it brings in nothing. See the workspace
//! `ARCHITECTURE.md` for where it fits.
