//! The shipped dashboards and alert rules: valid, each alert tested and with a runbook, and the
//! dashboards referring only to metrics that exist.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewell_core::{Envelope, Event};
use tidewell_event_hub::{HandlerError, Hub, RetryPolicy, ServiceQueue, Subscription, Topology};
use tidewell_observability::{HttpMetrics, MetricsRegistry};
use tidewell_testkit::metrics::referenced;
use tower::{Layer, ServiceExt, service_fn};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u32,
}
impl Event for Ping {
    const TYPE: &'static str = "tests.ping.sent";
    const VERSION: u16 = 1;
}

/// Every metric name a Tidewell service exposes today (series names, so with a histogram's
/// `_bucket`, `_sum` and `_count`), from real registries that saw traffic.
async fn known_metrics() -> HashSet<String> {
    let registry = MetricsRegistry::new(None);
    let http = HttpMetrics::new(&registry)
        .unwrap()
        .layer()
        .layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        }));
    http.oneshot(http::Request::new(())).await.unwrap();

    let hub = Hub::builder("assets")
        .url("memory://")
        .topology(
            Topology::new().service(
                ServiceQueue::new("assets")
                    .bind("#")
                    .retry(RetryPolicy::none()),
            ),
        )
        .connect()
        .await
        .unwrap();
    hub.metrics().register(registry.registry()).unwrap();
    hub.subscribe(
        Subscription::new("assets.events"),
        |_: Envelope<Ping>| async { Err(HandlerError::permanent("no")) },
    )
    .await
    .unwrap();
    hub.publish(&hub.envelope(Ping { n: 1 })).await.unwrap();
    for _ in 0..200 {
        if hub.metrics().consumed("assets.events", "dead_lettered") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cache = tidewell_cache::Cache::builder()
        .url("memory://")
        .build()
        .await
        .unwrap();
    cache.metrics().register(registry.registry()).unwrap();
    let _ = cache
        .namespace("assets")
        .unwrap()
        .get::<u32>(&tidewell_cache::Key::from("k"))
        .await
        .unwrap();

    let ws = tidewell_websocket::WsServer::builder(tidewell_auth::Verifier::new(
        tidewell_auth::KeySet::from_keys([
            tidewell_auth::VerifyingKey::hs256("k1", &[7; 32]).unwrap()
        ]),
        "auth",
        "tidewell",
    ))
    .build()
    .unwrap();
    ws.metrics().register(registry.registry()).unwrap();

    let scrape = registry.render().unwrap().1;
    hub.shutdown(Duration::from_secs(1)).await.unwrap();
    tidewell_testkit::metrics::series_names(&scrape)
}

/// Families the reference services register (the service kit's database pools, the gateway's
/// upstream pools), not these crates: that they exist is checked against the live platform's
/// scrape, in `services/platform/tests/flow.rs`, with every other name.
const SERVICE_LAYER: [&str; 2] = ["tidewell_db_pool_", "tidewell_proxy_upstream_"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_parse_and_use_only_existing_metrics() {
    let known = known_metrics().await;
    let mut uids = HashSet::new();
    let dir = Path::new(ROOT).join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "HTTP, event hub, cache and WebSocket dashboards ship"
    );
    for file in files {
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        assert!(
            uids.insert(dash["uid"].as_str().unwrap().to_owned()),
            "unique uid in {}",
            file.display()
        );
        let panels = dash["panels"].as_array().unwrap();
        assert!(!panels.is_empty());
        for panel in panels {
            let targets = panel["targets"].as_array().unwrap();
            assert!(
                !targets.is_empty(),
                "{}: panel {} has no query",
                file.display(),
                panel["title"]
            );
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                let names = referenced(expr);
                assert!(!names.is_empty(), "{}: {expr}", file.display());
                for n in names {
                    assert!(
                        known.contains(&n) || SERVICE_LAYER.iter().any(|p| n.starts_with(p)),
                        "{}: {n} is not a metric Tidewell exposes",
                        file.display()
                    );
                }
            }
        }
    }
}

/// The rules are valid. (That every metric they use exists is checked against the live
/// platform's scrape, in `services/platform/tests/flow.rs`: some come from the service kit.)
#[test]
fn alert_rules_pass_promtool() {
    promtool(&["check", "rules", "alerts.yml"]);
}

/// Runs promtool in this crate's folder; fails the test with what it said unless it succeeds.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("promtool on PATH (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every alert has a `promtool test rules` unit test that passes, and a runbook in the
/// repository (its `runbook_url` names a file under `observability/runbooks/`).
#[test]
fn every_alert_has_a_passing_unit_test_and_a_runbook() {
    promtool(&["test", "rules", "alerts_test.yml"]);
    let rules = std::fs::read_to_string(Path::new(ROOT).join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(Path::new(ROOT).join("alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    let runbooks: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("runbook_url:"))
        .map(|u| u.trim().trim_matches('"'))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    assert_eq!(alerts.len(), runbooks.len(), "one runbook_url per alert");
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no unit test in alerts_test.yml"
        );
    }
    for url in runbooks {
        let file = url
            .split("/blob/main/")
            .nth(1)
            .unwrap_or_else(|| panic!("{url} is not a link into the repository"));
        let path = Path::new(ROOT).join("..").join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("runbook {}: {e}", path.display()));
        for part in ["## What it means", "## How to confirm", "## What to do"] {
            assert!(text.contains(part), "{}: no {part:?}", path.display());
        }
    }
}
