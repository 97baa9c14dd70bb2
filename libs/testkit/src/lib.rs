//! # tidewell-testkit
//!
//! Tests against the real services, made safe to run in parallel.
//!
//! - [`TestRabbit`], [`TestRedis`], [`TestDatabase`] connect to RabbitMQ, Redis and Postgres from
//!   `AMQP_URL`, `REDIS_URL` and `DATABASE_URL` (defaults: the local services), hand out names that
//!   no other test uses, and remove what they created when dropped.
//! - When a service is unreachable, the test fails with a message that names the service, the URL
//!   (password hidden) and the command that starts it; nothing is skipped.
//! - [`otlp`]: an OTLP/HTTP receiver that keeps the spans a test exports.
//! - [`bench`](mod@bench): medians and the hypervisor's stolen share, for benchmarks on a shared machine.
//!
//! ```no_run
//! # async fn demo() {
//! let redis = tidewell_testkit::TestRedis::connect().await;
//! let key = redis.key("greeting"); // "tw-<unique>:greeting", deleted when `redis` drops
//! # }
//! ```
//!
//! This crate is for tests: its constructors panic with a clear message instead of returning
//! errors, so a test reads as one line per service.
#![allow(
    clippy::panic,
    reason = "a test kit fails the test by panicking with a clear message"
)]

pub mod bench;
pub mod cluster;
pub mod metrics;
mod names;
pub mod otlp;
mod own_redis;
mod postgres;
mod rabbit;
mod redis_scope;
mod service;
pub mod tls;

pub use names::unique_name;
pub use own_redis::OwnRedis;
pub use postgres::TestDatabase;
pub use rabbit::TestRabbit;
pub use redis_scope::TestRedis;
pub use service::{Unavailable, amqp_url, database_url, redis_url};

/// The environment variable names a source file reads: every string literal of capitals, digits
/// and underscores with an underscore inside (`"TIDEWELL_CACHE_URL"`, `"OTEL_SERVICE_NAME"`),
/// outside its `#[cfg(test)]` part. A configuration's test checks each is in its `VARS` list, so
/// `--help` cannot fall behind what `from_env` reads.
///
/// ```
/// let source = r#"let url = env.string("MY_APP_URL")?; let t = env.duration("MY_APP_TIMEOUT")?;"#;
/// let names = tidewell_testkit::env_vars_in(source);
/// assert_eq!(names.into_iter().collect::<Vec<_>>(), ["MY_APP_TIMEOUT", "MY_APP_URL"]);
/// ```
pub fn env_vars_in(source: &str) -> std::collections::BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut names = std::collections::BTreeSet::new();
    // Every `"` followed by a name and another `"`, wherever string literals start (no pairing
    // of quotes, which escapes and char literals would throw off).
    for (at, _) in code.match_indices('"') {
        let rest = &code[at + 1..];
        let len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..len];
        if rest[len..].starts_with('"')
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.contains('_')
            && !name.ends_with('_')
        {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Asserts that every variable [`env_vars_in`] finds in `source` is in `listed` (a
/// configuration's `VARS`), or is the prefix of listed ones (`"TIDEWELL_CACHE"` handed to
/// `ClientTls::from_source`, which reads `TIDEWELL_CACHE_TLS_*`).
///
/// # Panics
/// When one is missing, naming it.
pub fn assert_vars_listed(source: &str, listed: &[tidewell_core::cli::Var]) {
    let missing: Vec<String> = env_vars_in(source)
        .into_iter()
        .filter(|name| {
            !listed.iter().any(|v| {
                v.name == name
                    || v.name
                        .strip_prefix(name.as_str())
                        .is_some_and(|rest| rest.starts_with('_'))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "read by from_env but not in VARS (so --help does not show them): {missing:?}"
    );
}

/// Checks that the program at `bin` behaves like a tool: `--help` exits 0 and lists every
/// variable of `vars`, `--version` exits 0 with its version, and an unknown flag is a usage error
/// (exit 2) that points to `--help`. Neither starts a server (each must exit within 10 s).
///
/// # Panics
/// On the first of these that does not hold.
pub fn assert_behaves_like_a_tool(bin: &str, vars: &[tidewell_core::cli::Var]) {
    let run = |arg: &str| {
        let mut child = std::process::Command::new(bin)
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    panic!("{bin} {arg} did not exit: it must not start a server");
                }
            }
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{bin} {arg}: {e}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, help, err) = run("--help");
    assert_eq!(code, Some(0), "{bin} --help: {err}");
    for v in vars {
        assert!(
            help.contains(v.name),
            "{bin} --help does not list {}:\n{help}",
            v.name
        );
    }
    let (code, version, err) = run("--version");
    assert_eq!(code, Some(0), "{bin} --version: {err}");
    assert!(
        version.trim().ends_with(env!("CARGO_PKG_VERSION")),
        "{bin} --version printed {version:?}"
    );
    let (code, _, err) = run("--no-such-flag");
    assert_eq!(
        code,
        Some(2),
        "{bin} --no-such-flag must be a usage error: {err}"
    );
    assert!(err.contains("--help"), "{bin}'s usage error: {err}");
}

/// Runs the program at `bin` with `env` set (a `None` value removes the variable) and its logs
/// off (`TIDEWELL_LOG_FORMAT=off`), and checks that it stops with a start-up error for a person:
/// exit 1, a message that holds each of `expected`, says `<name>: error: ` and points to
/// `<name> --help`, and is no `Debug` dump (`Error: …` from a `main` that returned it). Answers
/// the message (stderr).
///
/// # Panics
/// On the first of these that does not hold.
pub fn assert_start_error(bin: &str, env: &[(&str, Option<&str>)], expected: &[&str]) -> String {
    let name = std::path::Path::new(bin)
        .file_name()
        .map_or_else(|| bin.to_owned(), |n| n.to_string_lossy().into_owned());
    let mut command = std::process::Command::new(bin);
    command
        .env("TIDEWELL_LOG_FORMAT", "off")
        .stdin(std::process::Stdio::null());
    for (var, value) in env {
        match value {
            Some(v) => command.env(var, v),
            None => command.env_remove(var),
        };
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{bin} with {env:?}: {err}");
    assert!(
        err.contains(&format!("{name}: error: ")) && err.contains(&format!("{name} --help")),
        "{bin} with {env:?} does not report for a person: {err}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("Error: ")),
        "a Debug dump: {err}"
    );
    for text in expected {
        assert!(
            err.contains(text),
            "{bin} with {env:?} does not say {text:?}: {err}"
        );
    }
    err
}
