//! Checking what an operator sees: the metric names the shipped dashboards and alert rules use,
//! the names a scrape exposes, and `promtool check metrics` on a scrape.
#![allow(
    clippy::expect_used,
    reason = "a test kit: a missing promtool or an unreadable asset is the calling test's failure"
)]

use std::collections::{BTreeSet, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The shipped Grafana dashboards (`observability/dashboards`).
pub fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../observability/dashboards")
}

/// The shipped alert rules (`observability/alerts.yml`).
pub fn alerts_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../observability/alerts.yml")
}

/// The metric names a PromQL expression mentions: identifiers that start like a Tidewell,
/// HTTP or process metric (`tidewell_`, `http_`, `process_`).
pub fn referenced(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| {
            t.starts_with("http_") || t.starts_with("tidewell_") || t.starts_with("process_")
        })
        .map(str::to_owned)
        .collect()
}

/// Every panel query of every dashboard in `dir`: (file name, panel title, expression).
/// Panics on a file that is not a dashboard.
pub fn dashboard_queries(dir: &Path) -> Vec<(String, String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let dash: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        let field = |v: &serde_json::Value, k: &str| v.get(k).cloned().unwrap_or_default();
        for panel in field(&dash, "panels").as_array().into_iter().flatten() {
            let title = field(panel, "title")
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for t in field(panel, "targets").as_array().into_iter().flatten() {
                if let Some(expr) = field(t, "expr").as_str() {
                    out.push((name.clone(), title.clone(), expr.to_owned()));
                }
            }
        }
    }
    out
}

/// The `expr` of every rule in an alert rules file: (alert name, expression). A small reader
/// for the file's shape (`- alert: X` then `expr: |` and its indented lines, or `expr: ...`).
pub fn alert_queries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut alert = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert:") {
            alert = name.trim().to_owned();
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let rest = rest.trim();
            let expr = if rest == "|" || rest == ">" {
                let indent = line.len() - t.len();
                let mut body = Vec::new();
                while let Some(next) = lines.peek() {
                    let nt = next.trim_start();
                    if !nt.is_empty() && next.len() - nt.len() <= indent {
                        break;
                    }
                    body.push(nt.to_owned());
                    lines.next();
                }
                body.join("\n")
            } else {
                rest.to_owned()
            };
            out.push((alert.clone(), expr));
        }
    }
    out
}

/// The series names a scrape exposes: each family's name, and a histogram's `_bucket`, `_sum`
/// and `_count`.
pub fn series_names(scrape: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for line in scrape.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split(' ');
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// `promtool check metrics` on `scrape`: `Err` with what it said when it finds a problem.
/// Panics when promtool is not installed (`apt-get install prometheus`; `scripts/setup` does).
pub fn promtool_check(scrape: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (apt-get install prometheus; scripts/setup installs it)");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(scrape.as_bytes())
            .expect("promtool reads the scrape");
    }
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}
