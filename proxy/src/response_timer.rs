//! The upstream response timer (the 504) for [`serve`](crate::serve)'s connections: one tokio
//! sleep per client connection, reset for each request instead of made anew.
//!
//! `tokio::time::timeout` makes a timer entry for every request, inserts it in the runtime's timer
//! wheel on the first poll and removes it on drop (the driver's lock each time), ~1.2k
//! instructions per request here. A registered sleep reset to a later deadline only stores the
//! new deadline (tokio's `extend_expiration`, one compare-and-swap); the wheel learns of it when
//! the old deadline comes round. The deadline is exactly the route's timeout, as with `timeout`.
//!
//! A slot belongs to one connection, whose requests all run on its task and runtime. An HTTP/2
//! connection's concurrent requests find the slot empty and make their own sleep.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// One connection's spare sleep (see the module docs).
#[derive(Default)]
pub(crate) struct TimerSlot(Mutex<Option<Pin<Box<Sleep>>>>);

impl TimerSlot {
    /// Runs `fut` for at most `timeout`: `None` when the time ran out first.
    pub(crate) async fn run<F: Future>(
        &self,
        timeout: Duration,
        mut fut: Pin<Box<F>>,
    ) -> Option<F::Output> {
        let deadline = Instant::now() + timeout;
        let spare = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let out = std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await;
        // Kept for the next request unless another one (HTTP/2) put its own back first.
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(sleep);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time (tokio's paused clock needs its `test-util` feature, which would also slow the
    // bench's clock reads): bounds are loose upward, exact downward.

    #[tokio::test]
    async fn each_request_gets_its_full_timeout_from_a_reused_sleep() {
        let slot = TimerSlot::default();
        let timeout = Duration::from_millis(200);
        // A quick answer whose sleep was registered (the answer takes a poll to come), then one
        // that never comes: the second times out at its own deadline, not at the first one's.
        let quick = slot
            .run(
                timeout,
                Box::pin(async {
                    tokio::task::yield_now().await;
                    7
                }),
            )
            .await;
        assert_eq!(quick, Some(7));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let start = Instant::now();
        let never = slot
            .run(timeout, Box::pin(std::future::pending::<()>()))
            .await;
        assert_eq!(never, None);
        let took = start.elapsed();
        assert!(took >= timeout && took < Duration::from_secs(2), "{took:?}");
        // The slot holds the fired sleep again; a shorter timeout after it is kept too.
        let start = Instant::now();
        let short = slot
            .run(
                Duration::from_millis(20),
                Box::pin(std::future::pending::<()>()),
            )
            .await;
        assert_eq!(short, None);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(20) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(slot.0.lock().unwrap().is_some());
    }

    #[tokio::test]
    async fn an_answer_before_the_deadline_wins() {
        let slot = TimerSlot::default();
        let answer = slot
            .run(
                Duration::from_secs(2),
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    "ok"
                }),
            )
            .await;
        assert_eq!(answer, Some("ok"));
    }
}
