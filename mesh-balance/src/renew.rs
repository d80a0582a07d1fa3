//! Rebuilding an endpoint's service when it fails to become ready.
//!
//! tower's balancer drops an endpoint whose `poll_ready` fails and never sees it again until
//! discovery re-adds it. A connection refused or closed is not a reason to forget an endpoint:
//! [`Renew`] logs the error, stays pending for a backoff, and builds a fresh service from the
//! endpoint's factory, so the balancer keeps the endpoint and it comes back when it can.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pub(crate) use crate::failfast::ResponseFuture;
use mesh_core::BoxError;
use tokio::time::Sleep;
use tower_service::Service;

use mesh_core::stack::NewService;

use crate::{Backoff, Endpoint};

/// An endpoint service that is rebuilt after readiness errors; its `poll_ready` never fails.
pub(crate) struct Renew<N: NewService<Endpoint>> {
    inner: Option<N::Service>,
    // Boxed: the balancer moves endpoint services around on every request, so the parts it
    // only needs after an error stay out of the way.
    cold: Box<Cold<N>>,
}

struct Cold<N> {
    new: N,
    endpoint: Endpoint,
    backoff: Backoff,
    attempt: u32,
    sleep: Option<Pin<Box<Sleep>>>,
}

// === impl Renew ===

impl<N: NewService<Endpoint>> Renew<N> {
    pub(crate) fn new(new: N, endpoint: Endpoint, backoff: Backoff) -> Self {
        let inner = Some(new.new_service(endpoint.clone()));
        Self {
            inner,
            cold: Box::new(Cold {
                new,
                endpoint,
                backoff,
                attempt: 0,
                sleep: None,
            }),
        }
    }
}

impl<N, Req> Service<Req> for Renew<N>
where
    N: NewService<Endpoint>,
    N::Service: Service<Req>,
    <N::Service as Service<Req>>::Error: Into<BoxError>,
{
    type Response = <N::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<<N::Service as Service<Req>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            let svc = match &mut self.inner {
                Some(svc) => svc,
                slot => {
                    let cold = &mut *self.cold;
                    if let Some(sleep) = cold.sleep.as_mut() {
                        ready!(sleep.as_mut().poll(cx));
                        cold.sleep = None;
                    }
                    slot.insert(cold.new.new_service(cold.endpoint.clone()))
                }
            };
            match svc.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if self.cold.attempt != 0 {
                        self.cold.attempt = 0;
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    let error: BoxError = e.into();
                    let cold = &mut *self.cold;
                    let delay = cold.backoff.delay(cold.attempt);
                    cold.attempt = cold.attempt.saturating_add(1);
                    tracing::debug!(
                        endpoint = %cold.endpoint.addr(),
                        %error,
                        retry_in = ?delay,
                        "endpoint service failed; rebuilding it"
                    );
                    self.inner = None;
                    cold.sleep = Some(Box::pin(tokio::time::sleep(delay)));
                }
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.inner.as_mut() {
            Some(svc) => ResponseFuture::Inner {
                inner: svc.call(req),
            },
            None => ResponseFuture::Failed {
                error: Some("endpoint service called before it was ready".into()),
            },
        }
    }
}

impl<N: NewService<Endpoint>> fmt::Debug for Renew<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renew")
            .field("endpoint", &self.cold.endpoint)
            .field("attempt", &self.cold.attempt)
            .finish_non_exhaustive()
    }
}
