//! Upgraded connections (a `101 Switching Protocols`, e.g. WebSocket): the two-way copy between
//! the client and the upstream, and [`Tunnels`], the owner of those tasks, which closes them on
//! shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tidewell_core::Shutdown;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The open tunnels of one proxy: each runs in a task owned here, and [`Tunnels::close`] ends
/// them all and waits for their tasks.
#[derive(Default)]
pub(crate) struct Tunnels {
    owner: Shutdown,
}

impl Tunnels {
    /// Starts the tunnel between `client` and `upstream` once both upgrades complete. It ends when
    /// either side closes, when nothing moves for `idle`, or when [`Tunnels::close`] is called
    /// (at once if it already was).
    pub(crate) fn open(&self, client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
        let closed = self.owner.triggered();
        // The handle is not needed: `close` waits for the task through its owner.
        drop(self.owner.spawn(async move {
            tokio::select! {
                () = closed => tracing::debug!("upgraded connection closed by shutdown"),
                () = tunnel(client, upstream, idle) => {}
            }
        }));
    }

    /// Closes every tunnel (dropping both of its connections) and any opened from now on, and
    /// waits up to `grace` for their tasks to end. Answers how many are still running (0 once
    /// all have ended; a closed tunnel's task ends at its next poll).
    pub(crate) async fn close(&self, grace: Duration) -> usize {
        match self.owner.drain(grace).await {
            Ok(()) => 0,
            Err(_) => self.owner.running_tasks(),
        }
    }
}

/// Copies bytes both ways between the upgraded client and upstream connections until either
/// side closes or nothing moves for `idle`.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let (mut cr, mut cw) = tokio::io::split(TokioIo::new(client));
    let (mut ur, mut uw) = tokio::io::split(TokioIo::new(upstream));
    let activity = Activity::new();
    tokio::select! {
        _ = futures_util::future::join(
            copy(&mut cr, &mut uw, &activity),
            copy(&mut ur, &mut cw, &activity),
        ) => {}
        () = activity.idle_for(idle) => tracing::debug!(?idle, "upgraded connection idle; closing"),
    }
}

/// When bytes last moved through a tunnel, in milliseconds since it started.
struct Activity {
    started: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn moved(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle` (checked four times per `idle`).
    async fn idle_for(&self, idle: Duration) {
        let tick = (idle / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let quiet = self
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
        }
    }
}

/// Copies `r` to `w` until `r` ends or either fails, then closes `w`'s sending side.
async fn copy(
    r: &mut (dyn AsyncRead + Unpin + Send),
    w: &mut (dyn AsyncWrite + Unpin + Send),
    activity: &Activity,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else { break };
        if w.write_all(chunk).await.is_err() {
            break;
        }
        activity.moved();
    }
    // ok to ignore: the peer may be gone already
    let _ = w.shutdown().await;
}
