//! Counting: every latency goes into an HDR histogram, and a run's numbers
//! (throughput, percentiles, errors) are read off it at the end.
//!
//! An HDR ("high dynamic range") histogram keeps a count per bucket, with
//! buckets whose width grows with the value: 1 µs wide near 1 ms, 1 ms wide
//! near 1 s. So it records anything from a microsecond to minutes with 3
//! significant digits, in a fixed ~170 KiB, at the cost of an array
//! increment per sample, and two of them add up exactly. That is why every
//! connection can keep its own and the run merges them at the end.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The longest latency a histogram holds: 10 minutes, in microseconds.
/// Anything longer is recorded as 10 minutes rather than dropped.
pub const HIGHEST_US: u64 = 10 * 60 * 1_000_000;

/// What one connection, and then a whole run, counted.
#[derive(Clone, Debug)]
pub struct Tally {
    /// One sample per measured reply, in microseconds.
    pub latency: Histogram<u64>,
    /// Replies that were errors, warm-up included: an error is never ignored.
    pub error_replies: u64,
    pub first_error: Option<String>,
    /// Connections that broke (closed, reset, or sent bytes that are not RESP).
    pub dropped: u64,
    pub first_drop: Option<String>,
    /// Requests sent, or due to be sent, on a connection that broke.
    pub unanswered: u64,
    /// Open loop only: the latest the generator sent a request after it was
    /// due. A large lag means the generator, not the server, fell behind.
    pub max_send_lag: Duration,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid bounds"),
            error_replies: 0,
            first_error: None,
            dropped: 0,
            first_drop: None,
            unanswered: 0,
            max_send_lag: Duration::ZERO,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
    }

    /// Counts an error reply. Only the first message is kept (and copied),
    /// so a server that fails everything does not cost an allocation a reply.
    pub fn error_reply(&mut self, message: &[u8]) {
        self.error_replies += 1;
        if self.first_error.is_none() {
            self.first_error = Some(String::from_utf8_lossy(message).into_owned());
        }
    }

    pub fn dropped(&mut self, why: &anyhow::Error, unanswered: u64) {
        self.dropped += 1;
        self.unanswered += unanswered;
        if self.first_drop.is_none() {
            // `{:#}` shows the whole chain of causes on one line.
            self.first_drop = Some(format!("{why:#}"));
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds add up");
        self.error_replies += other.error_replies;
        self.first_error = self
            .first_error
            .take()
            .or_else(|| other.first_error.clone());
        self.dropped += other.dropped;
        self.first_drop = self.first_drop.take().or_else(|| other.first_drop.clone());
        self.unanswered += other.unanswered;
        self.max_send_lag = self.max_send_lag.max(other.max_send_lag);
    }

    /// Error replies and broken connections: the run failed if this is not 0.
    pub fn errors(&self) -> u64 {
        self.error_replies + self.dropped
    }
}

/// A run's numbers, as reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Measured replies, errors included.
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Latencies in microseconds. Each percentile is the highest value its
    /// histogram bucket stands for, as redis-benchmark reports them, so it
    /// is never understated; `min_us` is the lowest.
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Summary {
    /// `elapsed` is the measured part of the run: from the end of the
    /// warm-up to the last reply.
    pub fn new(tally: &Tally, elapsed: Duration) -> Summary {
        let h = &tally.latency;
        let seconds = elapsed.as_secs_f64();
        let at = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        Summary {
            requests: h.len(),
            errors: tally.errors(),
            seconds,
            ops_per_sec: if seconds > 0.0 {
                h.len() as f64 / seconds
            } else {
                0.0
            },
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: at(0.50),
            p95_us: at(0.95),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
        }
    }

    /// The field-by-field median of several runs of the same workload, for
    /// `--compare`; errors and requests are totalled instead, so one bad
    /// round cannot hide behind two good ones.
    pub fn median_of(runs: &[Summary]) -> Summary {
        let float = |field: fn(&Summary) -> f64| median(runs.iter().map(field).collect());
        let micros = |field: fn(&Summary) -> u64| {
            median(runs.iter().map(|s| field(s) as f64).collect()).round() as u64
        };
        Summary {
            requests: runs.iter().map(|s| s.requests).sum(),
            errors: runs.iter().map(|s| s.errors).sum(),
            seconds: runs.iter().map(|s| s.seconds).sum(),
            ops_per_sec: float(|s| s.ops_per_sec),
            min_us: micros(|s| s.min_us),
            mean_us: float(|s| s.mean_us),
            p50_us: micros(|s| s.p50_us),
            p95_us: micros(|s| s.p95_us),
            p99_us: micros(|s| s.p99_us),
            p999_us: micros(|s| s.p999_us),
            max_us: micros(|s| s.max_us),
        }
    }
}

/// The middle value; the mean of the two middle ones for an even count.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally_of(micros: impl IntoIterator<Item = u64>) -> Tally {
        let mut tally = Tally::new();
        for us in micros {
            tally.record(Duration::from_micros(us));
        }
        tally
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        // 1..=1000 µs once each: below 2048 every value has its own bucket.
        let s = Summary::new(&tally_of(1..=1000), Duration::from_secs(2));
        assert_eq!(s.requests, 1000);
        assert_eq!(s.ops_per_sec, 500.0);
        assert_eq!((s.min_us, s.p50_us, s.p95_us), (1, 500, 950));
        assert_eq!((s.p99_us, s.p999_us, s.max_us), (990, 999, 1000));
        assert_eq!(s.mean_us, 500.5);
    }

    #[test]
    fn large_values_keep_three_significant_digits() {
        let s = Summary::new(&tally_of([1_234_567]), Duration::from_secs(1));
        // Reported as the top of its bucket: within 0.1% above the truth.
        assert!((1_234_567..=1_235_802).contains(&s.max_us), "{}", s.max_us);
        let s = Summary::new(&tally_of([u64::MAX / 2]), Duration::from_secs(1));
        assert!(s.max_us >= HIGHEST_US, "saturates instead of dropping");
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        // 990 fast requests and 10 stuck for a second.
        let tally = tally_of((0..990).map(|_| 100).chain((0..10).map(|_| 1_000_000)));
        let s = Summary::new(&tally, Duration::from_secs(1));
        assert_eq!((s.p50_us, s.p95_us, s.p99_us), (100, 100, 100));
        assert!(s.p999_us >= 1_000_000 && s.max_us >= 1_000_000);
        assert!(s.p50_us <= s.p95_us && s.p95_us <= s.p99_us && s.p99_us <= s.max_us);
    }

    #[test]
    fn an_empty_run_reports_zeros_not_garbage() {
        let s = Summary::new(&Tally::new(), Duration::ZERO);
        assert_eq!(
            (s.requests, s.ops_per_sec, s.max_us, s.min_us),
            (0, 0.0, 0, 0)
        );
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_first_messages() {
        let mut a = tally_of([10, 20]);
        a.error_reply(b"ERR first");
        let mut b = tally_of([30]);
        b.error_reply(b"ERR second");
        b.dropped(&anyhow::anyhow!("reset"), 5);
        b.max_send_lag = Duration::from_millis(3);
        a.merge(&b);
        assert_eq!(a.latency.len(), 3);
        assert_eq!((a.error_replies, a.dropped, a.unanswered), (2, 1, 5));
        assert_eq!(a.errors(), 3);
        assert_eq!(a.first_error.as_deref(), Some("ERR first"));
        assert_eq!(a.first_drop.as_deref(), Some("reset"));
        assert_eq!(a.max_send_lag, Duration::from_millis(3));
    }

    #[test]
    fn medians_resist_one_noisy_round() {
        assert_eq!(median(vec![3.0, 100.0, 1.0]), 3.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let run = |ops: f64, p99: u64, errors: u64| Summary {
            ops_per_sec: ops,
            p99_us: p99,
            errors,
            ..Summary::new(&Tally::new(), Duration::ZERO)
        };
        let m = Summary::median_of(&[run(100.0, 50, 0), run(10.0, 900, 1), run(110.0, 60, 0)]);
        assert_eq!((m.ops_per_sec, m.p99_us, m.errors), (100.0, 60, 1));
    }
}
