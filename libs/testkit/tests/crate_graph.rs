//! The crate graph ARCHITECTURE.md draws, checked against `cargo metadata`: every normal
//! dependency between workspace crates points to a lower level and is one the map allows, and the
//! proxy builds without the OTLP exporter or reqwest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeMap;
use std::process::Command;

/// ARCHITECTURE.md's code map: each workspace crate, its level, and the workspace crates its
/// normal (and build) dependencies may name. Dev-dependencies are not checked: tests may use
/// anything.
const MAP: &[(&str, u8, &[&str])] = &[
    ("tidewell-core", 0, &[]),
    ("tidewell-protocol", 0, &[]),
    ("tidewell-auth", 0, &[]),
    ("tidewell-testkit", 1, &["tidewell-core"]),
    ("tidewell-event-hub", 1, &["tidewell-core"]),
    ("tidewell-cache", 1, &["tidewell-core"]),
    ("tidewell-proxy", 1, &["tidewell-core"]),
    ("tidewell-observability", 1, &["tidewell-core"]),
    (
        "tidewell-websocket",
        2,
        &[
            "tidewell-core",
            "tidewell-auth",
            "tidewell-protocol",
            "tidewell-event-hub",
        ],
    ),
    (
        "tidewell-session-sync",
        2,
        &[
            "tidewell-protocol",
            "tidewell-core",
            "tidewell-auth",
            "tidewell-event-hub",
        ],
    ),
    ("tidewell", 3, PUBLISHED),
    ("tidewell-service-kit", 3, PUBLISHED),
    ("tidewell-auth-service", 4, SERVICE),
    ("tidewell-payments-service", 4, SERVICE),
    ("tidewell-gateway", 4, SERVICE),
    ("tidewell-admin-service", 5, SERVICE_USING_AUTH),
    ("tidewell-profile-service", 5, SERVICE_USING_AUTH),
    ("tidewell-platform", 6, ANYTHING),
    ("tidewell-examples", 6, ANYTHING),
];

const PUBLISHED: &[&str] = &[
    "tidewell-core",
    "tidewell-protocol",
    "tidewell-auth",
    "tidewell-event-hub",
    "tidewell-cache",
    "tidewell-proxy",
    "tidewell-observability",
    "tidewell-websocket",
    "tidewell-session-sync",
];
const SERVICE: &[&str] = &[
    "tidewell-core",
    "tidewell-protocol",
    "tidewell-auth",
    "tidewell-event-hub",
    "tidewell-cache",
    "tidewell-proxy",
    "tidewell-observability",
    "tidewell-websocket",
    "tidewell-session-sync",
    "tidewell-service-kit",
];
const SERVICE_USING_AUTH: &[&str] = &[
    "tidewell-core",
    "tidewell-protocol",
    "tidewell-auth",
    "tidewell-event-hub",
    "tidewell-cache",
    "tidewell-proxy",
    "tidewell-observability",
    "tidewell-websocket",
    "tidewell-session-sync",
    "tidewell-service-kit",
    "tidewell-auth-service",
];
const ANYTHING: &[&str] = &["*"];

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each workspace crate and its normal and build dependencies on workspace crates.
fn workspace_edges() -> BTreeMap<String, Vec<String>> {
    let json = run(cargo().args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]));
    let meta: serde_json::Value = serde_json::from_str(&json).unwrap();
    let members: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|name| members.contains(name))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn dependencies_point_down_the_map() {
    let edges = workspace_edges();
    let entry = |name: &str| MAP.iter().find(|(n, ..)| *n == name);
    let mut wrong = Vec::new();
    for (krate, deps) in &edges {
        let Some((_, level, allowed)) = entry(krate) else {
            wrong.push(format!(
                "{krate} is not on the map: add it to ARCHITECTURE.md and to MAP here"
            ));
            continue;
        };
        for dep in deps {
            let dep_level = entry(dep).map_or(u8::MAX, |(_, l, _)| *l);
            if dep_level >= *level {
                wrong.push(format!(
                    "{krate} (level {level}) depends on {dep} (level {dep_level}): dependencies point down"
                ));
            }
            if !(allowed.contains(&"*") || allowed.contains(&dep.as_str())) {
                wrong.push(format!("{krate} may not use {dep}"));
            }
        }
    }
    for (name, ..) in MAP {
        if !edges.contains_key(*name) {
            wrong.push(format!("{name} is on the map but not in the workspace"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the crate graph drifted from ARCHITECTURE.md:\n{}",
        wrong.join("\n")
    );
}

/// What a crate compiles for its users (`cargo tree -e normal`), one package name per line.
fn normal_tree(krate: &str) -> Vec<String> {
    run(cargo().args([
        "tree",
        "--offline",
        "--locked",
        "-p",
        krate,
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]))
    .lines()
    .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
    .collect()
}

#[test]
fn the_proxy_builds_without_the_exporter_and_the_measured_crates_without_observability() {
    let proxy = normal_tree("tidewell-proxy");
    assert!(
        proxy.iter().any(|p| p == "hyper"),
        "the tree was read: {proxy:?}"
    );
    for banned in ["opentelemetry-otlp", "reqwest", "tidewell-observability"] {
        assert!(
            !proxy.iter().any(|p| p == banned),
            "tidewell-proxy pulls in {banned}"
        );
    }
    for measured in ["tidewell-event-hub", "tidewell-cache", "tidewell-websocket"] {
        let tree = normal_tree(measured);
        assert!(
            !tree
                .iter()
                .any(|p| p == "tidewell-observability" || p == "opentelemetry-otlp"),
            "{measured} pulls in the observability crate or the exporter"
        );
    }
}
