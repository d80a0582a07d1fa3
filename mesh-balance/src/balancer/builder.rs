use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use mesh_core::BoxError;
use mesh_core::classify::Classifier;
use tower::buffer::Buffer;
use tower::discover::Discover;
use tower_service::Service;
use tracing::Instrument;

use super::Balancer;
use crate::failfast::FailFast;
use crate::metrics::TargetMetrics;
use crate::pool::EndpointConfig;
use crate::state::{TargetConfig, TargetState};
use mesh_core::stack::NewService;

use crate::{Backoff, BalanceMetrics, Endpoint, FailureAccrual, Pool, TargetStats};

/// Configures and builds a [`Balancer`] (or a bare [`Pool`]) for one target.
///
/// ```
/// use mesh_balance::{BalanceMetrics, Builder, FailureAccrual};
/// use prometheus_client::registry::Registry;
/// use std::time::Duration;
///
/// let mut registry = Registry::default();
/// let metrics = BalanceMetrics::register(&mut registry);
/// let builder = Builder::new("voting.emojivoto.svc.cluster.local:8080")
///     .queue_capacity(1_000)
///     .failfast_timeout(Duration::from_secs(1))
///     .failure_accrual(FailureAccrual::consecutive(5))
///     .metrics(&metrics);
/// # let _ = builder;
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    target: Arc<str>,
    capacity: usize,
    failfast: Duration,
    accrual: Option<FailureAccrual>,
    min_ready: usize,
    default_rtt: Duration,
    decay: Duration,
    classifier: Classifier,
    renew: Backoff,
    metrics: Option<BalanceMetrics>,
}

impl Builder {
    /// Starts configuring a balancer for `target`: a name for logs, metrics and errors, e.g.
    /// `voting.emojivoto.svc.cluster.local:8080`.
    pub fn new(target: impl Into<Arc<str>>) -> Self {
        Self {
            target: target.into(),
            capacity: 10_000,
            failfast: Duration::from_secs(3),
            accrual: Some(FailureAccrual::default()),
            min_ready: 1,
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            classifier: Classifier::default(),
            renew: Backoff::new(Duration::from_millis(100), Duration::from_secs(3)),
            metrics: None,
        }
    }

    /// How many requests may wait for an endpoint; more are shed with
    /// [`Reason::QueueFull`](crate::Reason::QueueFull). Default is 10,000 (Linkerd's), at least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How long requests wait for a ready endpoint before the balancer fails them (and every
    /// request after them, until an endpoint is ready) with
    /// [`Unavailable`](crate::Unavailable). Default is 3 s (Linkerd's outbound failfast).
    pub fn failfast_timeout(mut self, timeout: Duration) -> Self {
        self.failfast = timeout;
        self
    }

    /// When to eject endpoints ([`accrual`](crate::accrual)), or `None` never to.
    /// Default is [`FailureAccrual::default`]: 7 consecutive failures, probes backing off from
    /// 1 s to 60 s.
    pub fn failure_accrual(mut self, accrual: impl Into<Option<FailureAccrual>>) -> Self {
        self.accrual = accrual.into();
        self
    }

    /// The fewest *other* endpoints that must be ready for failure accrual to eject one; an
    /// ejection that would leave fewer is skipped and counted as failing open. Default is 1:
    /// never eject the last ready endpoint. 0 allows ejecting them all (requests then fail fast
    /// with [`Reason::AllEjected`](crate::Reason::AllEjected)).
    pub fn min_ready_endpoints(mut self, n: usize) -> Self {
        self.min_ready = n;
        self
    }

    /// The peak-EWMA parameters, as in Linkerd's `PeakEwma { default_rtt, decay }`: the latency
    /// assumed per request in flight to an endpoint that has not answered yet (default 30 ms; an
    /// endpoint that has not answered and has nothing in flight is tried first), and the decay
    /// time over which older observations fade (default 10 s).
    pub fn peak_ewma(mut self, default_rtt: Duration, decay: Duration) -> Self {
        self.default_rtt = default_rtt;
        self.decay = decay;
        self
    }

    /// What counts as a failure for failure accrual. Default is [`Classifier::default`] (5xx,
    /// non-zero gRPC status, errors).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// The backoff before an endpoint service that failed to become ready is rebuilt. Default is
    /// 100 ms to 3 s, jitter 0.5.
    pub fn renew_backoff(mut self, backoff: Backoff) -> Self {
        self.renew = backoff;
        self
    }

    /// Reports into these metrics, labelled with this target. Default is none (the
    /// [`TargetStats`] are kept either way).
    pub fn metrics(mut self, metrics: &BalanceMetrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    fn target_state(&self) -> Arc<TargetState> {
        let metrics = match &self.metrics {
            Some(m) => m.target(&self.target),
            None => TargetMetrics::detached(),
        };
        TargetState::new(TargetConfig {
            name: self.target.clone(),
            classifier: self.classifier.clone(),
            accrual: self.accrual,
            min_ready: self.min_ready,
            decay: self.decay,
            default_rtt: self.default_rtt,
            metrics,
        })
    }

    fn endpoint_config(&self) -> EndpointConfig {
        EndpointConfig { renew: self.renew }
    }

    /// Builds the bare P2C pool over `discover`, building each endpoint's service with `new`.
    /// No queue, no failfast: see [`Pool`].
    pub fn build_pool<D, N, B, RB>(self, discover: D, new: N) -> Pool<D, N, B>
    where
        D: Discover<Key = SocketAddr, Service = Endpoint>,
        D::Error: Into<BoxError>,
        N: NewService<Endpoint> + Clone,
        N::Service: Service<Request<B>, Response = Response<RB>>,
        <N::Service as Service<Request<B>>>::Error: Into<BoxError>,
        RB: http_body::Body,
    {
        let target = self.target_state();
        Pool::new(discover, new, target, self.endpoint_config())
    }

    /// Builds the balancer over `discover`, building each endpoint's service with `new`, and
    /// spawns its worker task (so it must be called within a Tokio runtime). The worker, and with
    /// it discovery and the endpoints, stops when the last clone of the balancer is dropped.
    pub fn build<D, N, B, RB>(self, discover: D, new: N) -> Balancer<N::Service, B>
    where
        D: Discover<Key = SocketAddr, Service = Endpoint> + Unpin + Send + 'static,
        D::Error: Into<BoxError>,
        N: NewService<Endpoint> + Clone + Unpin + Send + 'static,
        N::Service: Service<Request<B>, Response = Response<RB>> + Send + 'static,
        <N::Service as Service<Request<B>>>::Error: Into<BoxError>,
        <N::Service as Service<Request<B>>>::Future: Send + 'static,
        B: Send + 'static,
        RB: http_body::Body + Send + 'static,
    {
        let target = self.target_state();
        let stats = TargetStats(target.clone());
        let pool = Pool::new(discover, new, target.clone(), self.endpoint_config());
        let failfast = FailFast::new(pool, self.failfast, target);
        let (buffer, worker) = Buffer::pair(failfast, self.capacity);
        let span = tracing::debug_span!("balancer", target = %self.target);
        tokio::spawn(worker.instrument(span));
        Balancer::new(buffer, stats, self.capacity)
    }
}
