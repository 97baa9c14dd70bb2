//! Session-sync benchmark: `cargo bench -p tidewell-session-sync --features server` after
//! `session-sync/scripts/build-pkg` and `npm ci --prefix session-sync/tests/e2e`.
//!
//! - `cross_tab_latency`: logout broadcast in tab A to the `onLogout` handler in tab B, median of
//!   100 runs in Debian's Chromium, against the same trip over a raw `BroadcastChannel`
//!   (`postMessage` to `onmessage`, nothing else): what our validation and dispatch add.
//! - `cross_tab_latency_local_storage`: the same over the `localStorage` fallback.
//! - `connections_per_browser`: the WebSocket connections the server holds for one browser with 5
//!   tabs, the shared mode against one connection per tab (the same page, `RealtimeClient`
//!   without `shared`).
//! - `handover_gap_ms`: closing the tab that holds the shared connection while 50 events/s flow,
//!   to the first event the other tabs get through the next holder, median of 20; against a tab
//!   on its own connection losing it under the same flow, to its first event after reconnecting
//!   (backoff 300–600 ms, the demo's), median of 20.
//! - `wasm_size`: the package's `.wasm`, gzip -9, against the `broadcast-channel` npm package's
//!   minified browser build (`dist/lib/browser.min.js`), gzip -9. Also `js_glue_size`, the
//!   generated JavaScript, gzip -9, which ships beside the `.wasm`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    missing_docs,
    reason = "benchmark"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

fn gzip_size(path: &Path) -> u64 {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .expect("gzip is needed");
    assert!(out.status.success(), "gzip {} failed", path.display());
    out.stdout.len() as u64
}

fn line(name: &str, ours: f64, baseline: f64, unit: &str) {
    println!(
        "bench: {name} ours={ours:.3} baseline={baseline:.3} ratio={:.3} unit={unit}",
        ours / baseline
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    support::preflight();
    let demo = support::start().await;
    let runs = 100;
    let ours = support::run(&demo, "logout", runs).await;
    let raw = support::run(&demo, "raw-channel", runs).await;
    let storage = support::run(&demo, "logout-local-storage", runs).await;
    println!("cross-tab logout over BroadcastChannel: {ours}");
    println!("raw BroadcastChannel: {raw}");
    println!("cross-tab logout over localStorage: {storage}");

    let shared = support::run(&demo, "shared-5", 1).await;
    let own = support::run(&demo, "own-5", 1).await;
    let handover = support::run(&demo, "handover-median", 20).await;
    let reconnect = support::run(&demo, "reconnect-median", 20).await;
    println!("5 tabs, shared: {shared}");
    println!("5 tabs, own connections: {own}");
    println!("hand-over: {handover}");
    println!("reconnect of an own connection: {reconnect}");

    let dir = support::crate_dir();
    let wasm = gzip_size(&dir.join("pkg/tidewell_session_sync_bg.wasm"));
    let glue = gzip_size(&dir.join("pkg/tidewell_session_sync.js"));
    let baseline =
        gzip_size(&dir.join("tests/e2e/node_modules/broadcast-channel/dist/lib/browser.min.js"));

    let ms = |v: &serde_json::Value| v["median_ms"].as_f64().unwrap();
    line("cross_tab_latency", ms(&ours), ms(&raw), "ms_median");
    line(
        "cross_tab_latency_local_storage",
        ms(&storage),
        ms(&raw),
        "ms_median",
    );
    let count = |v: &serde_json::Value| v["connections"].as_f64().unwrap();
    line(
        "connections_per_browser",
        count(&shared),
        count(&own),
        "connections",
    );
    line(
        "handover_gap_ms",
        ms(&handover),
        ms(&reconnect),
        "ms_median",
    );
    let kib = |b: u64| b as f64 / 1024.0;
    line("wasm_size", kib(wasm), kib(baseline), "KiB_gzip");
    line("js_glue_size", kib(glue), kib(baseline), "KiB_gzip");
}
