//! One graceful-shutdown signal for every server and consumer.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;

/// A graceful-shutdown signal that also owns the tasks started under it.
///
/// Cloning is cheap; clones share the signal and the tasks. Servers and consumers take a
/// `Shutdown`, stop accepting work when it is triggered ([`Shutdown::triggered`]), and finish what
/// is in flight; the application then waits for them with [`Shutdown::drain`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_core::Error> {
/// use std::time::Duration;
/// use tidewell_core::Shutdown;
///
/// let shutdown = Shutdown::new(); // in a binary: Shutdown::on_signals()?
/// let worker = shutdown.clone();
/// shutdown.spawn(async move {
///     worker.triggered().await;
///     // finish in-flight work here
/// });
/// shutdown.trigger();
/// shutdown.drain(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A signal that only [`Shutdown::trigger`] fires.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that SIGINT (Ctrl-C) or SIGTERM fires. Must be called inside a tokio runtime.
    pub fn on_signals() -> Result<Self, Error> {
        let shutdown = Self::new();
        #[cfg(unix)]
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| Error::Signal { source })?;
        let token = shutdown.token.clone();
        // Not tracked: this task lives until the signal or the token fires, and would keep
        // `drain` waiting for itself.
        tokio::spawn(async move {
            #[cfg(unix)]
            let terminate = sigterm.recv();
            #[cfg(not(unix))]
            let terminate = std::future::pending::<Option<()>>();
            tokio::select! {
                result = tokio::signal::ctrl_c() => match result {
                    Ok(()) => tracing::info!(signal = "SIGINT", "shutting down"),
                    Err(error) => tracing::warn!(%error, "cannot listen for Ctrl-C; shutting down"),
                },
                _ = terminate => tracing::info!(signal = "SIGTERM", "shutting down"),
                () = token.cancelled() => return,
            }
            token.cancel();
        });
        Ok(shutdown)
    }

    /// Fires the signal. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when the signal fires (at once if it already has).
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// A child signal: fired with this one, and can also be fired on its own (to stop one
    /// consumer without stopping the process). Its tasks are tracked apart.
    pub fn child(&self) -> Self {
        Self {
            token: self.token.child_token(),
            tasks: TaskTracker::new(),
        }
    }

    /// Spawns a task owned by this signal: [`Shutdown::drain`] waits for it.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// How many owned tasks are still running.
    pub fn running_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Fires the signal, then waits up to `grace` for every owned task to end.
    ///
    /// Fails with [`Error::DrainTimeout`] if some are still running when `grace` runs out.
    pub async fn drain(&self, grace: Duration) -> Result<(), Error> {
        self.trigger();
        self.tasks.close();
        match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::DrainTimeout {
                remaining: self.tasks.len(),
                grace,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn drain_waits_for_in_flight_work() {
        let shutdown = Shutdown::new();
        let finished = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let (s, f) = (shutdown.clone(), finished.clone());
            shutdown.spawn(async move {
                s.triggered().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                f.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(shutdown.running_tasks(), 3);
        shutdown.drain(Duration::from_secs(5)).await.unwrap();
        assert_eq!(finished.load(Ordering::SeqCst), 3);
        assert!(shutdown.is_triggered());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_reports_stuck_tasks() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        let err = shutdown.drain(Duration::from_secs(1)).await.unwrap_err();
        assert!(
            matches!(err, Error::DrainTimeout { remaining: 1, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn child_fires_with_parent_but_not_the_reverse() {
        let parent = Shutdown::new();
        let child = parent.child();
        child.trigger();
        assert!(!parent.is_triggered());
        let other = parent.child();
        parent.trigger();
        other.triggered().await;
        assert!(other.is_triggered());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn on_signals_installs_and_can_be_triggered_by_hand() {
        let shutdown = Shutdown::on_signals().unwrap();
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(1), shutdown.triggered())
            .await
            .unwrap();
    }
}
