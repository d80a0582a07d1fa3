//! What a balancer knows about its endpoints, readable at any time (for `top`-style views).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Reason;
use crate::state::TargetState;

/// A live view of one balancer's endpoints. Cheap to clone; reading it takes no lock except
/// [`endpoints`](Self::endpoints).
#[derive(Clone)]
pub struct TargetStats(pub(crate) Arc<TargetState>);

/// One endpoint, as its balancer sees it now.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointSnapshot {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Ready, pending or ejected.
    pub status: EndpointStatus,
    /// Peak-EWMA of its response latency (time to response headers), the estimate P2C weighs;
    /// `None` before the first response. A slower response raises it at once; faster ones pull
    /// it down over the balancer's decay time (10 s by default).
    pub latency_ewma: Option<Duration>,
    /// Requests sent to it and waiting for their response headers.
    pub in_flight: usize,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Requests classified so far.
    pub responses: u64,
    /// Of those, failures.
    pub failures: u64,
}

/// Where an endpoint stands in its balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointStatus {
    /// It can take a request now.
    Ready,
    /// It cannot yet (connecting, saturated, or rebuilding after an error).
    Pending,
    /// Failure accrual holds it back until a probe succeeds.
    Ejected,
}

impl TargetStats {
    /// The balancer's target name.
    pub fn target(&self) -> &str {
        self.0.name()
    }

    /// Endpoints the balancer holds (ready, pending or ejected).
    pub fn len(&self) -> usize {
        self.0.endpoints_total()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Endpoints ready for a request.
    pub fn ready(&self) -> usize {
        self.0.ready_now()
    }

    /// Endpoints not ready (and not ejected).
    pub fn pending(&self) -> usize {
        self.0.pending_now()
    }

    /// Endpoints ejected by failure accrual.
    pub fn ejected(&self) -> usize {
        self.0.ejected_now()
    }

    /// Ejections so far.
    pub fn ejections_total(&self) -> u64 {
        self.0.ejections_total()
    }

    /// Ejections skipped so far because too few endpoints would have been left.
    pub fn fail_open_total(&self) -> u64 {
        self.0.fail_open_total()
    }

    /// Requests failed fast so far for `reason`.
    pub fn unavailable_total(&self, reason: Reason) -> u64 {
        self.0.unavailable_total(reason)
    }

    /// Every endpoint, sorted by address.
    pub fn endpoints(&self) -> Vec<EndpointSnapshot> {
        self.0.snapshot()
    }
}

impl fmt::Debug for TargetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetStats")
            .field("target", &self.target())
            .field("ready", &self.ready())
            .field("pending", &self.pending())
            .field("ejected", &self.ejected())
            .finish()
    }
}
