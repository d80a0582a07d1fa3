use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Linkerd's `response_latency_ms` bucket bounds, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1_000.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0,
];

/// A latency histogram in milliseconds with Linkerd's buckets, recorded without locks.
///
/// prometheus-client's `Histogram` takes a mutex per observation; this one does three relaxed
/// atomic additions, which is what the request path can afford. Cheap to clone; clones share
/// the counts.
///
/// ```
/// use mesh_core::metrics::LatencyHistogram;
/// use std::time::Duration;
///
/// let h = LatencyHistogram::default();
/// h.observe(Duration::from_micros(1500));
/// h.observe(Duration::from_millis(70));
/// assert_eq!(h.count(), 2);
/// assert_eq!(h.bucket_counts()[1], 1); // the 2 ms bucket
/// ```
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// One per bound, plus +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(Arc::new(Inner {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }))
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn observe(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let ms = micros as f64 / 1000.0;
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Per-bucket (not cumulative) counts, the last one for +Inf.
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The sum of recorded latencies, in milliseconds.
    pub fn sum_ms(&self) -> f64 {
        self.0.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counts = self.bucket_counts();
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied())
            .collect();
        // Count from the buckets so the exposition is self-consistent under concurrent writes.
        let count = counts.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum_ms(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
