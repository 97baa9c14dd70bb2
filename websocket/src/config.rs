//! Limits and timings of the WebSocket server.

use std::time::Duration;

use tidewell_core::config::Env;
use tidewell_core::tls::ClientTls;

use crate::Error;

/// What happens when a connection's outbound queue is full and an event for a room arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest queued frames until the new one fits (counted); the client recovers the
    /// gap with `since` if it cares.
    #[default]
    DropOldest,
    /// Replace a queued frame of the same room, so the client gets the newest state (for rooms
    /// whose events are snapshots: prices, counters); else drop the oldest.
    CoalesceByRoom,
    /// Close the connection with 4000 (slow consumer); the client reconnects and recovers.
    Disconnect,
}

/// The server's limits and timings. [`WsConfig::default`] gives the documented defaults;
/// [`WsConfig::from_env`] reads `TIDEWELL_WS_*` over them.
///
/// | variable | field | default |
/// |---|---|---|
/// | `TIDEWELL_WS_PING_INTERVAL` | `ping_interval` | `30s` |
/// | `TIDEWELL_WS_PONG_TIMEOUT` | `pong_timeout` | `10s` |
/// | `TIDEWELL_WS_MAX_MESSAGE` | `max_message` | `64KiB` |
/// | `TIDEWELL_WS_QUEUE_BYTES` | `queue_bytes` | `256KiB` |
/// | `TIDEWELL_WS_MAX_ROOMS` | `max_rooms` | `64` |
/// | `TIDEWELL_WS_HISTORY` | `history_len` | `256` |
/// | `TIDEWELL_WS_HISTORY_TTL` | `history_ttl` | `5m` |
/// | `TIDEWELL_WS_BACKPLANE_TLS_CA_FILE` | `backplane_tls.ca_file`: PEM CA certificates trusted for a `rediss://` backplane instead of the system's roots | unset |
/// | `TIDEWELL_WS_BACKPLANE_TLS_CERT_FILE` | `backplane_tls.cert_file`: PEM client certificate (mutual TLS) | unset |
/// | `TIDEWELL_WS_BACKPLANE_TLS_KEY_FILE` | `backplane_tls.key_file`: its PEM private key | unset |
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsConfig {
    /// A ping is sent this often.
    pub ping_interval: Duration,
    /// A connection whose pong is this late after a ping is closed (half-open TCP included).
    pub pong_timeout: Duration,
    /// Largest inbound message, in bytes; over it, close 1009.
    pub max_message: usize,
    /// Bytes of frames queued for one connection before the room's [`Overflow`] policy applies.
    pub queue_bytes: usize,
    /// Rooms one connection may be in (its own rooms included).
    pub max_rooms: usize,
    /// Inbound messages per second per connection (sustained), and the burst.
    pub inbound_per_second: f64,
    /// The burst of inbound messages.
    pub inbound_burst: u32,
    /// Events kept per room for recovery.
    pub history_len: usize,
    /// How long events are kept for recovery.
    pub history_ttl: Duration,
    /// Overflow policy per room kind (the part before `:`); rooms not listed use `default_overflow`.
    pub overflow: Vec<(String, Overflow)>,
    /// TLS for a `rediss://` backplane ([`WsServer::connect_backplane`](crate::WsServer::connect_backplane)).
    pub backplane_tls: ClientTls,
    /// Overflow policy for other rooms.
    pub default_overflow: Overflow,
    /// Rooms kinds (before `:`) that send presence (join/leave) frames.
    pub presence: Vec<String>,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            max_message: 64 * 1024,
            queue_bytes: 256 * 1024,
            max_rooms: 64,
            inbound_per_second: 20.0,
            inbound_burst: 40,
            history_len: 256,
            history_ttl: Duration::from_secs(300),
            overflow: Vec::new(),
            default_overflow: Overflow::DropOldest,
            presence: Vec::new(),
            backplane_tls: ClientTls::default(),
        }
    }
}

impl WsConfig {
    /// The defaults, overridden by the `TIDEWELL_WS_*` variables.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_source(&Env::process())
    }

    fn from_source(env: &Env) -> Result<Self, Error> {
        let e = |e: tidewell_core::Error| Error::Config(e.to_string());
        let d = Self::default();
        let usize_of = |v: Option<u64>, fallback: usize| {
            v.map_or(Ok(fallback), |v| {
                usize::try_from(v).map_err(|_| Error::Config(format!("{v} is too large")))
            })
        };
        let c = Self {
            ping_interval: env
                .duration("TIDEWELL_WS_PING_INTERVAL")
                .map_err(e)?
                .unwrap_or(d.ping_interval),
            pong_timeout: env
                .duration("TIDEWELL_WS_PONG_TIMEOUT")
                .map_err(e)?
                .unwrap_or(d.pong_timeout),
            max_message: usize_of(
                env.byte_size("TIDEWELL_WS_MAX_MESSAGE").map_err(e)?,
                d.max_message,
            )?,
            queue_bytes: usize_of(
                env.byte_size("TIDEWELL_WS_QUEUE_BYTES").map_err(e)?,
                d.queue_bytes,
            )?,
            max_rooms: env
                .parse("TIDEWELL_WS_MAX_ROOMS", "a number of rooms")
                .map_err(e)?
                .unwrap_or(d.max_rooms),
            history_len: env
                .parse("TIDEWELL_WS_HISTORY", "a number of events")
                .map_err(e)?
                .unwrap_or(d.history_len),
            history_ttl: env
                .duration("TIDEWELL_WS_HISTORY_TTL")
                .map_err(e)?
                .unwrap_or(d.history_ttl),
            backplane_tls: ClientTls::from_source(env, "TIDEWELL_WS_BACKPLANE").map_err(e)?,
            ..d
        };
        c.validate()?;
        Ok(c)
    }

    /// Sets the overflow policy for rooms of `kind` (`price` for `price:BTC`).
    #[must_use]
    pub fn overflow(mut self, kind: &str, policy: Overflow) -> Self {
        self.overflow.push((kind.to_owned(), policy));
        self
    }

    /// Turns presence frames on for rooms of `kind`.
    #[must_use]
    pub fn presence(mut self, kind: &str) -> Self {
        self.presence.push(kind.to_owned());
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.ping_interval.is_zero() || self.pong_timeout.is_zero() {
            return Err(Error::Config(
                "ping_interval and pong_timeout must be above zero".into(),
            ));
        }
        if self.max_message < 1024 || self.queue_bytes < self.max_message {
            return Err(Error::Config(format!(
                "max_message ({}) must be at least 1 KiB and queue_bytes ({}) at least max_message",
                self.max_message, self.queue_bytes
            )));
        }
        if !(self.inbound_per_second > 0.0 && self.inbound_per_second.is_finite())
            || self.inbound_burst == 0
        {
            return Err(Error::Config(
                "inbound_per_second must be above zero and inbound_burst at least 1".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn overflow_for(&self, room: &str) -> Overflow {
        let kind = room.split(':').next().unwrap_or(room);
        self.overflow
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(self.default_overflow, |(_, p)| *p)
    }

    pub(crate) fn presence_for(&self, room: &str) -> bool {
        let kind = room.split(':').next().unwrap_or(room);
        self.presence.iter().any(|k| k == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_bad_values_are_named() {
        let env = Env::from_pairs([
            ("TIDEWELL_WS_PING_INTERVAL", "5s"),
            ("TIDEWELL_WS_QUEUE_BYTES", "1MiB"),
        ]);
        let c = WsConfig::from_source(&env).unwrap();
        assert_eq!(c.ping_interval, Duration::from_secs(5));
        assert_eq!(c.queue_bytes, 1024 * 1024);
        let env = Env::from_pairs([("TIDEWELL_WS_PONG_TIMEOUT", "soon")]);
        let e = WsConfig::from_source(&env).unwrap_err().to_string();
        assert!(e.contains("TIDEWELL_WS_PONG_TIMEOUT"), "{e}");
    }

    #[test]
    fn policies_by_room_kind() {
        let c = WsConfig::default().overflow("price", Overflow::CoalesceByRoom);
        assert_eq!(c.overflow_for("price:BTC"), Overflow::CoalesceByRoom);
        assert_eq!(c.overflow_for("user:7"), Overflow::DropOldest);
    }
}
