//! The audit writer: every consumed event becomes an audit row (once per event id), and the
//! first sight of a user event updates the users table.
//!
//! Events are written in batches by one task: the consumer's concurrent handler runs hand their
//! event to it and wait for its answer, so each is acknowledged only once its row is committed.
//! A batch is one multi-row `INSERT … ON CONFLICT DO NOTHING`, and, when it holds user events,
//! their effects, in one transaction: one round trip for a batch of payment events instead of
//! three per event. A batch that fails is retried one event at a time, so one bad event fails
//! alone.

use std::collections::HashSet;

use sqlx::{AnyPool, AssertSqlSafe, Row as _};
use tidewell_core::RawEnvelope;
use tidewell_service_kit::now_ms;
use tokio::sync::{mpsc, oneshot};

/// Events written in one statement at most.
const BATCH: usize = 64;

/// Why an event was not recorded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    /// The database refused or could not be reached.
    #[error("audit write failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The writer task is gone (the service is stopping).
    #[error("the audit writer stopped")]
    Stopped,
}

type Job = (RawEnvelope, oneshot::Sender<Result<(), AuditError>>);

/// Hands events to the writer task. Cheap to clone; the task ends when every clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on `db`.
    pub(crate) fn spawn(db: AnyPool) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Job>(BATCH * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let events: Vec<&RawEnvelope> = batch.iter().map(|(e, _)| e).collect();
                match record_batch(&db, &events).await {
                    Ok(()) => {
                        for (_, done) in batch.drain(..) {
                            let _ = done.send(Ok(()));
                        }
                    }
                    Err(error) => {
                        if batch.len() > 1 {
                            tracing::debug!(%error, "audit batch failed; writing its events one by one");
                        }
                        for (event, done) in batch.drain(..) {
                            let _ =
                                done.send(record_batch(&db, &[&event]).await.map_err(Into::into));
                        }
                    }
                }
            }
        });
        Self { jobs }
    }

    /// Records `event`; answers once its row is committed.
    pub(crate) async fn record(&self, event: RawEnvelope) -> Result<(), AuditError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send((event, done))
            .await
            .map_err(|_| AuditError::Stopped)?;
        answer.await.map_err(|_| AuditError::Stopped)?
    }
}

/// Whether an event of this type changes the users table (the first time it is seen).
fn touches_users(event_type: &str) -> bool {
    matches!(
        event_type,
        "auth.user.created" | "auth.user.updated" | "auth.user.login" | "auth.user.deleted"
    )
}

/// The audit rows of `events`, and the users-table effects of those seen for the first time, in
/// one transaction (one autocommitted statement when none touches users).
pub(crate) async fn record_batch(db: &AnyPool, events: &[&RawEnvelope]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let rows = (0..events.len())
        .map(|i| {
            let b = i * 7;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO audit_log (event_id, event_type, source, occurred_at, correlation_id, \
         payload, received_at) VALUES {rows} ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    );
    let mut insert = sqlx::query(AssertSqlSafe(sql));
    for e in events {
        insert = insert
            .bind(e.id().to_string())
            .bind(e.event_type().to_owned())
            .bind(e.source().to_owned())
            .bind(e.occurred_at().to_string())
            .bind(e.correlation_id().to_string())
            .bind(e.payload().to_string())
            .bind(now);
    }
    if !events.iter().any(|e| touches_users(e.event_type())) {
        insert.execute(db).await?;
        return Ok(());
    }
    let mut tx = db.begin().await?;
    let mut fresh = insert
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("event_id"))
        .collect::<Result<HashSet<_>, _>>()?;
    for e in events {
        // `remove`: an event twice in one batch has its effect once.
        if touches_users(e.event_type()) && fresh.remove(&e.id().to_string()) {
            apply(&mut tx, e, now).await?;
        }
    }
    tx.commit().await
}

/// A user event's effect on the users table.
async fn apply(tx: &mut sqlx::AnyConnection, e: &RawEnvelope, now: i64) -> Result<(), sqlx::Error> {
    let p = e.payload();
    let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
    let query = match e.event_type() {
        "auth.user.created" | "auth.user.updated" => sqlx::query(
            "INSERT INTO users (user_id, email, name, role, created_at, logins, deleted) \
             VALUES ($1, $2, $3, $4, $5, 0, 0) ON CONFLICT (user_id) DO UPDATE SET \
             email = excluded.email, name = excluded.name, \
             role = CASE WHEN excluded.role = '' THEN users.role ELSE excluded.role END",
        )
        .bind(text("user_id"))
        .bind(text("email"))
        .bind(text("name"))
        .bind(text("role"))
        .bind(now),
        "auth.user.login" => sqlx::query(
            "INSERT INTO users (user_id, email, name, role, created_at, last_login_at, \
             logins, deleted) VALUES ($1, '', '', '', $2, $2, 1, 0) \
             ON CONFLICT (user_id) DO UPDATE SET logins = users.logins + 1, \
             last_login_at = excluded.last_login_at",
        )
        .bind(text("user_id"))
        .bind(now),
        "auth.user.deleted" => sqlx::query(
            "INSERT INTO users (user_id, email, name, role, created_at, logins, deleted) \
             VALUES ($1, '', '', '', $2, 0, 1) ON CONFLICT (user_id) DO UPDATE SET deleted = 1",
        )
        .bind(text("user_id"))
        .bind(now),
        _ => return Ok(()),
    };
    query.execute(&mut *tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tidewell_service_kit::test_support::TestDb;

    use super::*;

    fn event(id: &str, event_type: &str, payload: serde_json::Value) -> RawEnvelope {
        let body = json!({
            "id": id, "type": event_type, "version": 1, "source": "test",
            "occurred_at": "2026-12-05T00:00:00Z", "correlation_id": id, "payload": payload,
        });
        RawEnvelope::parse(body.to_string().as_bytes()).unwrap()
    }

    async fn audit_rows(pool: &AnyPool) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
            .fetch_one(pool)
            .await
            .unwrap()
            .get("n")
    }

    /// A batch mixing payment and user events, with an event twice in it and one already
    /// recorded: one audit row per event id, each user effect once.
    async fn batch(postgres: bool) {
        let db = TestDb::new(postgres, "audit-batch").await;
        let pool = tidewell_service_kit::database(db.url(), &crate::MIGRATIONS)
            .await
            .unwrap();
        let ids: Vec<String> = (0..4).map(|_| uuid::Uuid::now_v7().to_string()).collect();
        let login = event(&ids[0], "auth.user.login", json!({"user_id": "u1"}));
        let created = event(
            &ids[1],
            "auth.user.created",
            json!({"user_id": "u1", "email": "a@example.com", "name": "A", "role": "user"}),
        );
        let paid = event(
            &ids[2],
            "payments.payment.created",
            json!({"payment_id": "p"}),
        );
        record_batch(&pool, &[&login]).await.unwrap();
        record_batch(&pool, &[&login, &created, &paid, &login, &created])
            .await
            .unwrap();
        // Only payment events: one statement, no transaction.
        let paid2 = event(
            &ids[3],
            "payments.payment.created",
            json!({"payment_id": "q"}),
        );
        record_batch(&pool, &[&paid2, &paid, &paid2]).await.unwrap();

        let n = audit_rows(&pool).await;
        assert_eq!(n, 4);
        let row = sqlx::query("SELECT email, logins FROM users WHERE user_id = 'u1'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("email"), "a@example.com");
        assert_eq!(row.get::<i64, _>("logins"), 1);
        pool.close().await;
    }

    #[tokio::test]
    async fn sqlite_batch_records_each_event_once() {
        batch(false).await;
    }

    #[tokio::test]
    async fn postgres_batch_records_each_event_once() {
        batch(true).await;
    }

    /// Many handler runs at once through the writer: every event recorded, each answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_are_batched_and_all_committed() {
        let db = TestDb::new(false, "audit-writer").await;
        let pool = tidewell_service_kit::database(db.url(), &crate::MIGRATIONS)
            .await
            .unwrap();
        let writer = Writer::spawn(pool.clone());
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..300 {
            let writer = writer.clone();
            let e = event(
                &uuid::Uuid::now_v7().to_string(),
                "payments.payment.created",
                json!({"payment_id": i}),
            );
            runs.spawn(async move { writer.record(e).await });
        }
        while let Some(r) = runs.join_next().await {
            r.unwrap().unwrap();
        }
        let n = audit_rows(&pool).await;
        assert_eq!(n, 300);
        pool.close().await;
    }
}
