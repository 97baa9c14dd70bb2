//! A coarse timer for hyper's HTTP/1 header-read timeout.
//!
//! hyper arms that timeout for every request head: it makes a sleep when it starts reading a head
//! (right after the previous response, on a keep-alive connection) and drops it once the head is
//! in. With tokio's timer that is a timer-wheel insertion and removal and a runtime handle per
//! request (~1.5k instructions of the proxy's ~35k). The timeout is long (seconds) and its
//! precision does not matter, so here a sleep is a slot in a table, checked by one task a few
//! times per timeout: registering and dropping cost a short lock each. There is a table per
//! core (each thread registers in its own), so worker threads of a multi-thread runtime do not
//! contend for one lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The timer handed to hyper: sleeps that end at most about one tick late.
#[derive(Clone)]
pub(crate) struct HeadTimer {
    tables: Tables,
}

/// One table per shard (behind a thin pointer: the sleep stays in glibc's smallest bins).
type Tables = Arc<Box<[Mutex<Table>]>>;

/// The shard of this thread's registrations: threads take shards in turn.
fn shard_of_this_thread(shards: usize) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s) % shards.max(1)
}

/// The waiting sleeps: a slab of slots, reused.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

struct Slot {
    /// Bumped when the slot is freed, so a stale key never touches the next tenant.
    generation: u64,
    deadline: Instant,
    /// `None` once woken (or while free).
    waker: Option<Waker>,
    /// Whether a sleep holds the slot.
    occupied: bool,
}

impl HeadTimer {
    /// A timer whose sleeps end within `tick` after their deadline, and the task that ticks it
    /// (run it beside the server; it ends when every handle to the timer is gone).
    pub(crate) fn new(tick: Duration) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let shards = std::thread::available_parallelism().map_or(1, usize::from);
        let tables: Tables = Arc::new((0..shards).map(|_| Mutex::default()).collect());
        let weak = Arc::downgrade(&tables);
        let ticker = async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut due: Vec<Waker> = Vec::new();
            loop {
                interval.tick().await;
                let Some(tables) = weak.upgrade() else { return };
                let now = Instant::now();
                for table in tables.iter() {
                    let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
                    due.extend(
                        table
                            .slots
                            .iter_mut()
                            .filter(|s| s.occupied && s.deadline <= now)
                            .filter_map(|s| s.waker.take()),
                    );
                }
                // Woken outside the locks: a woken task may drop its sleep at once.
                for waker in due.drain(..) {
                    waker.wake();
                }
            }
        };
        (Self { tables }, ticker)
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep {
            deadline,
            tables: Arc::clone(&self.tables),
            key: None,
        })
    }
}

/// One sleep: registered in the table on its first pending poll, removed when dropped.
struct CoarseSleep {
    deadline: Instant,
    tables: Tables,
    /// Shard, slot index and generation, once registered.
    key: Option<Key>,
}

/// Where a registered sleep's slot is.
#[derive(Clone, Copy)]
struct Key {
    shard: usize,
    index: usize,
    generation: u64,
}

impl hyper::rt::Sleep for CoarseSleep {}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        if let Some(key) = this.key {
            let Some(table) = this.tables.get(key.shard) else {
                return Poll::Pending; // never: the shard was taken from these tables
            };
            let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = table.slots.get_mut(key.index)
                && slot.generation == key.generation
            {
                match &mut slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    waker => *waker = Some(cx.waker().clone()),
                }
            }
            return Poll::Pending;
        }
        let shard = shard_of_this_thread(this.tables.len());
        let Some(table) = this.tables.get(shard) else {
            return Poll::Pending; // never: the shard is taken modulo the number of tables
        };
        let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
        let table = &mut *table;
        let index = match table.free.pop() {
            Some(index) => index,
            None => {
                table.slots.push(Slot {
                    generation: 0,
                    deadline: this.deadline,
                    waker: None,
                    occupied: false,
                });
                table.slots.len() - 1
            }
        };
        let Some(slot) = table.slots.get_mut(index) else {
            return Poll::Pending; // never: the index was just taken from the table
        };
        slot.occupied = true;
        slot.deadline = this.deadline;
        slot.waker = Some(cx.waker().clone());
        this.key = Some(Key {
            shard,
            index,
            generation: slot.generation,
        });
        Poll::Pending
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let Some(table) = self.tables.get(key.shard) else {
            return;
        };
        let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = table.slots.get_mut(key.index)
            && slot.generation == key.generation
        {
            slot.generation = slot.generation.wrapping_add(1);
            slot.occupied = false;
            let waker = slot.waker.take();
            table.free.push(key.index);
            drop(table);
            drop(waker);
        }
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Timer as _;

    use super::*;

    #[tokio::test]
    async fn sleeps_end_after_their_deadline_and_dropped_ones_give_their_slot_back() {
        let (timer, ticker) = HeadTimer::new(Duration::from_millis(10));
        tokio::spawn(ticker);
        // A long sleep registers (one pending poll), then is dropped: its slot is free again.
        let mut long = timer.sleep(Duration::from_secs(60));
        let waker = Waker::noop();
        assert!(
            long.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        drop(long);
        let started = Instant::now();
        // Three short ones at once: one takes the freed slot, and none is woken for another.
        let sleeps = [40, 80, 120].map(|ms| timer.sleep(Duration::from_millis(ms)));
        let ended: Vec<Duration> =
            futures_util::future::join_all(sleeps.into_iter().map(|s| async move {
                s.await;
                started.elapsed()
            }))
            .await;
        for (ended, ms) in ended.iter().zip([40, 80, 120]) {
            assert!(
                *ended >= Duration::from_millis(ms) && *ended < Duration::from_secs(2),
                "a {ms} ms sleep ended after {ended:?}"
            );
        }
        // All registered from this test's one thread: one shard.
        let table = timer.tables[shard_of_this_thread(timer.tables.len())]
            .lock()
            .unwrap();
        assert_eq!(table.slots.len(), 3, "the freed slot was reused");
        assert!(
            table.slots.iter().all(|s| !s.occupied),
            "every slot is free"
        );
        assert_eq!(table.free.len(), 3);
    }
}
