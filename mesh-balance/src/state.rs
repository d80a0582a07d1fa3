//! State shared between a balancer, its endpoint services and their response futures.
//!
//! One [`TargetState`] per balancer: endpoint counts (for the ejection budget and the failfast
//! reason), gauges and counters, and weak links to the endpoints for snapshots. One
//! [`EndpointShared`] per endpoint service: the failure-accrual gate, the consecutive-failure
//! count, and the latency estimate a `top` view reads.
//!
//! The request path touches atomics only. Locks are taken on rare transitions: an endpoint
//! joining or leaving, an ejection, a probe's end, a snapshot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use mesh_core::classify::{Class, Classifier};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::accrual::FailureAccrual;
use crate::error::{REASONS, Reason, Unavailable, reason_index};
use crate::metrics::TargetMetrics;
use crate::stats::{EndpointSnapshot, EndpointStatus};

/// The gate failure accrual keeps in front of an endpoint.
pub(crate) mod gate {
    /// Requests flow.
    pub(crate) const OPEN: u8 = 0;
    /// Ejected: not ready until the probe time.
    pub(crate) const EJECTED: u8 = 1;
    /// The backoff elapsed: the next request is the probe.
    pub(crate) const PROBE_READY: u8 = 2;
    /// The probe is in flight: not ready until it ends.
    pub(crate) const PROBE_IN_FLIGHT: u8 = 3;
    /// Removed from discovery: late outcomes are ignored.
    pub(crate) const REMOVED: u8 = 4;

    pub(crate) const fn is_ejected(g: u8) -> bool {
        matches!(g, EJECTED | PROBE_READY | PROBE_IN_FLIGHT)
    }
}

/// Where an endpoint stands, as counted in the gauges.
mod view {
    pub(super) const PENDING: u8 = 0;
    pub(super) const READY: u8 = 1;
    pub(super) const EJECTED: u8 = 2;
    pub(super) const GONE: u8 = 3;
}

/// One balancer's shared state.
pub(crate) struct TargetState {
    name: Arc<str>,
    epoch: Instant,
    pub(crate) classifier: Classifier,
    pub(crate) accrual: Option<FailureAccrual>,
    min_ready: usize,
    decay_ns: f64,
    default_rtt_ns: f64,
    counts: Mutex<Counts>,
    endpoints: Mutex<Vec<Weak<EndpointShared>>>,
    ready: Level,
    pending: Level,
    ejected: Level,
    ejections: Tally,
    fail_open: Tally,
    unavailable: [Tally; REASONS.len()],
}

#[derive(Debug, Default)]
struct Counts {
    /// Endpoint services alive in the balancer.
    total: usize,
    /// Of those, how many are ejected.
    ejected: usize,
}

/// A gauge readable without the registry.
#[derive(Debug)]
struct Level {
    own: AtomicI64,
    prom: Gauge,
}

/// A counter readable without the registry.
#[derive(Debug)]
struct Tally {
    own: AtomicU64,
    prom: Counter,
}

/// One endpoint's shared state.
pub(crate) struct EndpointShared {
    addr: SocketAddr,
    target: Arc<TargetState>,
    gate: AtomicU8,
    view: AtomicU8,
    failures: AtomicU32,
    probe: Mutex<Probe>,
    pub(crate) waker: AtomicWaker,
    /// Peak-EWMA of response latency in nanoseconds (f64 bits); 0 before the first response.
    ewma_ns: AtomicU64,
    /// When `ewma_ns` was last updated, in nanoseconds since the target's epoch.
    ewma_at: AtomicU64,
    /// Requests sent and waiting for their response headers.
    in_flight: AtomicI64,
    responses: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug)]
struct Probe {
    attempt: u32,
    at: Instant,
}

pub(crate) struct TargetConfig {
    pub(crate) name: Arc<str>,
    pub(crate) classifier: Classifier,
    pub(crate) accrual: Option<FailureAccrual>,
    pub(crate) min_ready: usize,
    pub(crate) decay: Duration,
    pub(crate) default_rtt: Duration,
    pub(crate) metrics: TargetMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// === impl TargetState ===

impl TargetState {
    pub(crate) fn new(config: TargetConfig) -> Arc<Self> {
        let TargetConfig {
            name,
            classifier,
            accrual,
            min_ready,
            decay,
            default_rtt,
            metrics,
        } = config;
        let TargetMetrics {
            ready,
            pending,
            ejected,
            ejections,
            fail_open,
            unavailable,
        } = metrics;
        Arc::new(Self {
            name,
            epoch: Instant::now(),
            classifier,
            accrual,
            min_ready,
            decay_ns: (decay.as_nanos() as f64).max(1.0),
            default_rtt_ns: (default_rtt.as_nanos() as f64).max(1.0),
            counts: Mutex::default(),
            endpoints: Mutex::default(),
            ready: Level::new(ready),
            pending: Level::new(pending),
            ejected: Level::new(ejected),
            ejections: Tally::new(ejections),
            fail_open: Tally::new(fail_open),
            unavailable: unavailable.map(Tally::new),
        })
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A new endpoint service joins: counted as pending until it first reports ready.
    pub(crate) fn join(self: &Arc<Self>, addr: SocketAddr) -> Arc<EndpointShared> {
        let ep = Arc::new(EndpointShared {
            addr,
            target: self.clone(),
            gate: AtomicU8::new(gate::OPEN),
            view: AtomicU8::new(view::PENDING),
            failures: AtomicU32::new(0),
            probe: Mutex::new(Probe {
                attempt: 0,
                at: Instant::now(),
            }),
            waker: AtomicWaker::new(),
            ewma_ns: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            responses: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        lock(&self.counts).total += 1;
        self.pending.inc();
        let mut eps = lock(&self.endpoints);
        eps.retain(|w| w.strong_count() > 0);
        eps.push(Arc::downgrade(&ep));
        ep
    }

    /// The error for a request failed fast, counted by reason.
    pub(crate) fn unavailable(&self, waited: Option<Duration>) -> Unavailable {
        let counts = lock(&self.counts);
        let reason = if counts.total == 0 {
            Reason::NoEndpoints
        } else if counts.ejected >= counts.total {
            Reason::AllEjected
        } else {
            Reason::FailFast
        };
        let err = Unavailable::new(self.name.clone(), reason)
            .with_counts(counts.total, counts.ejected)
            .with_waited(waited);
        drop(counts);
        self.count_unavailable(reason);
        err
    }

    pub(crate) fn count_unavailable(&self, reason: Reason) {
        if let Some(i) = reason_index(reason) {
            self.unavailable[i].inc();
        }
    }

    pub(crate) fn endpoints_total(&self) -> usize {
        lock(&self.counts).total
    }

    pub(crate) fn ready_now(&self) -> usize {
        self.ready.get()
    }

    pub(crate) fn pending_now(&self) -> usize {
        self.pending.get()
    }

    pub(crate) fn ejected_now(&self) -> usize {
        self.ejected.get()
    }

    pub(crate) fn ejections_total(&self) -> u64 {
        self.ejections.get()
    }

    pub(crate) fn fail_open_total(&self) -> u64 {
        self.fail_open.get()
    }

    pub(crate) fn unavailable_total(&self, reason: Reason) -> u64 {
        reason_index(reason).map_or(0, |i| self.unavailable[i].get())
    }

    pub(crate) fn snapshot(&self) -> Vec<EndpointSnapshot> {
        let eps: Vec<_> = lock(&self.endpoints)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut out: Vec<_> = eps.iter().filter_map(|ep| ep.snapshot()).collect();
        out.sort_by_key(|s| s.addr);
        out
    }

    fn level(&self, v: u8) -> Option<&Level> {
        match v {
            view::PENDING => Some(&self.pending),
            view::READY => Some(&self.ready),
            view::EJECTED => Some(&self.ejected),
            _ => None,
        }
    }

    fn nanos_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

// === impl EndpointShared ===

impl EndpointShared {
    pub(crate) fn target(&self) -> &TargetState {
        &self.target
    }

    pub(crate) fn gate(&self) -> u8 {
        self.gate.load(Ordering::Acquire)
    }

    /// When the ejected endpoint may be probed.
    pub(crate) fn probe_at(&self) -> Instant {
        lock(&self.probe).at
    }

    /// The backoff elapsed: let the next request through as the probe.
    pub(crate) fn open_probe_window(&self) {
        let _ = self.gate.compare_exchange(
            gate::EJECTED,
            gate::PROBE_READY,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A request is dispatched; returns whether it is the probe.
    pub(crate) fn dispatch(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.gate.load(Ordering::Acquire) == gate::PROBE_READY
            && self
                .gate
                .compare_exchange(
                    gate::PROBE_READY,
                    gate::PROBE_IN_FLIGHT,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// The endpoint service reported ready or not (only counted while the gate is open).
    pub(crate) fn set_ready(&self, ready: bool) {
        let to = if ready { view::READY } else { view::PENDING };
        let cur = self.view.load(Ordering::Relaxed);
        if cur == to {
            return;
        }
        if let Ok(from) = self
            .view
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                matches!(v, view::READY | view::PENDING).then_some(to)
            })
            && from != to
        {
            self.move_view(from, to);
        }
    }

    fn force_view(&self, to: u8) {
        let from = self.view.swap(to, Ordering::AcqRel);
        if from != to {
            self.move_view(from, to);
        }
    }

    fn move_view(&self, from: u8, to: u8) {
        if let Some(l) = self.target.level(from) {
            l.dec();
        }
        if let Some(l) = self.target.level(to) {
            l.inc();
        }
    }

    /// A request ended with `class`; `probe` says whether it was the probe.
    pub(crate) fn record(&self, class: Class, probe: bool) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        if class == Class::Failure {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if probe {
            return self.end_probe(class);
        }
        match class {
            Class::Success => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Class::Failure => {
                let n = self
                    .failures
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                if let Some(accrual) = &self.target.accrual
                    && n >= accrual.max_failures()
                    && self.gate() == gate::OPEN
                {
                    self.try_eject(accrual);
                }
            }
        }
    }

    /// A request ended without an outcome (its response was dropped before it was classified).
    pub(crate) fn abandon(&self, probe: bool) {
        if probe
            && self
                .gate
                .compare_exchange(
                    gate::PROBE_IN_FLIGHT,
                    gate::PROBE_READY,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.waker.wake();
        }
    }

    fn try_eject(&self, accrual: &FailureAccrual) {
        let target = &*self.target;
        let mut counts = lock(&target.counts);
        if self.gate() != gate::OPEN {
            return;
        }
        self.failures.store(0, Ordering::Relaxed);
        // Endpoints that would still take requests: the ready ones but this one. (Pending ones
        // do not count: they may never connect.)
        let me = usize::from(self.view.load(Ordering::Acquire) == view::READY);
        let left = target.ready.get().saturating_sub(me);
        if left < target.min_ready {
            drop(counts);
            target.fail_open.inc();
            tracing::warn!(
                target = %target.name,
                endpoint = %self.addr,
                failures = accrual.max_failures(),
                "endpoint keeps failing but is not ejected: too few endpoints would be left (failing open)"
            );
            return;
        }
        counts.ejected += 1;
        let delay = accrual.backoff().delay(0);
        *lock(&self.probe) = Probe {
            attempt: 0,
            at: Instant::now() + delay,
        };
        self.gate.store(gate::EJECTED, Ordering::Release);
        drop(counts);
        self.force_view(view::EJECTED);
        target.ejections.inc();
        tracing::info!(
            target = %target.name,
            endpoint = %self.addr,
            failures = accrual.max_failures(),
            probe_in = ?delay,
            "ejected endpoint after consecutive failures"
        );
    }

    fn end_probe(&self, class: Class) {
        let target = &*self.target;
        let mut counts = lock(&target.counts);
        if self.gate() != gate::PROBE_IN_FLIGHT {
            return;
        }
        match class {
            Class::Success => {
                counts.ejected = counts.ejected.saturating_sub(1);
                self.failures.store(0, Ordering::Relaxed);
                lock(&self.probe).attempt = 0;
                self.gate.store(gate::OPEN, Ordering::Release);
                drop(counts);
                // It sits among the pending services until polled again.
                self.force_view(view::PENDING);
                tracing::info!(target = %target.name, endpoint = %self.addr, "probe succeeded; endpoint restored");
            }
            Class::Failure => {
                let backoff = target.accrual.map(|a| a.backoff());
                let mut probe = lock(&self.probe);
                probe.attempt = probe.attempt.saturating_add(1);
                let delay = backoff.map_or(Duration::ZERO, |b| b.delay(probe.attempt));
                probe.at = Instant::now() + delay;
                drop(probe);
                self.gate.store(gate::EJECTED, Ordering::Release);
                drop(counts);
                tracing::debug!(target = %target.name, endpoint = %self.addr, probe_in = ?delay, "probe failed");
            }
        }
        self.waker.wake();
    }

    /// The endpoint service was dropped (removed by discovery, or replaced).
    pub(crate) fn leave(&self) {
        let target = &*self.target;
        let mut counts = lock(&target.counts);
        counts.total = counts.total.saturating_sub(1);
        let g = self.gate.swap(gate::REMOVED, Ordering::AcqRel);
        if gate::is_ejected(g) {
            counts.ejected = counts.ejected.saturating_sub(1);
        }
        drop(counts);
        self.force_view(view::GONE);
    }

    /// The response headers arrived (or the request failed, or was given up on) `rtt` after it
    /// was sent: the request is no longer in flight, and its latency feeds the estimate.
    ///
    /// The estimate is a peak-EWMA, as tower's and Finagle's: a latency above it replaces it at
    /// once; one below pulls it down with weight `1 - e^(-elapsed/decay)`, `elapsed` being the
    /// time since the previous sample. The first sample sets it.
    pub(crate) fn complete(&self, rtt: Duration, now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let rtt = (rtt.as_nanos() as f64).max(1.0);
        let now_ns = self.target.nanos_since_epoch(now);
        let prev_at = self.ewma_at.swap(now_ns, Ordering::Relaxed);
        let w = (-(now_ns.saturating_sub(prev_at) as f64) / self.target.decay_ns).exp();
        let _ = self
            .ewma_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let est = f64::from_bits(bits);
                let next = if bits == 0 || est < rtt {
                    rtt
                } else {
                    est * w + rtt * (1.0 - w)
                };
                Some(next.to_bits())
            });
    }

    /// What P2C compares: the latency estimate, decayed toward zero while no response arrives
    /// (so an endpoint that was slow is tried again after a while, as tower's `PeakEwma` does),
    /// times the requests in flight plus one.
    ///
    /// Before its first response an endpoint costs nothing while idle, so a new endpoint is
    /// tried at once instead of waiting for the others' estimates to decay below a guess, and
    /// the default RTT per request while it has requests in flight, so it is not flooded before
    /// it has answered (Finagle's rule).
    pub(crate) fn load(&self, now: Instant) -> f64 {
        let bits = self.ewma_ns.load(Ordering::Relaxed);
        let in_flight = self.in_flight.load(Ordering::Relaxed).max(0) as f64;
        if bits == 0 {
            return self.target.default_rtt_ns * in_flight;
        }
        let at = self.ewma_at.load(Ordering::Relaxed);
        let idle = self.target.nanos_since_epoch(now).saturating_sub(at) as f64;
        f64::from_bits(bits) * (-idle / self.target.decay_ns).exp() * (in_flight + 1.0)
    }

    fn snapshot(&self) -> Option<EndpointSnapshot> {
        let status = match self.view.load(Ordering::Acquire) {
            view::READY => EndpointStatus::Ready,
            view::PENDING => EndpointStatus::Pending,
            view::EJECTED => EndpointStatus::Ejected,
            _ => return None,
        };
        let bits = self.ewma_ns.load(Ordering::Relaxed);
        Some(EndpointSnapshot {
            addr: self.addr,
            status,
            latency_ewma: (bits != 0).then(|| Duration::from_nanos(f64::from_bits(bits) as u64)),
            in_flight: usize::try_from(self.in_flight.load(Ordering::Relaxed)).unwrap_or(0),
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            responses: self.responses.load(Ordering::Relaxed),
            failures: self.failed.load(Ordering::Relaxed),
        })
    }
}

// === impl Level ===

impl Level {
    fn new(prom: Gauge) -> Self {
        Self {
            own: AtomicI64::new(0),
            prom,
        }
    }

    fn inc(&self) {
        self.own.fetch_add(1, Ordering::Relaxed);
        self.prom.inc();
    }

    fn dec(&self) {
        self.own.fetch_sub(1, Ordering::Relaxed);
        self.prom.dec();
    }

    fn get(&self) -> usize {
        usize::try_from(self.own.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

// === impl Tally ===

impl Tally {
    fn new(prom: Counter) -> Self {
        Self {
            own: AtomicU64::new(0),
            prom,
        }
    }

    fn inc(&self) {
        self.own.fetch_add(1, Ordering::Relaxed);
        self.prom.inc();
    }

    fn get(&self) -> u64 {
        self.own.load(Ordering::Relaxed)
    }
}
