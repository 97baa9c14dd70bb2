//! Graceful shutdown of served connections: on the signal each connection finishes its
//! in-flight requests and closes; the server waits for the last one.
//!
//! hyper-util's `GracefulShutdown` polls a `watch` channel's change future (a lock) every time a
//! connection's task runs, several times per request. Here a connection's poll costs a flag load
//! and, while no shutdown is under way, re-registering its task's waker (a compare, no lock).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

/// The connections of one server and the signal that tells them to finish.
#[derive(Default)]
pub(crate) struct Drain {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    draining: AtomicBool,
    /// The waker of each live connection, woken when the drain starts.
    wakers: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
    next_id: AtomicU64,
    live: AtomicUsize,
    /// Notified when `live` drops to zero.
    idle: Notify,
}

/// A connection that hyper can ask to finish: close once its in-flight requests are answered.
pub(crate) trait GracefulConnection: Future {
    /// Starts the graceful close (called once, when the drain starts).
    fn start_graceful_shutdown(self: Pin<&mut Self>);
}

impl Drain {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Wraps `conn` so that it closes gracefully once [`Drain::drain`] is called.
    pub(crate) fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&waker));
        self.shared.live.fetch_add(1, Ordering::AcqRel);
        Watched {
            conn,
            guard: Registered {
                shared: Arc::clone(&self.shared),
                id,
                waker,
            },
            shutting_down: false,
        }
    }

    /// Tells every connection to finish, and waits until the last one has closed.
    pub(crate) async fn drain(&self) {
        let shared = &*self.shared;
        shared.draining.store(true, Ordering::Release);
        // Every connection registered before this lock sees the flag when woken; one registered
        // after it reads the flag on its first poll.
        let wakers: Vec<Arc<AtomicWaker>> = shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for waker in wakers {
            waker.wake();
        }
        loop {
            let idle = shared.idle.notified();
            if shared.live.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// A connection's place in the drain; leaving it (the connection ended or was dropped) counts
/// the connection out.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        if self.shared.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection watched by a [`Drain`].
    pub(crate) struct Watched<C> {
        #[pin]
        conn: C,
        guard: Registered,
        shutting_down: bool,
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.shutting_down {
            // Registered before the flag is read: a drain that starts after the read wakes us.
            this.guard.waker.register(cx.waker());
            if this.guard.shared.draining.load(Ordering::Acquire) {
                *this.shutting_down = true;
                this.conn.as_mut().start_graceful_shutdown();
            }
        }
        this.conn.poll(cx)
    }
}
