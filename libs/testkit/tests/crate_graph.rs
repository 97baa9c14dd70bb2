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
    ("tidewell-service-kit", 3, SERVICE_KIT),
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
/// The services' kit: the published crates, and the test kit behind its test-support feature.
const SERVICE_KIT: &[&str] = &[
    "tidewell-core",
    "tidewell-protocol",
    "tidewell-auth",
    "tidewell-event-hub",
    "tidewell-cache",
    "tidewell-proxy",
    "tidewell-observability",
    "tidewell-websocket",
    "tidewell-session-sync",
    "tidewell-testkit",
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

/// The library crates whose sources the shape checks read (`src/` of each).
const LIBRARY_SOURCES: &[&str] = &[
    "libs/core",
    "libs/auth",
    "libs/protocol",
    "libs/testkit",
    "libs/tidewell",
    "event-hub",
    "cache",
    "proxy",
    "websocket",
    "observability",
    "session-sync",
];

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A source file's module path inside its crate (`server::upgrade` for `src/server/upgrade.rs`,
/// `""` for `lib.rs`).
fn module_of(src: &std::path::Path, file: &std::path::Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    let path = parts.join("::");
    if path == "lib" || path == "main" {
        String::new()
    } else {
        path
    }
}

/// The modules of its own crate that a file's code names (`crate::a::b`, `super::c`), outside
/// comments and its `#[cfg(test)] mod tests`.
fn modules_named(text: &str, this: &str, modules: &[String]) -> std::collections::BTreeSet<String> {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i]);
    // Code only: a doc comment's link to another module is not an import.
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut named = std::collections::BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let longest_module = |path: &str| {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        (1..=segments.len())
            .rev()
            .map(|k| segments[..k].join("::"))
            .find(|candidate| modules.contains(candidate))
    };
    for (prefix, base) in [
        ("crate::", String::new()),
        ("super::", {
            let mut parent: Vec<&str> = this.split("::").collect();
            parent.pop();
            parent.join("::")
        }),
    ] {
        for (at, _) in text.match_indices(prefix) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let rest: String = text[at + prefix.len()..]
                .chars()
                .take_while(|c| ident(*c))
                .collect();
            let full = if base.is_empty() {
                rest
            } else {
                format!("{base}::{rest}")
            };
            if let Some(m) = longest_module(&full)
                && m != this
            {
                named.insert(m);
            }
        }
    }
    named
}

#[test]
fn no_two_modules_of_a_library_import_each_other() {
    let mut cycles = Vec::new();
    for krate in LIBRARY_SOURCES {
        let src = workspace_root().join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: Vec<String> = files.iter().map(|f| module_of(&src, f)).collect();
        let edges: BTreeMap<String, std::collections::BTreeSet<String>> = files
            .iter()
            .zip(&modules)
            .map(|(file, module)| {
                let text = std::fs::read_to_string(file).unwrap();
                (module.clone(), modules_named(&text, module, &modules))
            })
            .collect();
        for (a, named) in &edges {
            for b in named {
                if a < b && edges.get(b).is_some_and(|back| back.contains(a)) {
                    cycles.push(format!("{krate}: {a} <-> {b}"));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other (give the shared part its own module):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_library_source_file_is_over_700_lines() {
    let mut long = Vec::new();
    for krate in LIBRARY_SOURCES {
        let mut files = Vec::new();
        rust_files(&workspace_root().join(krate).join("src"), &mut files);
        for file in files {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > 700 {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these by job (ARCHITECTURE.md's code map names the modules):\n{}",
        long.join("\n")
    );
}
