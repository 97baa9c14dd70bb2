use std::sync::{Mutex, PoisonError};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};

use crate::service::{Service, Unavailable, amqp_url, cleanup_blocking, or_fail, reach};
use crate::unique_name;

/// A connection to the real RabbitMQ and the queue and exchange names one test owns.
///
/// Names from [`TestRabbit::queue`] and [`TestRabbit::exchange`] are unique to this test and are
/// deleted (with whatever they hold) when the `TestRabbit` drops.
#[derive(Debug)]
pub struct TestRabbit {
    connection: Connection,
    url: String,
    prefix: String,
    queues: Mutex<Vec<String>>,
    exchanges: Mutex<Vec<String>>,
}

impl TestRabbit {
    /// Connects to `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    ///
    /// # Panics
    /// When RabbitMQ is unreachable, with a message that says how to start it.
    pub async fn connect() -> Self {
        or_fail(Self::try_connect(&amqp_url()).await)
    }

    /// Connects to `url`, or says why not.
    pub async fn try_connect(url: &str) -> Result<Self, Unavailable> {
        let connection = open(url).await?;
        Ok(Self {
            connection,
            url: url.to_owned(),
            prefix: unique_name("tw"),
            queues: Mutex::new(Vec::new()),
            exchanges: Mutex::new(Vec::new()),
        })
    }

    /// The live connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The broker URL, to hand to code under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix of every name this test owns (for code under test that derives its own names).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A queue name for `base`, unique to this test; the queue is deleted on drop.
    pub fn queue(&self, base: &str) -> String {
        let name = format!("{}.{base}", self.prefix);
        lock(&self.queues).push(name.clone());
        name
    }

    /// Deletes `name` on drop too: a queue the code under test named from [`prefix`](Self::prefix).
    /// Panics if `name` does not start with this test's prefix (it would be another test's).
    pub fn own_queue(&self, name: &str) {
        assert!(
            name.starts_with(&self.prefix),
            "{name} is not under this test's prefix {}",
            self.prefix
        );
        let mut queues = lock(&self.queues);
        if !queues.iter().any(|q| q == name) {
            queues.push(name.to_owned());
        }
    }

    /// An exchange name for `base`, unique to this test; the exchange is deleted on drop.
    pub fn exchange(&self, base: &str) -> String {
        let name = format!("{}.{base}", self.prefix);
        lock(&self.exchanges).push(name.clone());
        name
    }
}

fn lock(names: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    names.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn open(url: &str) -> Result<Connection, Unavailable> {
    reach(
        Service::RabbitMq,
        url,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
}

impl Drop for TestRabbit {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut *lock(&self.queues));
        let exchanges = std::mem::take(&mut *lock(&self.exchanges));
        if queues.is_empty() && exchanges.is_empty() {
            return;
        }
        let url = self.url.clone();
        cleanup_blocking("RabbitMQ queues and exchanges", async move {
            let connection = open(&url).await.map_err(|e| e.to_string())?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            // Deleting a name that was never declared is not an error in RabbitMQ 3.x.
            for q in queues {
                channel
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|e| format!("queue {q}: {e}"))?;
            }
            for x in exchanges {
                channel
                    .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                    .await
                    .map_err(|e| format!("exchange {x}: {e}"))?;
            }
            connection
                .close(200, "testkit cleanup".into())
                .await
                .map_err(|e| e.to_string())
        });
    }
}
