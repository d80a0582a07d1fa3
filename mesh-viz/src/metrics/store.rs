//! The embedded store: a rolling window of scraped snapshots per workload.
//!
//! Each workload keeps its own table of series (a name and a sorted label set, interned once)
//! and a queue of snapshots, each a timestamp and one value per series known at the time
//! (`NaN` for a series absent from that scrape). A snapshot of a proxy with a few hundred
//! series costs a few kilobytes, so ten minutes at one scrape every two seconds stays small.
//! Only the families the queries read are kept (see [`Family`]); everything else a proxy
//! exports is dropped at ingestion.
//!
//! Counters are cumulative, so a rate is the sum of the differences between consecutive
//! snapshots over the window, divided by the time those snapshots span. A counter that went
//! down, or a proxy whose process changed (another pid or admin address), counts as a reset:
//! the new value is all increase, as Prometheus's `rate` treats resets. A series that appears
//! between two scrapes counts from zero (prometheus-client creates a series on first use, so
//! its first value is all new traffic).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::openmetrics::{self, Sample};
use super::workload::Workload;

/// How long snapshots are kept by default: ten minutes.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(600);

/// How long after its last successful scrape a proxy still counts as ready by default.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(10);

/// The most series one workload may hold; beyond it new series are dropped (and logged), so a
/// proxy with runaway label cardinality cannot exhaust the control plane's memory.
pub(crate) const MAX_SERIES_PER_WORKLOAD: usize = 20_000;

/// Where the store reads the time.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The metric families the queries read; every other family is dropped at ingestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// `response_total`.
    Responses,
    /// `actual_response_total` (per attempt, under retries).
    ActualResponses,
    /// `response_latency_ms_bucket`.
    Latency,
    /// `tcp_open_connections`.
    TcpOpen,
    /// `tcp_read_bytes_total`.
    TcpRead,
    /// `tcp_write_bytes_total`.
    TcpWrite,
    /// `proxy_ready`.
    Ready,
}

impl Family {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "response_total" => Self::Responses,
            "actual_response_total" => Self::ActualResponses,
            "response_latency_ms_bucket" => Self::Latency,
            "tcp_open_connections" => Self::TcpOpen,
            "tcp_read_bytes_total" => Self::TcpRead,
            "tcp_write_bytes_total" => Self::TcpWrite,
            "proxy_ready" => Self::Ready,
            _ => return None,
        })
    }
}

/// One series of one workload: a family and a label set.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) family: Family,
    /// Sorted by key.
    labels: Box<[(Arc<str>, Arc<str>)]>,
    /// The `le` bound of a histogram bucket.
    pub(crate) le: Option<f64>,
}

impl Series {
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }
}

/// One scrape of one workload.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    /// Which process produced it: a change means every counter restarted.
    instance: u64,
    /// By series id; `NaN` where the series was absent.
    values: Vec<f64>,
}

impl Snapshot {
    fn get(&self, id: usize) -> Option<f64> {
        self.values.get(id).copied().filter(|v| !v.is_nan())
    }
}

/// The outcome of the last scrape of a workload.
#[derive(Clone, Debug)]
pub(crate) struct LastScrape {
    pub(crate) at: Instant,
    pub(crate) error: Option<String>,
}

/// Everything known about one workload.
#[derive(Debug)]
pub(crate) struct WorkloadData {
    pub(crate) workload: Workload,
    /// Whether its file was there at the last listing (a stopped workload's data is kept
    /// until it ages out, so traffic it sent still counts on the other side).
    pub(crate) present: bool,
    pub(crate) series: Vec<Series>,
    index: HashMap<String, usize>,
    pub(crate) snapshots: VecDeque<Snapshot>,
    pub(crate) last_scrape: Option<LastScrape>,
    pub(crate) last_success: Option<Instant>,
    pub(crate) scrapes: u64,
    pub(crate) failures: u64,
    dropped_series: bool,
}

/// The part of the snapshots a query looks at: from the last snapshot at or before the
/// window's start (or the oldest one) to the newest one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowView<'a> {
    data: &'a WorkloadData,
    base: usize,
    last: usize,
    span_secs: f64,
}

impl<'a> WindowView<'a> {
    /// Whether the window holds two snapshots, so rates are known.
    pub(crate) fn has_rates(&self) -> bool {
        self.span_secs > 0.0
    }

    /// The per-second rate of a counter over the window, resets counted as in Prometheus.
    pub(crate) fn rate(&self, id: usize) -> f64 {
        if !self.has_rates() {
            return 0.0;
        }
        self.increase(id) / self.span_secs
    }

    /// How much a counter grew over the window.
    pub(crate) fn increase(&self, id: usize) -> f64 {
        let snaps = &self.data.snapshots;
        let mut total = 0.0;
        for i in self.base + 1..=self.last {
            let (prev, cur) = (&snaps[i - 1], &snaps[i]);
            let Some(c) = cur.get(id) else { continue };
            let p = if prev.instance == cur.instance {
                prev.get(id)
            } else {
                None
            };
            total += match p {
                Some(p) if c >= p => c - p,
                // A reset (or a series new since the previous scrape): all of it is new.
                _ => c,
            };
        }
        if total.is_finite() { total } else { 0.0 }
    }

    /// A gauge's value in the newest snapshot.
    pub(crate) fn latest(&self, id: usize) -> Option<f64> {
        self.data.snapshots[self.last].get(id)
    }
}

impl WorkloadData {
    fn new(workload: Workload) -> Self {
        Self {
            workload,
            present: true,
            series: Vec::new(),
            index: HashMap::new(),
            snapshots: VecDeque::new(),
            last_scrape: None,
            last_success: None,
            scrapes: 0,
            failures: 0,
            dropped_series: false,
        }
    }

    /// The snapshots covering `window` up to `now`; `None` if no snapshot falls in it.
    pub(crate) fn window(&self, now: Instant, window: Duration) -> Option<WindowView<'_>> {
        let last = self.snapshots.iter().rposition(|s| s.at <= now)?;
        let start = now.checked_sub(window).unwrap_or(self.snapshots[0].at);
        if self.snapshots[last].at < start {
            return None;
        }
        let base = self
            .snapshots
            .iter()
            .take(last + 1)
            .rposition(|s| s.at <= start)
            .unwrap_or(0);
        let span_secs = self.snapshots[last]
            .at
            .saturating_duration_since(self.snapshots[base].at)
            .as_secs_f64();
        Some(WindowView {
            data: self,
            base,
            last,
            span_secs,
        })
    }

    /// The value of a gauge in the newest snapshot, summed over every series of `family`.
    fn latest_sum(&self, family: Family) -> Option<f64> {
        let snap = self.snapshots.back()?;
        let mut found = None;
        for (id, s) in self.series.iter().enumerate() {
            if s.family == family
                && let Some(v) = snap.get(id)
            {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// Whether the proxy is ready: scraped successfully within `stale_after` of `now`, its last
    /// scrape did not fail, and it says it is ready (`proxy_ready`, when it exports it).
    pub(crate) fn is_ready(&self, now: Instant, stale_after: Duration) -> bool {
        let fresh = self
            .last_success
            .is_some_and(|t| now.saturating_duration_since(t) <= stale_after);
        let last_ok = self.last_scrape.as_ref().is_some_and(|l| l.error.is_none());
        fresh && last_ok && self.latest_sum(Family::Ready).is_none_or(|v| v > 0.0)
    }

    fn intern(&mut self, sample: &Sample, strings: &mut HashSet<Arc<str>>) -> Option<usize> {
        let family = Family::of(&sample.name)?;
        let mut labels: Vec<(&str, &str)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        labels.sort_unstable();
        labels.dedup_by(|a, b| a.0 == b.0);
        let mut key = String::with_capacity(64);
        key.push_str(&sample.name);
        for (k, v) in &labels {
            key.push('\0');
            key.push_str(k);
            key.push('\0');
            key.push_str(v);
        }
        if let Some(id) = self.index.get(&key) {
            return Some(*id);
        }
        if self.series.len() >= MAX_SERIES_PER_WORKLOAD {
            if !self.dropped_series {
                self.dropped_series = true;
                tracing::warn!(
                    workload = %self.workload.name,
                    namespace = %self.workload.namespace,
                    limit = MAX_SERIES_PER_WORKLOAD,
                    "too many metric series; dropping new ones"
                );
            }
            return None;
        }
        let mut share = |s: &str| -> Arc<str> {
            if let Some(a) = strings.get(s) {
                return a.clone();
            }
            let a: Arc<str> = Arc::from(s);
            strings.insert(a.clone());
            a
        };
        let le = labels
            .iter()
            .find(|(k, _)| *k == "le")
            .and_then(|(_, v)| openmetrics::parse_value(v));
        let labels = labels.iter().map(|(k, v)| (share(k), share(v))).collect();
        let id = self.series.len();
        self.series.push(Series { family, labels, le });
        self.index.insert(key, id);
        Some(id)
    }
}

fn instance_of(w: &Workload) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    w.pid.hash(&mut h);
    w.admin.hash(&mut h);
    h.finish()
}

/// What the store holds; queries read it under a read lock.
#[derive(Debug, Default)]
pub(crate) struct StoreData {
    pub(crate) workloads: HashMap<(String, String), WorkloadData>,
    strings: HashSet<Arc<str>>,
}

impl StoreData {
    /// Workloads whose file is present, sorted by namespace and name.
    pub(crate) fn present(&self) -> Vec<&WorkloadData> {
        let mut v: Vec<_> = self.workloads.values().filter(|w| w.present).collect();
        v.sort_by(|a, b| a.workload.key().cmp(&b.workload.key()));
        v
    }

    /// Every workload with data, present or not.
    pub(crate) fn all(&self) -> impl Iterator<Item = &WorkloadData> {
        self.workloads.values()
    }
}

/// The embedded metrics store. Cheap to clone; clones share the data.
///
/// Feed it with a [`Scraper`](super::Scraper) (or [`ingest`](Self::ingest) by hand), and ask it
/// the queries of [`MetricsSource`](super::MetricsSource) (or the `*_at` methods, which take the
/// time explicitly and are what tests use).
#[derive(Clone)]
pub struct Store {
    data: Arc<RwLock<StoreData>>,
    clock: Clock,
    retention: Duration,
    stale_after: Duration,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("retention", &self.retention)
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store reading [`tokio::time::Instant::now`], keeping [`DEFAULT_RETENTION`].
    pub fn new() -> Self {
        Self {
            data: Arc::default(),
            clock: Arc::new(Instant::now),
            retention: DEFAULT_RETENTION,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }

    /// Reads the time from `clock` instead (tests drive a manual clock).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long snapshots are kept. Default is [`DEFAULT_RETENTION`], 10 minutes; queries
    /// over longer windows see only this much.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long after its last successful scrape a proxy still counts as ready (and so
    /// meshed). Default is [`DEFAULT_STALE_AFTER`], 10 s; set it to a few scrape intervals.
    pub fn stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// The store's current time.
    pub fn now(&self) -> Instant {
        (self.clock)()
    }

    pub(crate) fn stale_after_duration(&self) -> Duration {
        self.stale_after
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&StoreData) -> T) -> T {
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        f(&data)
    }

    fn write<T>(&self, f: impl FnOnce(&mut StoreData) -> T) -> T {
        let mut data = self.data.write().unwrap_or_else(|p| p.into_inner());
        f(&mut data)
    }

    /// Records which workloads are running now (what the workloads directory lists): they
    /// are present; the others are not, and their data goes once it is older than the
    /// retention.
    pub fn set_workloads(&self, workloads: &[Workload]) {
        let now = self.now();
        let retention = self.retention;
        self.write(|d| {
            for w in d.workloads.values_mut() {
                w.present = false;
            }
            for w in workloads {
                let key = (w.namespace.clone(), w.name.clone());
                let entry = d
                    .workloads
                    .entry(key)
                    .or_insert_with(|| WorkloadData::new(w.clone()));
                entry.present = true;
                entry.workload = w.clone();
            }
            d.workloads.retain(|_, w| {
                w.present
                    || w.snapshots
                        .back()
                        .is_some_and(|s| now.saturating_duration_since(s.at) <= retention)
            });
        });
    }

    /// Parses `text` (a proxy's `/metrics`) and records it as `workload`'s snapshot now.
    /// Returns how many lines could not be parsed.
    pub fn ingest(&self, workload: &Workload, text: &str) -> usize {
        self.ingest_at(workload, self.now(), text)
    }

    /// As [`ingest`](Self::ingest), at a given time (snapshots must come in time order; an
    /// older one than the newest is dropped).
    pub fn ingest_at(&self, workload: &Workload, at: Instant, text: &str) -> usize {
        let parsed = openmetrics::parse(text);
        let retention = self.retention;
        self.write(|d| {
            let StoreData { workloads, strings } = d;
            let data = workloads
                .entry((workload.namespace.clone(), workload.name.clone()))
                .or_insert_with(|| WorkloadData::new(workload.clone()));
            if data.snapshots.back().is_some_and(|s| s.at > at) {
                return;
            }
            data.workload = workload.clone();
            let mut values = vec![f64::NAN; data.series.len()];
            for sample in &parsed.samples {
                if let Some(id) = data.intern(sample, strings) {
                    if values.len() <= id {
                        values.resize(id + 1, f64::NAN);
                    }
                    // Duplicate series in one scrape (which a proxy should not send): sum.
                    values[id] = if values[id].is_nan() {
                        sample.value
                    } else {
                        values[id] + sample.value
                    };
                }
            }
            data.snapshots.push_back(Snapshot {
                at,
                instance: instance_of(workload),
                values,
            });
            // Keep one snapshot at or before the retention's start, so a window as long as
            // the retention still has a base.
            let cutoff = at.checked_sub(retention);
            while let Some(cutoff) = cutoff
                && data.snapshots.len() > 2
                && data.snapshots[1].at <= cutoff
            {
                data.snapshots.pop_front();
            }
            data.last_scrape = Some(LastScrape { at, error: None });
            data.last_success = Some(at);
            data.scrapes += 1;
        });
        parsed.skipped
    }

    /// Records a failed scrape of `workload` now (its proxy is then not ready).
    pub fn record_failure(&self, workload: &Workload, error: impl Into<String>) {
        let at = self.now();
        let error = error.into();
        self.write(|d| {
            let data = d
                .workloads
                .entry((workload.namespace.clone(), workload.name.clone()))
                .or_insert_with(|| WorkloadData::new(workload.clone()));
            data.last_scrape = Some(LastScrape {
                at,
                error: Some(error),
            });
            data.failures += 1;
        });
    }

    /// How many successful scrapes of `namespace/name` the store has recorded.
    pub fn scrapes(&self, namespace: &str, name: &str) -> u64 {
        self.read(|d| {
            d.workloads
                .get(&(namespace.to_string(), name.to_string()))
                .map_or(0, |w| w.scrapes)
        })
    }
}
