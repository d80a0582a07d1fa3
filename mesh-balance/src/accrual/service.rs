use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use mesh_core::BoxError;
use mesh_core::body::ObservedBody;
use tokio::time::{Instant, Sleep};
use tower::load::Load;
use tower_service::Service;

use super::{EosClassify, ResponseFuture};
use crate::state::{EndpointShared, gate};

/// Gates an endpoint service on its failure-accrual state, classifies its responses, and
/// measures the load P2C compares (peak-EWMA latency times requests in flight).
///
/// Not ready while ejected (the balancer moves it to its pending set); ready again for one probe
/// when the backoff elapses; not ready while the probe is in flight. Dropping it (discovery
/// removed the endpoint) takes it out of the target's counts.
pub(crate) struct Accrual<S> {
    inner: S,
    shared: Arc<EndpointShared>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Accrual<S> {
    pub(crate) fn new(inner: S, shared: Arc<EndpointShared>) -> Self {
        Self {
            inner,
            shared,
            sleep: None,
        }
    }

    /// Waits out an ejection, then opens the probe window.
    fn poll_gate(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.shared.gate() {
                gate::EJECTED => {
                    let at = self.shared.probe_at();
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if sleep.deadline() != at {
                        sleep.as_mut().reset(at);
                    }
                    ready!(sleep.as_mut().poll(cx));
                    if Instant::now() >= self.shared.probe_at() {
                        self.shared.open_probe_window();
                    }
                }
                gate::PROBE_IN_FLIGHT => {
                    self.shared.waker.register(cx.waker());
                    if self.shared.gate() == gate::PROBE_IN_FLIGHT {
                        return Poll::Pending;
                    }
                }
                // OPEN, PROBE_READY (or REMOVED, which a live service never sees).
                _ => return Poll::Ready(()),
            }
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Accrual<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Response = Response<ObservedBody<RB, EosClassify>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.poll_gate(cx));
        let open = self.shared.gate() == gate::OPEN;
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                if open {
                    self.shared.set_ready(true);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if open {
                    self.shared.set_ready(false);
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let probe = self.shared.dispatch();
        ResponseFuture::new(self.inner.call(req), self.shared.clone(), probe)
    }
}

/// The load P2C compares; see [`EndpointShared::load`].
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub(crate) struct Cost(f64);

impl<S> Load for Accrual<S> {
    type Metric = Cost;

    fn load(&self) -> Cost {
        Cost(self.shared.load(Instant::now()))
    }
}

impl<S> Drop for Accrual<S> {
    fn drop(&mut self) {
        self.shared.leave();
    }
}

impl<S: fmt::Debug> fmt::Debug for Accrual<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accrual")
            .field("inner", &self.inner)
            .field("gate", &self.shared.gate())
            .finish()
    }
}
