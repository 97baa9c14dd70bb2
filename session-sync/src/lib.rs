//! # tidewell-session-sync
//!
//! Cross-tab session sync and device sessions for JavaScript front ends, compiled to WebAssembly
//! with wasm-bindgen: one tab refreshes a token and every tab follows; a revoked device logs out.
//!
//! **Status:** this crate is reserved and has no public API yet. Its design and acceptance criteria are
//! tracked in issue #8; until that lands, depending on it brings in nothing. See the workspace
//! `ARCHITECTURE.md` for where it fits.
