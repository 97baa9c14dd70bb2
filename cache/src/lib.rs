//! # tidewell-cache
//!
//! A tag-based cache on Redis: typed values with TTL, invalidation by tag in one write per tag
//! (tag versions, not sets of keys), single-flight loading against stampedes, stats, and an in-memory
//! backend with the same semantics.
//!
//! **Status:** this crate is reserved and has no public API yet. Its design and acceptance criteria are
//! tracked in issue #4; until that lands, depending on it brings in nothing. See the workspace
//! `ARCHITECTURE.md` for where it fits.
