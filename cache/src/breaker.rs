//! A circuit breaker: after repeated failures, stop calling a dead Redis for a cool-down that
//! doubles while it stays dead, then try again by itself.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    min_cooldown: Duration,
    max_cooldown: Duration,
    /// Set by any failure, cleared by a success: when clear, `check` and `success` skip the lock.
    tripped: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, min_cooldown: Duration, max_cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            min_cooldown,
            max_cooldown,
            tripped: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
                cooldown: min_cooldown,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go out now.
    pub(crate) fn check(&self) -> Result<(), Error> {
        // Fast path: closed and healthy, without the lock.
        if !self.tripped.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let st = self.lock();
        match st.open_until {
            Some(until) => {
                let now = Instant::now();
                if until > now {
                    Err(Error::CircuitOpen {
                        retry_in: until - now,
                    })
                } else {
                    Ok(()) // half-open: let calls try
                }
            }
            None => Ok(()),
        }
    }

    pub(crate) fn success(&self) {
        if !self.tripped.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut st = self.lock();
        self.tripped
            .store(false, std::sync::atomic::Ordering::Release);
        if st.open_until.is_some() {
            tracing::info!("redis is reachable again; circuit closed");
        }
        st.failures = 0;
        st.open_until = None;
        st.cooldown = self.min_cooldown;
    }

    pub(crate) fn failure(&self) {
        let mut st = self.lock();
        self.tripped
            .store(true, std::sync::atomic::Ordering::Release);
        st.failures = st.failures.saturating_add(1);
        if st.failures >= self.threshold {
            let cooldown = st.cooldown;
            if st.open_until.is_none() {
                tracing::warn!(
                    failures = st.failures,
                    ?cooldown,
                    "redis keeps failing; circuit open"
                );
            }
            st.open_until = Some(Instant::now() + cooldown);
            st.cooldown = cooldown.saturating_mul(2).min(self.max_cooldown);
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.lock().open_until.is_some_and(|u| u > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers() {
        let b = Breaker::new(3, Duration::from_millis(20), Duration::from_millis(80));
        b.failure();
        b.failure();
        assert!(b.check().is_ok());
        b.failure();
        assert!(matches!(b.check(), Err(Error::CircuitOpen { .. })));
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.check().is_ok(), "half-open after the cool-down");
        b.failure();
        assert!(b.is_open(), "a failed trial reopens it, for longer");
        std::thread::sleep(Duration::from_millis(45));
        b.success();
        assert!(b.check().is_ok() && !b.is_open());
    }
}
