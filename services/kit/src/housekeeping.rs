//! Jobs a service runs on a schedule (pruning old rows), each reporting what it did as metrics:
//! `tidewell_housekeeping_runs_total{task, outcome}`, `tidewell_housekeeping_removed_total{task}`
//! and `tidewell_housekeeping_last_success_timestamp_seconds{task}`.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use tidewell_observability::{MetricsRegistry, prometheus};
use tokio_util::sync::CancellationToken;

use crate::Ops;

/// The housekeeping metrics of one service.
pub(crate) struct JobMetrics {
    runs: IntCounterVec,
    removed: IntCounterVec,
    last_success: IntGaugeVec,
}

impl JobMetrics {
    pub(crate) fn new(registry: &MetricsRegistry) -> Result<Self, tidewell_observability::Error> {
        let runs = IntCounterVec::new(
            Opts::new(
                "tidewell_housekeeping_runs_total",
                "Housekeeping job runs, by task and outcome (ok, failed).",
            ),
            &["task", "outcome"],
        )?;
        let removed = IntCounterVec::new(
            Opts::new(
                "tidewell_housekeeping_removed_total",
                "Rows housekeeping jobs removed, by task.",
            ),
            &["task"],
        )?;
        let last_success = IntGaugeVec::new(
            Opts::new(
                "tidewell_housekeeping_last_success_timestamp_seconds",
                "When a housekeeping task last succeeded (Unix time).",
            ),
            &["task"],
        )?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(removed.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        Ok(Self {
            runs,
            removed,
            last_success,
        })
    }
}

impl Ops {
    /// Runs `job` every `every` (the first time after `every`) until `stop`; each run reports
    /// how many rows it removed, or why it failed (logged, counted, tried again next time).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), tidewell_observability::Error> {
    /// use std::time::Duration;
    /// let ops = tidewell_service_kit::Ops::new("greeter")?;
    /// let stop = tokio_util::sync::CancellationToken::new();
    /// ops.schedule("old-greetings", Duration::from_secs(3600), stop.clone(), || async {
    ///     Ok::<u64, String>(0) // DELETE ... WHERE created_at < ...
    /// });
    /// stop.cancel();
    /// # Ok(()) }
    /// ```
    pub fn schedule<F, Fut>(&self, task: &str, every: Duration, stop: CancellationToken, job: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u64, String>> + Send + 'static,
    {
        let ops = self.clone();
        let task = task.to_owned();
        let ops_task = async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                // ok to ignore: the run is counted and logged; the next one tries again
                let _ = ops.run_job(&task, &job).await;
            }
        };
        tokio::spawn(ops_task);
    }

    /// Runs `job` once now, reporting it like a scheduled run; answers how many rows it removed.
    pub async fn run_job<F, Fut>(&self, task: &str, job: &F) -> Result<u64, String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        let m = &self.inner.housekeeping;
        let result = job().await;
        match &result {
            Ok(n) => {
                m.runs.with_label_values(&[task, "ok"]).inc();
                m.removed.with_label_values(&[task]).inc_by(*n);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                m.last_success
                    .with_label_values(&[task])
                    .set(i64::try_from(now).unwrap_or(i64::MAX));
                tracing::debug!(task, removed = n, "housekeeping done");
            }
            Err(error) => {
                m.runs.with_label_values(&[task, "failed"]).inc();
                tracing::warn!(task, error, "housekeeping failed; it runs again next time");
            }
        }
        result
    }
}
