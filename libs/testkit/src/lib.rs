//! # tidewell-testkit
//!
//! Tests against the real services, made safe to run in parallel.
//!
//! - [`TestRabbit`], [`TestRedis`], [`TestDatabase`] connect to RabbitMQ, Redis and Postgres from
//!   `AMQP_URL`, `REDIS_URL` and `DATABASE_URL` (defaults: the local services), hand out names that
//!   no other test uses, and remove what they created when dropped.
//! - When a service is unreachable, the test fails with a message that names the service, the URL
//!   (password hidden) and the command that starts it; nothing is skipped.
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
mod names;
mod postgres;
mod rabbit;
mod redis_scope;
mod service;

pub use names::unique_name;
pub use postgres::TestDatabase;
pub use rabbit::TestRabbit;
pub use redis_scope::TestRedis;
pub use service::{Unavailable, amqp_url, database_url, redis_url};
