//! Failing requests fast when no endpoint has been ready for too long.
//!
//! Sits between the queue and the pool, inside the queue's worker. While the pool is ready,
//! requests pass. When it stops being ready, a timer starts; if it fires before the pool is ready
//! again, the service enters *failfast*: it reports ready so the queue drains, and fails every
//! request at once with [`Unavailable`](crate::Unavailable), until the pool is ready again (it is
//! polled on every request, so recovery is noticed with the next one). Linkerd's queues behave
//! the same way.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use mesh_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::state::TargetState;

pub(crate) struct FailFast<S> {
    inner: S,
    timeout: Duration,
    state: State,
    sleep: Option<Pin<Box<Sleep>>>,
    target: Arc<TargetState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Waiting,
    Failing,
}

pin_project! {
    /// The inner response future with its error widened, or an error decided before calling
    /// (shared by the failfast and renew layers).
    #[project = ResponseFutureProj]
    pub(crate) enum ResponseFuture<F> {
        Inner { #[pin] inner: F },
        Failed { error: Option<BoxError> },
    }
}

// === impl FailFast ===

impl<S> FailFast<S> {
    pub(crate) fn new(inner: S, timeout: Duration, target: Arc<TargetState>) -> Self {
        Self {
            inner,
            timeout,
            state: State::Open,
            sleep: None,
            target,
        }
    }
}

impl<S, Req> Service<Req> for FailFast<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                if self.state == State::Failing {
                    tracing::info!(target = %self.target.name(), "an endpoint is ready again; no longer failing fast");
                }
                self.state = State::Open;
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            Poll::Pending => {}
        }
        loop {
            match self.state {
                State::Open => {
                    let deadline = Instant::now() + self.timeout;
                    match self.sleep.as_mut() {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    self.state = State::Waiting;
                }
                State::Waiting => {
                    if let Some(sleep) = self.sleep.as_mut() {
                        ready!(sleep.as_mut().poll(cx));
                    }
                    tracing::warn!(
                        target = %self.target.name(),
                        timeout = ?self.timeout,
                        endpoints = self.target.endpoints_total(),
                        "no endpoint became ready in time; failing requests fast"
                    );
                    self.state = State::Failing;
                }
                State::Failing => return Poll::Ready(Ok(())),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if self.state == State::Failing {
            let error = self.target.unavailable(Some(self.timeout));
            return ResponseFuture::Failed {
                error: Some(Box::new(error)),
            };
        }
        ResponseFuture::Inner {
            inner: self.inner.call(req),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for FailFast<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailFast")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("state", &self.state)
            .finish()
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
