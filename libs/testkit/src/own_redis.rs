//! A Redis server of one test's own, on a free port: a test may kill it and start it again
//! without disturbing any other test (the shared local Redis is [`TestRedis`](crate::TestRedis)).
#![allow(
    clippy::expect_used,
    reason = "a test kit: a server that cannot be started is the calling test's failure"
)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process started for one test (nothing saved to disk), stopped on drop.
///
/// ```no_run
/// let mut redis = tidewell_testkit::OwnRedis::start();
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.kill(); // the server is gone: clients see connection errors
/// redis.restart(); // the same port again, empty
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let mut r = Self { port, child: None };
        r.restart();
        r
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)), empty.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "own redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to end.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // ok to ignore: the process may have ended already
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
