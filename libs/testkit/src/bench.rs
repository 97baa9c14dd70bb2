//! Helpers for the benchmarks: this machine's speed drifts and its hypervisor takes CPU time for
//! other guests, so benches alternate rounds, drop the rounds the hypervisor disturbed and report
//! medians.

/// The median of `values` (the upper one of an even count); `NaN` for none.
///
/// ```
/// assert_eq!(tidewell_testkit::bench::median(vec![3.0, 1.0, 2.0]), 2.0);
/// ```
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Measures the share of the machine's CPU time the hypervisor gave to other guests ("steal",
/// `/proc/stat`) over a stretch of work. Off Linux it reads 0.
///
/// ```
/// let steal = tidewell_testkit::bench::Steal::start();
/// // ... one measurement ...
/// assert!((0.0..=1.0).contains(&steal.share()));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Steal {
    total: f64,
    stolen: f64,
}

impl Steal {
    /// Starts measuring.
    pub fn start() -> Self {
        let (total, stolen) = machine_ticks();
        Self { total, stolen }
    }

    /// The share (0 to 1) of the machine's CPU time stolen since [`Steal::start`].
    pub fn share(&self) -> f64 {
        let (total, stolen) = machine_ticks();
        let elapsed = total - self.total;
        if elapsed <= 0.0 {
            0.0
        } else {
            ((stolen - self.stolen) / elapsed).clamp(0.0, 1.0)
        }
    }
}

/// The most a round may have had stolen and still count.
pub const CALM: f64 = 0.05;

/// The indices of the rounds to count: those whose stolen share is at most [`CALM`], unless fewer
/// than `min` are; then all of them. Returns them and whether the calm ones were too few.
///
/// ```
/// let (keep, too_few) = tidewell_testkit::bench::calm_rounds(&[0.0, 0.2, 0.01], 2);
/// assert_eq!((keep, too_few), (vec![0, 2], false));
/// ```
pub fn calm_rounds(stolen: &[f64], min: usize) -> (Vec<usize>, bool) {
    let calm: Vec<usize> = (0..stolen.len())
        .filter(|&i| stolen.get(i).is_some_and(|&s| s <= CALM))
        .collect();
    if calm.len() < min {
        ((0..stolen.len()).collect(), true)
    } else {
        (calm, false)
    }
}

/// The machine's CPU ticks so far: (all, stolen), from the first line of `/proc/stat`.
fn machine_ticks() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal
        .filter_map(|v| v.parse().ok())
        .collect();
    (ticks.iter().sum(), ticks.get(7).copied().unwrap_or(0.0))
}

/// What a `wrk` run reported (parsed from its standard output by [`WrkReport::parse`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkReport {
    /// `Requests/sec:`.
    pub rps: f64,
    /// Requests completed (`N requests in ...`).
    pub requests: f64,
    /// The 99th percentile latency in ms, when wrk ran with `--latency`.
    pub p99_ms: Option<f64>,
}

impl WrkReport {
    /// Parses wrk's report; `None` when it holds no `Requests/sec:` or request count line.
    ///
    /// ```
    /// let out = "  Latency Distribution\n     99%    2.50ms\n  120 requests in 1.00s, 9.00KB read\nRequests/sec:    120.00\n";
    /// let r = tidewell_testkit::bench::WrkReport::parse(out).unwrap();
    /// assert_eq!((r.rps, r.requests, r.p99_ms), (120.0, 120.0, Some(2.5)));
    /// ```
    pub fn parse(stdout: &str) -> Option<Self> {
        let rps = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())?;
        let requests = stdout
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.parse().ok())?;
        let p99_ms = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("99%"))
            .and_then(|v| latency_ms(v.trim()));
        Some(Self {
            rps,
            requests,
            p99_ms,
        })
    }
}

/// A wrk latency (`812.00us`, `2.50ms`, `1.20s`) in ms.
fn latency_ms(v: &str) -> Option<f64> {
    if let Some(us) = v.strip_suffix("us") {
        Some(us.parse::<f64>().ok()? / 1000.0)
    } else if let Some(ms) = v.strip_suffix("ms") {
        ms.parse().ok()
    } else {
        Some(v.strip_suffix('s')?.parse::<f64>().ok()? * 1000.0)
    }
}
