use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use mesh_core::BoxError;
use mesh_core::body::ObservedBody;
use tower::buffer::Buffer;
use tower_service::Service;

use super::ResponseFuture;
use crate::accrual::EosClassify;
use crate::error::{Reason, Unavailable};
use crate::{TargetStats, failfast, pool};

pub(super) type QueueFuture<F> = failfast::ResponseFuture<pool::ResponseFuture<F>>;

/// Balances requests over a target's endpoints: P2C over peak-EWMA latency, behind a bounded
/// queue with a failfast timeout. Built by a [`Builder`](crate::Builder); see the
/// [module docs](crate::balancer).
///
/// Cheap to clone; clones share the queue, the endpoints and their state. `S` is the endpoint
/// service type the factory builds, `B` the request body type.
///
/// Readiness never blocks: when the queue is full, `poll_ready` still reports ready and the
/// request fails at once with [`Reason::QueueFull`] (load shedding), so a caller never waits
/// on a queue that cannot take it.
pub struct Balancer<S, B>
where
    S: Service<Request<B>>,
{
    buffer: Buffer<Request<B>, QueueFuture<S::Future>>,
    shed: bool,
    stats: TargetStats,
    capacity: usize,
}

impl<S, B> Balancer<S, B>
where
    S: Service<Request<B>>,
{
    pub(super) fn new(
        buffer: Buffer<Request<B>, QueueFuture<S::Future>>,
        stats: TargetStats,
        capacity: usize,
    ) -> Self {
        Self {
            buffer,
            shed: false,
            stats,
            capacity,
        }
    }

    /// The live view of the endpoints (counts, and per-endpoint latency for `top` views).
    pub fn stats(&self) -> &TargetStats {
        &self.stats
    }
}

impl<S, B, RB> Service<Request<B>> for Balancer<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: http_body::Body,
{
    type Response = Response<ObservedBody<RB, EosClassify>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.buffer.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.shed = false;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.shed = true;
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if std::mem::take(&mut self.shed) {
            self.stats.0.count_unavailable(Reason::QueueFull);
            let error = Unavailable::new(self.stats.0.name().clone(), Reason::QueueFull)
                .with_capacity(self.capacity);
            return ResponseFuture::failed(Box::new(error));
        }
        ResponseFuture::queued(self.buffer.call(req))
    }
}

impl<S, B> Clone for Balancer<S, B>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    fn clone(&self) -> Self {
        Self {
            buffer: self.buffer.clone(),
            shed: false,
            stats: self.stats.clone(),
            capacity: self.capacity,
        }
    }
}

impl<S, B> fmt::Debug for Balancer<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("stats", &self.stats)
            .field("capacity", &self.capacity)
            .finish()
    }
}
