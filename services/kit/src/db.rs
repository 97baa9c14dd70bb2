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
