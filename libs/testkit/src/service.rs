use std::fmt;
use std::future::Future;
use std::time::Duration;

/// How long to wait for a service to answer before calling it unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `AMQP_URL`, or the local RabbitMQ.
pub fn amqp_url() -> String {
    env_or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// `REDIS_URL`, or the local Redis.
pub fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

/// `DATABASE_URL`, or the local Postgres.
pub fn database_url() -> String {
    env_or(
        "DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    )
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The services the kit knows, with how to start each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    RabbitMq,
    Redis,
    Postgres,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::RabbitMq => "RabbitMQ",
            Self::Redis => "Redis",
            Self::Postgres => "PostgreSQL",
        }
    }

    fn var(self) -> &'static str {
        match self {
            Self::RabbitMq => "AMQP_URL",
            Self::Redis => "REDIS_URL",
            Self::Postgres => "DATABASE_URL",
        }
    }

    fn start_command(self) -> &'static str {
        match self {
            Self::RabbitMq => "rabbitmq-server -detached && rabbitmqctl await_startup",
            Self::Redis => {
                "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
            }
            Self::Postgres => {
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            }
        }
    }
}

/// A service the test needs is not reachable. Its message says how to start it.
#[derive(Debug)]
pub struct Unavailable {
    service: Service,
    url: String,
    reason: String,
}

impl Unavailable {
    pub(crate) fn new(service: Service, url: &str, reason: impl fmt::Display) -> Self {
        Self {
            service,
            url: redact(url),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{name} is not reachable at {url}: {reason}\n\
             This test needs a real {name}. Start it with:\n    {cmd}\n\
             (`scripts/test` starts every installed service), or set {var} to a running {name}.",
            name = self.service.name(),
            url = self.url,
            reason = self.reason,
            cmd = self.service.start_command(),
            var = self.service.var(),
        )
    }
}

impl std::error::Error for Unavailable {}

/// The value, or a test failure that prints the [`Unavailable`] message.
pub(crate) fn or_fail<T>(result: Result<T, Unavailable>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{e}"),
    }
}

/// Runs a connect future with the kit's timeout, mapping failure to [`Unavailable`].
pub(crate) async fn reach<T, E: fmt::Display>(
    service: Service,
    url: &str,
    connect: impl Future<Output = Result<T, E>>,
) -> Result<T, Unavailable> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Unavailable::new(service, url, e)),
        Err(_) => Err(Unavailable::new(
            service,
            url,
            format_args!("no answer within {CONNECT_TIMEOUT:?}"),
        )),
    }
}

pub(crate) use tidewell_core::config::redact_url as redact;

/// Runs `cleanup` to completion on a fresh thread with its own runtime, so that `Drop` can clean up
/// whatever runtime (or none) the test used.
pub(crate) fn cleanup_blocking<F>(what: &'static str, cleanup: F)
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            tokio::time::timeout(CONNECT_TIMEOUT, cleanup)
                .await
                .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))?
        })
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report_leak(what, &e),
        Err(_) => report_leak(what, "the cleanup thread panicked"),
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the test's stderr is where a leaked resource must show"
)]
fn report_leak(what: &str, why: &str) {
    eprintln!("tidewell-testkit: could not remove {what}: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_service_url_and_command() {
        let e = Unavailable::new(
            Service::RabbitMq,
            "amqp://guest:secret@127.0.0.1:1/%2f",
            "refused",
        );
        let text = e.to_string();
        assert!(
            text.contains("RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:1/%2f: refused"),
            "{text}"
        );
        assert!(text.contains("rabbitmq-server -detached"), "{text}");
        assert!(text.contains("AMQP_URL"), "{text}");
        assert!(!text.contains("secret"));
    }
}
