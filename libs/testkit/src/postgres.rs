use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use crate::service::{Service, Unavailable, cleanup_blocking, database_url, or_fail, reach};
use crate::unique_name;

/// A fresh Postgres database for one test, dropped (with `FORCE`) when this value drops.
#[derive(Debug)]
pub struct TestDatabase {
    pool: PgPool,
    name: String,
    admin: PgConnectOptions,
    url: String,
}

impl TestDatabase {
    /// Creates a database on the server of `DATABASE_URL`
    /// (default `postgres://postgres:postgres@127.0.0.1:5432/postgres`).
    ///
    /// # Panics
    /// When Postgres is unreachable or refuses `CREATE DATABASE`, with a message that says what to do.
    pub async fn create() -> Self {
        or_fail(Self::try_create(&database_url()).await)
    }

    /// Creates a database on the server of `admin_url`, or says why not.
    pub async fn try_create(admin_url: &str) -> Result<Self, Unavailable> {
        let unavailable =
            |e: &dyn std::fmt::Display| Unavailable::new(Service::Postgres, admin_url, e);
        let admin: PgConnectOptions = admin_url.parse().map_err(|e| unavailable(&e))?;
        let name = unique_name("tw").replace('-', "_");
        let mut conn = reach(
            Service::Postgres,
            admin_url,
            PgConnection::connect_with(&admin),
        )
        .await?;
        // The name comes from `unique_name`: lowercase letters, digits and `_` only.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .map_err(|e| {
                unavailable(&format_args!(
                    "CREATE DATABASE failed: {e}; the user needs CREATEDB"
                ))
            })?;
        // ok to ignore: the admin connection is done either way
        let _ = conn.close().await;

        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = reach(
            Service::Postgres,
            admin_url,
            PgPoolOptions::new()
                .max_connections(5)
                .connect_with(options),
        )
        .await?;
        Ok(Self {
            pool,
            name,
            admin,
            url,
        })
    }

    /// A pool connected to the fresh database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL of the fresh database, to hand to code under test.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        cleanup_blocking("a Postgres test database", async move {
            let mut conn = PgConnection::connect_with(&admin)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
            conn.close().await.map_err(|e| e.to_string())
        });
    }
}
