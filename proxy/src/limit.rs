//! Token buckets per client IP and route, as nginx `limit_req`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Buckets are forgotten after this long unused, and swept every this many checks.
const SWEEP_EVERY: u64 = 4_096;

pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Mutex<(HashMap<IpAddr, Bucket>, u64)>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Takes a token for `ip`; `Err(wait)` when there is none (retry after `wait`).
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst);
        let rate = self.limit.per_second;
        let mut guard = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, checks) = &mut *guard;
        *checks += 1;
        if *checks % SWEEP_EVERY == 0 {
            // A bucket full again is the same as no bucket.
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

/// A route's retry budget: each request earns `per_mille`/1000 of a retry, a retry spends one,
/// and at most `cap` are saved; so retries stay a small share of traffic when every upstream is
/// failing (no retry storm), while a lone failure is still retried. Counted in thousandths.
pub(crate) struct RetryBudget {
    per_mille: u64,
    cap: u64,
    tokens: Mutex<u64>,
}

impl RetryBudget {
    pub(crate) fn new(per_mille: u64, cap: u64) -> Self {
        Self {
            per_mille,
            cap: cap.saturating_mul(1_000),
            tokens: Mutex::new(cap.saturating_mul(1_000)),
        }
    }

    pub(crate) fn earn(&self) {
        let mut t = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t = t.saturating_add(self.per_mille).min(self.cap);
    }

    pub(crate) fn spend(&self) -> bool {
        let mut t = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match t.checked_sub(1_000) {
            Some(left) => {
                *t = left;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_budget_caps_retries() {
        let b = RetryBudget::new(100, 2);
        assert!(b.spend() && b.spend());
        assert!(!b.spend(), "saved retries spent");
        for _ in 0..9 {
            b.earn();
        }
        assert!(!b.spend(), "nine requests earn 0.9 of a retry");
        b.earn();
        assert!(b.spend());
    }

    #[test]
    fn burst_then_rate() {
        let l = Limiter::new(RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let other: IpAddr = "5.6.7.8".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip, t).is_ok());
        }
        let wait = l.check(ip, t).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(l.check(other, t).is_ok(), "per client");
        assert!(
            l.check(ip, t + Duration::from_millis(100)).is_ok(),
            "refilled"
        );
    }
}
