//! Exponential backoff with jitter, shared by retries, reconnects and clients.

use std::time::{Duration, Instant};

use crate::Error;

/// An exponential backoff policy with jitter.
///
/// Attempt `n` (counting from 0) waits a uniformly random time in
/// `[min, min(max, min × multiplierⁿ⁺¹)]`: the window doubles (for a multiplier of 2) until it
/// reaches `max`, and every delay is drawn from the whole window ("full jitter" above a floor), so
/// many clients that failed together do not retry together. A policy may stop after
/// `max_attempts` delays or once `max_elapsed` would be passed.
///
/// The policy is plain data; a [`Schedule`] walks it.
///
/// ```
/// use std::time::Duration;
/// use tidewell_core::Backoff;
///
/// let backoff = Backoff::builder()
///     .min(Duration::from_millis(100))
///     .max(Duration::from_secs(10))
///     .max_attempts(5)
///     .build()?;
/// let delays: Vec<Duration> = backoff.schedule_seeded(7).collect();
/// assert_eq!(delays.len(), 5);
/// assert!(delays.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(10)));
/// # Ok::<(), tidewell_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    multiplier: f64,
    max_attempts: Option<u32>,
    max_elapsed: Option<Duration>,
}

impl Default for Backoff {
    /// 100 ms to 30 s, multiplier 2, unbounded attempts and time.
    fn default() -> Self {
        Self {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: None,
            max_elapsed: None,
        }
    }
}

impl Backoff {
    /// A builder starting from [`Backoff::default`].
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder {
            policy: Self::default(),
        }
    }

    /// The shortest delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// How many delays a schedule hands out before it stops, if bounded.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The upper end of the jitter window for attempt `n` (0-based):
    /// `min(max, min × multiplierⁿ⁺¹)`, never below `min`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_add(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.powi(exponent);
        let secs = self.min.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs).max(self.min)
        }
    }

    /// The delay before retry `attempt` (0-based), drawn with `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let lo = self.min.as_nanos();
        let hi = self.ceiling(attempt).as_nanos();
        if hi <= lo {
            return self.min;
        }
        let nanos = u64::try_from(lo).unwrap_or(u64::MAX)..=u64::try_from(hi).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.u64(nanos))
    }

    /// A schedule seeded from the operating system's entropy.
    pub fn schedule(&self) -> Schedule {
        self.schedule_with(fastrand::Rng::new())
    }

    /// A schedule whose delays are the same for the same seed (for tests and simulations).
    pub fn schedule_seeded(&self, seed: u64) -> Schedule {
        self.schedule_with(fastrand::Rng::with_seed(seed))
    }

    fn schedule_with(&self, rng: fastrand::Rng) -> Schedule {
        Schedule {
            policy: self.clone(),
            rng,
            attempt: 0,
            started: None,
        }
    }

    /// Runs `op` until it succeeds, sleeping the backoff delay between failures for which
    /// `retryable` returns true. Returns the first success, the first error that is not retryable,
    /// or the last error once the policy gives up.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use tidewell_core::Backoff;
    ///
    /// let backoff = Backoff::builder().min(Duration::from_millis(1)).max_attempts(5).build().unwrap();
    /// let mut calls = 0;
    /// let result: Result<u32, &str> = backoff
    ///     .retry(|| { calls += 1; let n = calls; async move { if n < 3 { Err("busy") } else { Ok(n) } } },
    ///            |_| true)
    ///     .await;
    /// assert_eq!(result, Ok(3));
    /// # }
    /// ```
    #[cfg(feature = "runtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "runtime")))]
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut op: F,
        mut retryable: impl FnMut(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut schedule = self.schedule();
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(err) => {
                    if !retryable(&err) {
                        return Err(err);
                    }
                    match schedule.next_delay() {
                        Some(delay) => {
                            tracing::debug!(
                                attempt = schedule.attempt(),
                                ?delay,
                                "retrying after backoff"
                            );
                            tokio::time::sleep(delay).await;
                        }
                        None => return Err(err),
                    }
                }
            }
        }
    }
}

/// Builds a [`Backoff`]; every value is checked by [`BackoffBuilder::build`].
#[derive(Clone, Debug)]
pub struct BackoffBuilder {
    policy: Backoff,
}

impl BackoffBuilder {
    /// The shortest delay, and the scale of the growth (default 100 ms). Must be above zero.
    #[must_use]
    pub fn min(mut self, min: Duration) -> Self {
        self.policy.min = min;
        self
    }

    /// The longest delay (default 30 s). Must be at least `min`.
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.policy.max = max;
        self
    }

    /// How fast the window grows per attempt (default 2). Must be finite and at least 1.
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.policy.multiplier = multiplier;
        self
    }

    /// Stop after this many delays (default: never).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.policy.max_attempts = Some(attempts);
        self
    }

    /// Stop when the next delay would end more than this long after the schedule's first delay
    /// was asked for (default: never).
    #[must_use]
    pub fn max_elapsed(mut self, elapsed: Duration) -> Self {
        self.policy.max_elapsed = Some(elapsed);
        self
    }

    /// Checks the values and returns the policy.
    pub fn build(self) -> Result<Backoff, Error> {
        let p = self.policy;
        let reason = if p.min.is_zero() {
            "min must be above zero"
        } else if p.max < p.min {
            "max must be at least min"
        } else if !p.multiplier.is_finite() || p.multiplier < 1.0 {
            "multiplier must be a finite number of at least 1"
        } else {
            return Ok(p);
        };
        Err(Error::InvalidBackoff { reason })
    }
}

/// One walk through a [`Backoff`] policy: the delays before retries 0, 1, 2, ...
///
/// It is an [`Iterator`] of delays that ends when the policy gives up.
#[derive(Debug)]
pub struct Schedule {
    policy: Backoff,
    rng: fastrand::Rng,
    attempt: u32,
    started: Option<Instant>,
}

impl Schedule {
    /// How many delays this schedule has handed out.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts over from attempt 0 (after a success, for example).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.started = None;
    }

    /// The next delay, or `None` when the policy gives up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.next_delay_at(Instant::now())
    }

    /// The next delay as if asked at `now`, for deterministic tests of `max_elapsed`.
    pub fn next_delay_at(&mut self, now: Instant) -> Option<Duration> {
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        let started = *self.started.get_or_insert(now);
        let delay = self.policy.delay(self.attempt, &mut self.rng);
        if let Some(budget) = self.policy.max_elapsed {
            let ends = now.saturating_duration_since(started).saturating_add(delay);
            if ends > budget {
                return None;
            }
        }
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

impl Iterator for Schedule {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(min_ms: u64, max_ms: u64, multiplier: f64) -> Backoff {
        Backoff::builder()
            .min(Duration::from_millis(min_ms))
            .max(Duration::from_millis(max_ms))
            .multiplier(multiplier)
            .build()
            .unwrap()
    }

    proptest! {
        #[test]
        fn every_delay_is_within_min_and_ceiling(
            min_ms in 1u64..5_000,
            extra_ms in 0u64..100_000,
            multiplier in 1.0f64..10.0,
            seed: u64,
            attempt in 0u32..200,
        ) {
            let p = policy(min_ms, min_ms + extra_ms, multiplier);
            let mut rng = fastrand::Rng::with_seed(seed);
            let d = p.delay(attempt, &mut rng);
            prop_assert!(d >= p.min(), "{d:?} below min");
            prop_assert!(d <= p.ceiling(attempt), "{d:?} above ceiling");
            prop_assert!(p.ceiling(attempt) <= p.max());
        }

        #[test]
        fn ceiling_never_shrinks(min_ms in 1u64..1_000, multiplier in 1.0f64..4.0, attempt in 0u32..100) {
            let p = policy(min_ms, 60_000, multiplier);
            prop_assert!(p.ceiling(attempt + 1) >= p.ceiling(attempt));
        }

        #[test]
        fn same_seed_same_schedule(seed: u64) {
            let p = policy(10, 10_000, 2.0);
            let a: Vec<_> = p.schedule_seeded(seed).take(20).collect();
            let b: Vec<_> = p.schedule_seeded(seed).take(20).collect();
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn jitter_spreads_over_the_window() {
        // 10,000 draws for attempt 3 (window [100ms, 1.6s]) fall in all ten deciles of the window,
        // with no decile holding under half its fair share.
        let p = policy(100, 60_000, 2.0);
        let (lo, hi) = (p.min().as_secs_f64(), p.ceiling(3).as_secs_f64());
        assert!((hi - 1.6).abs() < 1e-9, "ceiling(3) = {hi}");
        let mut rng = fastrand::Rng::with_seed(1);
        let mut deciles = [0u32; 10];
        for _ in 0..10_000 {
            let d = p.delay(3, &mut rng).as_secs_f64();
            let bucket = (((d - lo) / (hi - lo)) * 10.0).floor() as usize;
            deciles[bucket.min(9)] += 1;
        }
        assert!(deciles.iter().all(|&n| n > 500), "{deciles:?}");
        // And different clients really differ: two seeds disagree on the first delay.
        let a = p.schedule_seeded(1).next().unwrap();
        let b = p.schedule_seeded(2).next().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn window_grows_then_caps() {
        let p = policy(100, 1_000, 2.0);
        let ceilings: Vec<u64> = (0..6).map(|n| p.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(p.ceiling(u32::MAX), p.max());
    }

    #[test]
    fn multiplier_one_is_constant_window() {
        let p = policy(50, 50, 1.0);
        let delays: Vec<_> = p.schedule_seeded(3).take(5).collect();
        assert!(
            delays.iter().all(|d| *d == Duration::from_millis(50)),
            "{delays:?}"
        );
    }

    #[test]
    fn max_attempts_bounds_the_schedule() {
        let p = Backoff::builder().max_attempts(3).build().unwrap();
        let mut s = p.schedule_seeded(9);
        assert_eq!(s.by_ref().count(), 3);
        assert_eq!(s.attempt(), 3);
        s.reset();
        assert!(s.next_delay().is_some());
    }

    #[test]
    fn max_elapsed_bounds_the_schedule() {
        let p = Backoff::builder()
            .min(Duration::from_secs(1))
            .max(Duration::from_secs(1))
            .multiplier(1.0)
            .max_elapsed(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut s = p.schedule_seeded(0);
        let t0 = Instant::now();
        assert_eq!(s.next_delay_at(t0), Some(Duration::from_secs(1)));
        assert_eq!(
            s.next_delay_at(t0 + Duration::from_secs(8)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(s.next_delay_at(t0 + Duration::from_millis(9_500)), None);
    }

    #[test]
    fn invalid_policies_are_refused() {
        let zero = Backoff::builder().min(Duration::ZERO).build();
        assert!(matches!(zero, Err(Error::InvalidBackoff { reason }) if reason.contains("min")));
        let inverted = Backoff::builder()
            .min(Duration::from_secs(2))
            .max(Duration::from_secs(1))
            .build();
        assert!(inverted.is_err());
        for m in [0.5, f64::NAN, f64::INFINITY] {
            assert!(Backoff::builder().multiplier(m).build().is_err(), "{m}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_permanent_errors_and_gives_up() {
        let p = Backoff::builder().max_attempts(2).build().unwrap();
        let mut calls = 0;
        let r: Result<(), &str> = p
            .retry(
                || {
                    calls += 1;
                    async { Err("down") }
                },
                |_| true,
            )
            .await;
        assert_eq!((r, calls), (Err("down"), 3), "one try plus two retries");

        let mut calls = 0;
        let r: Result<(), &str> = p
            .retry(
                || {
                    calls += 1;
                    async { Err("bad request") }
                },
                |e| *e != "bad request",
            )
            .await;
        assert_eq!((r, calls), (Err("bad request"), 1));
    }
}
