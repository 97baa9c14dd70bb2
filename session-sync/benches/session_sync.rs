//! Session-sync benchmark: `cargo bench -p tidewell-session-sync --features server` after
//! `session-sync/scripts/build-pkg` and `npm ci --prefix session-sync/tests/e2e`.
//!
//! - `cross_tab_latency`: logout broadcast in tab A to the `onLogout` handler in tab B, median of
//!   100 runs in Debian's Chromium, against the same trip over a raw `BroadcastChannel`
//!   (`postMessage` to `onmessage`, nothing else): what our validation and dispatch add.
//! - `cross_tab_latency_local_storage`: the same over the `localStorage` fallback.
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
    let kib = |b: u64| b as f64 / 1024.0;
    line("wasm_size", kib(wasm), kib(baseline), "KiB_gzip");
    line("js_glue_size", kib(glue), kib(baseline), "KiB_gzip");
}
