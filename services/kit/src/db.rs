//! The service's database.

use sqlx::AnyPool;
use sqlx::migrate::Migrator;

/// A pool on `url` (`postgres://…`, or `sqlite:<file>?mode=rwc`, whose folder is created) with
/// `migrations` run.
pub async fn database(
    url: &str,
    migrations: &Migrator,
) -> Result<AnyPool, tidewell_event_hub::Error> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p))
        .filter(|p| !p.is_empty() && !p.starts_with(':'))
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| tidewell_event_hub::Error::Outbox {
            operation: "create the database folder",
            source: e.into(),
        })?;
    }
    let pool = tidewell_event_hub::outbox::connect(url).await?;
    migrations
        .run(&pool)
        .await
        .map_err(|e| tidewell_event_hub::Error::Outbox {
            operation: "run the service's migrations",
            source: e.into(),
        })?;
    Ok(pool)
}

/// Milliseconds since the Unix epoch: how the services store times (the same on both databases).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The transactional outbox on `db` (its table made), relayed to `hub` until `stop` (see
/// [`start_relay`]).
pub async fn start_outbox(
    db: &AnyPool,
    hub: tidewell_event_hub::Hub,
    stop: tokio_util::sync::CancellationToken,
) -> Result<tidewell_event_hub::outbox::Outbox, tidewell_event_hub::Error> {
    let outbox = tidewell_event_hub::outbox::Outbox::new(db.clone()).await?;
    start_relay(&outbox, hub, stop)?;
    Ok(outbox)
}

/// How long published outbox rows are kept (for an operator reading what went out).
const OUTBOX_KEEP: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Deletes `outbox` rows published more than 7 days ago, every `every` until `stop`
/// (housekeeping task `outbox`, reported by `ops`).
pub fn prune_outbox(
    ops: &crate::Ops,
    outbox: &tidewell_event_hub::outbox::Outbox,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let outbox = outbox.clone();
    ops.schedule("outbox", every, stop, move || {
        let outbox = outbox.clone();
        async move { outbox.prune(OUTBOX_KEEP).await.map_err(|e| e.to_string()) }
    });
}

/// Runs `outbox`'s relay to `hub` until `stop`: woken after each commit, polling every second
/// otherwise, backing off from 100 ms to 10 s after a failure.
pub fn start_relay(
    outbox: &tidewell_event_hub::outbox::Outbox,
    hub: tidewell_event_hub::Hub,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), tidewell_event_hub::Error> {
    let backoff = tidewell_core::Backoff::builder()
        .min(std::time::Duration::from_millis(100))
        .max(std::time::Duration::from_secs(10))
        .build()
        .map_err(tidewell_event_hub::Error::Config)?;
    outbox.spawn_relay(hub, std::time::Duration::from_secs(1), backoff, stop);
    Ok(())
}
