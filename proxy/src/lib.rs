//! # tidewell-proxy
//!
//! A streaming HTTP reverse proxy on hyper: bodies are never buffered, hop-by-hop headers follow
//! RFC 9110, upstream failures map to 502 and 504, and routes carry rate limits.
//!
//! **Status:** this crate is reserved and has no public API yet. Its design and acceptance criteria are
//! tracked in issue #6; until that lands, depending on it brings in nothing. See the workspace
//! `ARCHITECTURE.md` for where it fits.
