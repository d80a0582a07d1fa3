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

use mesh_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::{Backoff, Endpoint, NewService};

/// An endpoint service that is rebuilt after readiness errors; its `poll_ready` never fails.
pub(crate) struct Renew<N: NewService<Endpoint>> {
    new: N,
    endpoint: Endpoint,
    inner: Option<N::Service>,
    backoff: Backoff,
    attempt: u32,
    sleep: Option<Pin<Box<Sleep>>>,
}

pin_project! {
    /// The inner response future, its error widened.
    #[project = ResponseFutureProj]
    pub(crate) enum ResponseFuture<F> {
        Inner { #[pin] inner: F },
        Failed { error: Option<BoxError> },
    }
}

// === impl Renew ===

impl<N: NewService<Endpoint>> Renew<N> {
    pub(crate) fn new(new: N, endpoint: Endpoint, backoff: Backoff) -> Self {
        let inner = Some(new.new_service(endpoint.clone()));
        Self {
            new,
            endpoint,
            inner,
            backoff,
            attempt: 0,
            sleep: None,
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
            if let Some(sleep) = self.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            let svc = match &mut self.inner {
                Some(svc) => svc,
                slot => slot.insert(self.new.new_service(self.endpoint.clone())),
            };
            match svc.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.attempt = 0;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    let error: BoxError = e.into();
                    let delay = self.backoff.delay(self.attempt);
                    self.attempt = self.attempt.saturating_add(1);
                    tracing::debug!(
                        endpoint = %self.endpoint.addr(),
                        %error,
                        retry_in = ?delay,
                        "endpoint service failed; rebuilding it"
                    );
                    self.inner = None;
                    self.sleep = Some(Box::pin(tokio::time::sleep(delay)));
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
            .field("endpoint", &self.endpoint)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

// === impl ResponseFuture ===

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { inner } => inner.poll(cx).map_err(Into::into),
            ResponseFutureProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "polled after completion".into()))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
