use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::service::{Service, Unavailable, cleanup_blocking, or_fail, reach, redis_url};
use crate::unique_name;

/// A connection to the real Redis and a key prefix one test owns.
///
/// Every key under [`TestRedis::prefix`] is deleted when the `TestRedis` drops.
#[derive(Debug)]
pub struct TestRedis {
    connection: MultiplexedConnection,
    url: String,
    prefix: String,
}

impl TestRedis {
    /// Connects to `REDIS_URL` (default `redis://127.0.0.1:6379`).
    ///
    /// # Panics
    /// When Redis is unreachable, with a message that says how to start it.
    pub async fn connect() -> Self {
        or_fail(Self::try_connect(&redis_url()).await)
    }

    /// Connects to `url`, or says why not.
    pub async fn try_connect(url: &str) -> Result<Self, Unavailable> {
        let connection = open(url).await?;
        Ok(Self {
            connection,
            url: url.to_owned(),
            prefix: unique_name("tw"),
        })
    }

    /// A clone of the multiplexed connection.
    pub fn connection(&self) -> MultiplexedConnection {
        self.connection.clone()
    }

    /// The Redis URL, to hand to code under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix this test owns (no trailing `:`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:<base>`.
    pub fn key(&self, base: &str) -> String {
        format!("{}:{base}", self.prefix)
    }
}

async fn open(url: &str) -> Result<MultiplexedConnection, Unavailable> {
    let client = redis::Client::open(url).map_err(|e| Unavailable::new(Service::Redis, url, e))?;
    let mut connection = reach(
        Service::Redis,
        url,
        client.get_multiplexed_async_connection(),
    )
    .await?;
    // A connection alone does not prove the server answers commands (it may be loading).
    reach(
        Service::Redis,
        url,
        redis::cmd("PING").query_async::<String>(&mut connection),
    )
    .await?;
    Ok(connection)
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        cleanup_blocking("Redis keys", async move {
            let mut connection = open(&url).await.map_err(|e| e.to_string())?;
            let keys: Vec<String> = {
                let mut iter = connection
                    .scan_match::<_, String>(&pattern)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut keys = Vec::new();
                while let Some(key) = iter.next_item().await {
                    keys.push(key.map_err(|e| e.to_string())?);
                }
                keys
            };
            for chunk in keys.chunks(500) {
                let _: u64 = connection.del(chunk).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    }
}
