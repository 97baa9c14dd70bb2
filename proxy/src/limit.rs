//! Rate limits per client IP and route, as nginx `limit_req`, on governor's keyed GCRA limiter
//! (measured faster than the hand-written token buckets it replaced: `benches/limiter.rs`), and
//! the retry budget.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;

/// Clients not seen for a while are forgotten every this many checks.
const SWEEP_EVERY: u64 = 4_096;

/// One route's limit, per client IP.
pub(crate) struct Limiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl Limiter {
    /// The limiter for `limit`, which the configuration has checked (`per_second` > 0 and
    /// finite, `burst` >= 1). Beyond what a clock can tell apart, it is clamped, never lifted: at
    /// most one token a nanosecond, at least one a year.
    pub(crate) fn new(limit: RateLimit) -> Self {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let period = Duration::try_from_secs_f64(1.0 / limit.per_second)
            .unwrap_or(YEAR)
            .clamp(Duration::from_nanos(1), YEAR);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token for `ip`; `Err(wait)` when there is none (retry after `wait`).
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // A client whose bucket is full again is the same as no entry.
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
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
        for _ in 0..3 {
            assert!(l.check(ip).is_ok());
        }
        let wait = l.check(ip).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(l.check(other).is_ok(), "per client");
        std::thread::sleep(wait + Duration::from_millis(20));
        assert!(l.check(ip).is_ok(), "refilled after the wait it named");
    }

    #[test]
    fn extreme_rates_are_clamped_not_lifted() {
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        // One token a year at most: the burst, then nothing.
        let slow = Limiter::new(RateLimit {
            per_second: 1e-300,
            burst: 1,
        });
        assert!(slow.check(ip).is_ok());
        assert!(slow.check(ip).is_err(), "still limited");
        let fast = Limiter::new(RateLimit {
            per_second: 1e300,
            burst: 1,
        });
        assert!(fast.check(ip).is_ok());
    }
}
