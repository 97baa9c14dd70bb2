//! A route's upstreams: balancing and passive health (ejection after connect failures).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;

use crate::config::Balance;
use crate::pool::ConnPool;
use crate::upstream_io::UpstreamTls;

pub(crate) struct Upstream {
    pub(crate) base: Uri,
    /// `h2c://`: HTTP/2 over cleartext.
    pub(crate) h2c: bool,
    in_flight: AtomicUsize,
    failures: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
    pub(crate) pool: Arc<ConnPool>,
}

impl Upstream {
    /// The request target: origin form (`/path?q`) for HTTP/1.1, absolute (`http://host/path`)
    /// for HTTP/2, which carries scheme and authority as pseudo-headers.
    pub(crate) fn uri_for(
        &self,
        path_and_query: &http::uri::PathAndQuery,
    ) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        if self.h2c {
            parts.scheme = Some(http::uri::Scheme::HTTP);
            parts.authority = self.base.authority().cloned();
        }
        parts.path_and_query = Some(path_and_query.clone());
        Uri::from_parts(parts).map_err(http::Error::from)
    }

    pub(crate) fn authority(&self) -> &str {
        self.base.authority().map_or("", |a| a.as_str())
    }

    /// Requests on this upstream now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn ejected(&self, now: Instant) -> bool {
        self.ejected_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t > now)
    }
}

pub(crate) struct Upstreams {
    list: Vec<Upstream>,
    next: AtomicUsize,
    /// Set once an upstream is ejected (never cleared: after that, `pick` checks each one).
    ejections: AtomicBool,
    balance: Balance,
    eject_after: u32,
    eject_for: Duration,
}

/// Marks one request in flight on an upstream until dropped.
pub(crate) struct InFlight<'a>(pub(crate) &'a Upstream);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstreams {
    /// The upstreams at `bases`; `https://` ones connect with `tls` (the route's trust).
    pub(crate) fn new(
        bases: &[Uri],
        balance: Balance,
        eject_after: u32,
        eject_for: Duration,
        connect_timeout: Duration,
        tls: Option<&rustls::ClientConfig>,
    ) -> Result<Self, crate::Error> {
        let mut list = Vec::with_capacity(bases.len());
        for b in bases {
            let upstream_tls = match (b.scheme_str(), tls, b.host()) {
                (Some("https"), Some(config), Some(host)) => {
                    Some(UpstreamTls::new(config.clone(), host)?)
                }
                (Some("https"), _, _) => {
                    return Err(crate::Error::Config(format!(
                        "upstream {b}: an https:// upstream needs a host and the route's TLS settings"
                    )));
                }
                _ => None,
            };
            list.push(Upstream {
                h2c: b.scheme_str() == Some("h2c"),
                pool: ConnPool::new(
                    b.authority().map_or("", |a| a.as_str()),
                    b.scheme_str() == Some("h2c"),
                    upstream_tls,
                    connect_timeout,
                ),
                base: b.clone(),
                in_flight: AtomicUsize::new(0),
                failures: AtomicU32::new(0),
                ejected_until: Mutex::new(None),
            });
        }
        Ok(Self {
            list,
            next: AtomicUsize::new(0),
            ejections: AtomicBool::new(false),
            balance,
            eject_after,
            eject_for,
        })
    }

    /// Picks an upstream not in `tried` (indexes), preferring healthy ones; `None` when all were
    /// tried.
    pub(crate) fn pick(&self, tried: &[usize]) -> Option<(usize, InFlight<'_>)> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Candidates in round-robin order from `start`; no allocation on the request path.
        let candidates = (0..n)
            .map(|i| start.wrapping_add(i) % n)
            .filter(|i| !tried.contains(i));
        let now = self.any_ejected().then(Instant::now);
        let healthy =
            |i: &usize| now.is_none_or(|now| self.list.get(*i).is_some_and(|u| !u.ejected(now)));
        let in_flight = |i: &usize| {
            self.list
                .get(*i)
                .map_or(usize::MAX, |u| u.in_flight.load(Ordering::Relaxed))
        };
        // All ejected: try one anyway rather than fail without trying.
        let chosen = match self.balance {
            Balance::RoundRobin => candidates
                .clone()
                .find(healthy)
                .or_else(|| candidates.clone().next()),
            Balance::LeastInFlight => candidates
                .clone()
                .filter(healthy)
                .min_by_key(in_flight)
                .or_else(|| candidates.clone().min_by_key(in_flight)),
        }?;
        let u = self.list.get(chosen)?;
        u.in_flight.fetch_add(1, Ordering::Relaxed);
        Some((chosen, InFlight(u)))
    }

    /// Whether any upstream was ever ejected and may still be: lets the common case skip the
    /// clock and the locks.
    fn any_ejected(&self) -> bool {
        self.ejections.load(Ordering::Relaxed)
    }

    pub(crate) fn connect_failed(&self, u: &Upstream) {
        let f = u.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if f >= self.eject_after {
            *u.ejected_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Instant::now() + self.eject_for);
            self.ejections.store(true, Ordering::Relaxed);
            u.failures.store(0, Ordering::Relaxed);
            tracing::warn!(upstream = %u.base, cool_down = ?self.eject_for, "upstream ejected after connect failures");
        }
    }

    pub(crate) fn succeeded(&self, u: &Upstream) {
        u.failures.store(0, Ordering::Relaxed);
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Upstream> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(b: Balance) -> Upstreams {
        let bases: Vec<Uri> = ["http://a:1", "http://b:1", "http://c:1"]
            .iter()
            .map(|u| u.parse().unwrap())
            .collect();
        Upstreams::new(
            &bases,
            b,
            2,
            Duration::from_secs(60),
            Duration::from_secs(1),
            None,
        )
        .unwrap()
    }

    #[test]
    fn round_robin_and_ejection() {
        let u = ups(Balance::RoundRobin);
        let picks: Vec<usize> = (0..3).map(|_| u.pick(&[]).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2]);
        let b = &u.list[1];
        u.connect_failed(b);
        u.connect_failed(b);
        for _ in 0..10 {
            assert_ne!(u.pick(&[]).unwrap().0, 1, "ejected");
        }
        assert_eq!(
            u.pick(&[0, 2]).unwrap().0,
            1,
            "all others tried: an ejected one is tried"
        );
        assert!(u.pick(&[0, 1, 2]).is_none());
    }

    #[test]
    fn least_in_flight() {
        let u = ups(Balance::LeastInFlight);
        let (first, _a) = u.pick(&[]).unwrap();
        let (second, _b) = u.pick(&[]).unwrap();
        assert_ne!(first, second);
        let (third, _c) = u.pick(&[]).unwrap();
        assert!(third != first && third != second);
    }
}
