//! Golden metrics of one workload over time: the points of the dashboard's latency chart.
//!
//! A [`SeriesQuery`] cuts the last `window` (5 minutes by default) into steps (10 s by
//! default) and asks, for each step, what `stat` would answer over that step alone: success,
//! RPS and the latency percentiles, from the same counters and with the same math
//! (`histogram_quantile` over the bucket increase). A step with no snapshot, or no traffic, has
//! no numbers (a gap in the chart, not a zero).
//!
//! Only the embedded [`Store`](super::Store) keeps the history this needs; other sources answer
//! [`QueryError::Unavailable`].
//!
//! ```
//! use std::time::Duration;
//! use mesh_viz::metrics::{SeriesQuery, Store, Workload};
//!
//! let web = Workload {
//!     name: "web".into(),
//!     namespace: "emojivoto".into(),
//!     identity: "web.emojivoto.serviceaccount.identity.mesh.cluster.local".into(),
//!     admin: "127.0.0.1:4191".parse().unwrap(),
//!     tap: Some("127.0.0.1:4190".parse().unwrap()),
//!     inbound: None,
//!     pid: 1,
//! };
//! let store = Store::new();
//! let t0 = tokio::time::Instant::now();
//! let scrape = |ok: u32| format!(
//!     "response_total{{direction=\"inbound\",classification=\"success\"}} {ok}\n"
//! );
//! for i in 0..=6u32 {
//!     store.ingest_at(&web, t0 + Duration::from_secs(10 * u64::from(i)), &scrape(20 * i));
//! }
//! let q = SeriesQuery::new("emojivoto", "web")
//!     .window(Duration::from_secs(60))
//!     .step(Duration::from_secs(10));
//! let series = store.series_at(&q, t0 + Duration::from_secs(60)).unwrap();
//! assert_eq!(series.points.len(), 6);
//! assert!(series.points.iter().all(|p| p.rps == Some(2.0)));
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::query::check_window;
use super::rows::Direction;
use crate::QueryError;

/// How far back a series looks by default: five minutes.
pub const DEFAULT_SERIES_WINDOW: Duration = Duration::from_secs(300);

/// How long one point of a series is by default: ten seconds.
pub const DEFAULT_SERIES_STEP: Duration = Duration::from_secs(10);

/// The most points one series may have.
pub const MAX_SERIES_POINTS: u64 = 720;

/// Golden metrics of one workload over time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesQuery {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload.
    pub name: String,
    /// Which side: `None` picks inbound, or outbound when the workload served nothing in the
    /// window but sent requests (as `stat` does).
    pub direction: Option<Direction>,
    /// How far back. Default is [`DEFAULT_SERIES_WINDOW`].
    pub window: Duration,
    /// How long each point is. Default is [`DEFAULT_SERIES_STEP`].
    pub step: Duration,
}

/// The answer to a [`SeriesQuery`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload.
    pub name: String,
    /// Which side of its proxy the numbers come from.
    pub direction: Direction,
    /// The length of each point, in seconds.
    pub step_secs: f64,
    /// The points, oldest first, one per step.
    pub points: Vec<SeriesPoint>,
}

/// One step of a [`TimeSeries`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// When the step ends, in seconds before the query's time (0 for the newest point).
    pub ago_secs: f64,
    /// Successful responses out of all, 0 to 1.
    pub success: Option<f64>,
    /// Responses per second.
    pub rps: Option<f64>,
    /// Median latency, ms.
    pub latency_ms_p50: Option<u64>,
    /// 95th percentile latency, ms.
    pub latency_ms_p95: Option<u64>,
    /// 99th percentile latency, ms.
    pub latency_ms_p99: Option<u64>,
}

// === impl SeriesQuery ===

impl SeriesQuery {
    /// The series of `namespace/name` over the default window and step.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            direction: None,
            window: DEFAULT_SERIES_WINDOW,
            step: DEFAULT_SERIES_STEP,
        }
    }

    /// Only this side of the proxy.
    pub fn direction(mut self, direction: impl Into<Option<Direction>>) -> Self {
        self.direction = direction.into();
        self
    }

    /// Over `window`.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Points of `step` each.
    pub fn step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }

    /// How many points the series has, once the query is valid.
    pub fn points(&self) -> Result<u64, QueryError> {
        check_window(self.window)?;
        if self.step < Duration::from_secs(1) {
            return Err(QueryError::invalid("the step must be at least 1s"));
        }
        if self.step > self.window {
            return Err(QueryError::invalid(
                "the step must not be longer than the window",
            ));
        }
        let n = (self.window.as_millis() / self.step.as_millis()) as u64;
        if n > MAX_SERIES_POINTS {
            return Err(QueryError::invalid(format!(
                "{n} points is too many (at most {MAX_SERIES_POINTS}): use a longer step"
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use tokio::time::Instant;

    use super::*;
    use crate::metrics::{Store, Workload};

    fn web() -> Workload {
        Workload {
            name: "web".into(),
            namespace: "emojivoto".into(),
            identity: "web.emojivoto.serviceaccount.identity.mesh.cluster.local".into(),
            admin: "127.0.0.1:4191".parse().expect("addr"),
            tap: Some("127.0.0.1:4190".parse().expect("addr")),
            inbound: None,
            pid: 1,
        }
    }

    /// `ok`/`failed` responses on `direction`, and `fast` of them within 10 ms (the rest
    /// within 100 ms).
    fn scrape(direction: &str, ok: u64, failed: u64, fast: u64) -> String {
        let mut s = String::new();
        let l = format!(r#"direction="{direction}""#);
        let _ = writeln!(
            s,
            "response_total{{{l},classification=\"success\"}} {ok}\n\
             response_total{{{l},classification=\"failure\"}} {failed}"
        );
        let all = ok + failed;
        for (le, n) in [("10.0", fast), ("100.0", all), ("+Inf", all)] {
            let _ = writeln!(s, "response_latency_ms_bucket{{{l},le=\"{le}\"}} {n}");
        }
        s
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn each_point_is_stat_over_its_step() {
        let store = Store::new();
        let w = web();
        let t0 = Instant::now();
        // 0-20 s: 2 rps, all fast and successful; 20-40 s: 1 rps, half failing, all slow.
        let samples = [
            (0, scrape("inbound", 0, 0, 0)),
            (10, scrape("inbound", 20, 0, 20)),
            (20, scrape("inbound", 40, 0, 40)),
            (30, scrape("inbound", 45, 5, 40)),
            (40, scrape("inbound", 50, 10, 40)),
        ];
        for (at, text) in &samples {
            store.ingest_at(&w, t0 + secs(*at), text);
        }
        let q = SeriesQuery::new("emojivoto", "web")
            .window(secs(40))
            .step(secs(10));
        let s = store.series_at(&q, t0 + secs(40)).expect("series");
        assert_eq!(s.direction, Direction::Inbound);
        assert_eq!(s.step_secs, 10.0);
        let ago: Vec<f64> = s.points.iter().map(|p| p.ago_secs).collect();
        assert_eq!(ago, [30.0, 20.0, 10.0, 0.0]);
        let rps: Vec<Option<f64>> = s.points.iter().map(|p| p.rps).collect();
        assert_eq!(rps, [Some(2.0), Some(2.0), Some(1.0), Some(1.0)]);
        let success: Vec<Option<f64>> = s.points.iter().map(|p| p.success).collect();
        assert_eq!(success, [Some(1.0), Some(1.0), Some(0.5), Some(0.5)]);
        // Fast steps have their median within the first bucket, slow ones in the second.
        assert!(s.points[0].latency_ms_p50.is_some_and(|p| p <= 10));
        assert!(s.points[3].latency_ms_p50.is_some_and(|p| p > 10));
    }

    #[test]
    fn steps_without_data_are_gaps_and_senders_show_outbound() {
        let store = Store::new();
        let w = web();
        let t0 = Instant::now();
        store.ingest_at(&w, t0 + secs(30), &scrape("outbound", 0, 0, 0));
        store.ingest_at(&w, t0 + secs(40), &scrape("outbound", 10, 0, 10));
        let q = SeriesQuery::new("emojivoto", "web")
            .window(secs(40))
            .step(secs(10));
        let s = store.series_at(&q, t0 + secs(40)).expect("series");
        assert_eq!(s.direction, Direction::Outbound);
        let rps: Vec<Option<f64>> = s.points.iter().map(|p| p.rps).collect();
        assert_eq!(rps, [None, None, None, Some(1.0)]);

        let inbound = q.clone().direction(Direction::Inbound);
        let s = store.series_at(&inbound, t0 + secs(40)).expect("series");
        assert!(s.points.iter().all(|p| p.rps.is_none()));
    }

    #[test]
    fn bad_queries_and_unknown_workloads_are_errors() {
        let store = Store::new();
        let now = Instant::now();
        let q = SeriesQuery::new("emojivoto", "web");
        assert!(matches!(
            store.series_at(&q, now),
            Err(QueryError::NotFound(_))
        ));
        for bad in [
            q.clone().step(Duration::from_millis(10)),
            q.clone().window(secs(5)).step(secs(10)),
            q.clone().window(secs(3600)).step(secs(1)),
            q.clone().window(Duration::ZERO),
        ] {
            assert!(
                matches!(bad.points(), Err(QueryError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(q.points().ok(), Some(30));
    }
}
