//! Failure accrual: eject an endpoint that keeps failing, probe it, restore it.
//!
//! Every response is classified once, by the target's
//! [`Classifier`](mesh_core::classify::Classifier): from the headers for HTTP, from the trailers
//! for gRPC (the response body is watched to its end with
//! [`ObservedBody`](mesh_core::body::ObservedBody)), and errors fail. After
//! [`max_failures`](FailureAccrual::max_failures) failures in a row the endpoint is *ejected*: it
//! reports not-ready, so P2C stops picking it. After a [`Backoff`] (exponential, jittered) it lets
//! exactly one request through, the *probe*; success restores it, failure ejects it again for a
//! longer backoff.
//!
//! Ejection never leaves fewer than
//! [`min_ready_endpoints`](crate::Builder::min_ready_endpoints) other endpoints ready (1 by
//! default): when every endpoint fails, or the others cannot even connect, sending to a failing
//! endpoint beats sending to none (a quick 5xx rather than a 503 after the failfast timeout).
//! Such skipped ejections *fail open*: the endpoint stays in, and the event is counted in
//! `balancer_fail_open_total` (and [`TargetStats::fail_open_total`](crate::TargetStats)).
//!
//! Only the probe's outcome moves an ejected endpoint; late outcomes of requests sent before the
//! ejection are ignored. The state machine runs on `tokio::time`, so tests with paused time are
//! deterministic.

mod future;
mod service;

pub use self::future::EosClassify;
pub(crate) use self::future::ResponseFuture;
pub(crate) use self::service::Accrual;

use std::time::Duration;

use crate::Backoff;

/// When to eject an endpoint and how long to wait before probing it.
///
/// ```
/// use mesh_balance::{Backoff, FailureAccrual};
/// use std::time::Duration;
///
/// let accrual = FailureAccrual::consecutive(5)
///     .with_backoff(Backoff::new(Duration::from_millis(500), Duration::from_secs(30)));
/// assert_eq!(accrual.max_failures(), 5);
/// assert_eq!(FailureAccrual::default().max_failures(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailureAccrual {
    max_failures: u32,
    backoff: Backoff,
}

impl FailureAccrual {
    /// Ejects after `max_failures` consecutive failures (at least 1), probing after a backoff
    /// from 1 s to 60 s with a jitter of 0.5 (Linkerd's defaults).
    pub fn consecutive(max_failures: u32) -> Self {
        Self {
            max_failures: max_failures.max(1),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    /// Sets the probe backoff. Default is 1 s to 60 s, jitter 0.5.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Consecutive failures that eject.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// The probe backoff.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }
}

impl Default for FailureAccrual {
    /// Seven consecutive failures, as Linkerd's `consecutiveFailures` default.
    fn default() -> Self {
        Self::consecutive(7)
    }
}

#[cfg(test)]
mod tests;
