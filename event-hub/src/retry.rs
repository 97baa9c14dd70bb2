//! Retry policy: how many handler runs, and how long to wait between them.

use std::time::Duration;

use tidewell_core::Backoff;

/// How a queue retries events whose handler failed with a retryable error.
///
/// A failed event waits in a wait queue (a queue with a fixed message TTL that dead-letters back
/// into the service queue), then runs again. Wait times come from the [`Backoff`], rounded down
/// to a ladder of delays `min, 2·min, 4·min, …, max`, one wait queue per rung, so the number of
/// queues stays small (7 for the default 1 s to 60 s). After `max_attempts` runs the event goes
/// to the dead-letter queue with its last error.
///
/// ```
/// use std::time::Duration;
/// use tidewell_core::Backoff;
/// use tidewell_event_hub::RetryPolicy;
///
/// let policy = RetryPolicy::new(
///     4,
///     Backoff::builder().min(Duration::from_secs(1)).max(Duration::from_secs(8)).build()?,
/// );
/// assert_eq!(policy.max_attempts(), 4);
/// assert_eq!(
///     policy.ladder(),
///     [1, 2, 4, 8].map(Duration::from_secs).to_vec()
/// );
/// # Ok::<(), tidewell_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
}

impl Default for RetryPolicy {
    /// 5 runs in all, waits from 1 s to 60 s.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::builder()
                .min(Duration::from_secs(1))
                .max(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }
}

impl RetryPolicy {
    /// At most `max_attempts` handler runs (at least 1: 1 means no retry), waiting per `backoff`.
    pub fn new(max_attempts: u32, backoff: Backoff) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            backoff,
        }
    }

    /// No retries: a retryable failure is dead-lettered at once.
    pub fn none() -> Self {
        Self::new(1, Backoff::default())
    }

    /// How many handler runs at most.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait queue delays, shortest first.
    pub fn ladder(&self) -> Vec<Duration> {
        if self.max_attempts <= 1 {
            return Vec::new();
        }
        let (min, max) = (self.backoff.min(), self.backoff.max());
        let mut rungs = Vec::new();
        let mut d = min;
        while d < max {
            rungs.push(d);
            d = d.saturating_mul(2);
        }
        rungs.push(max);
        rungs
    }

    /// The wait before run `next_attempt` (2 for the first retry), on the ladder.
    pub(crate) fn wait_before(&self, next_attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let drawn = self.backoff.delay(next_attempt.saturating_sub(2), rng);
        let ladder = self.ladder();
        ladder
            .iter()
            .rev()
            .find(|rung| **rung <= drawn)
            .or(ladder.first())
            .copied()
            .unwrap_or(drawn)
    }
}

/// The wait queue of `queue` for `delay`.
pub(crate) fn wait_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.wait.{}ms", delay.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ladder_is_small() {
        let ladder = RetryPolicy::default().ladder();
        assert_eq!(ladder.first(), Some(&Duration::from_secs(1)));
        assert_eq!(ladder.last(), Some(&Duration::from_secs(60)));
        assert_eq!(ladder.len(), 7);
    }

    #[test]
    fn waits_are_rungs_that_grow_with_attempts() {
        let p = RetryPolicy::default();
        let ladder = p.ladder();
        let mut rng = fastrand::Rng::with_seed(5);
        for attempt in 2..20 {
            let w = p.wait_before(attempt, &mut rng);
            assert!(ladder.contains(&w), "{w:?} not a rung");
            // The window for this attempt is [min, ceiling]; the rung is at most the ceiling.
            assert!(w <= Backoff::default().max().max(Duration::from_secs(60)));
        }
        let mut rng = fastrand::Rng::with_seed(5);
        assert!(p.wait_before(2, &mut rng) <= Duration::from_secs(2));
    }

    #[test]
    fn no_retry_has_no_wait_queues() {
        assert!(RetryPolicy::none().ladder().is_empty());
        assert_eq!(RetryPolicy::new(0, Backoff::default()).max_attempts(), 1);
    }

    #[test]
    fn wait_queue_names() {
        assert_eq!(
            wait_queue("payments.events", Duration::from_secs(2)),
            "payments.events.wait.2000ms"
        );
    }
}
