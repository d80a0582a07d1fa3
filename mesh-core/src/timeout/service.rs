use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::{AttemptTimeout, ResponseFuture, RouteTimeout, TimeoutScope};
use crate::BoxError;

/// Fails requests whose response head does not arrive in time. See [`TimeoutLayer`](super::TimeoutLayer).
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    default: Option<Duration>,
    scope: TimeoutScope,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with a default timeout (or none).
    pub const fn new(inner: S, default: Option<Duration>, scope: TimeoutScope) -> Self {
        Self {
            inner,
            default,
            scope,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for Timeout<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let after = match self.scope {
            // Route timeouts bound whole requests; a route's per-try timeout bounds attempts.
            TimeoutScope::Attempt => req
                .extensions()
                .get::<AttemptTimeout>()
                .map(|t| t.0)
                .or(self.default),
            TimeoutScope::Request => req
                .extensions()
                .get::<RouteTimeout>()
                .map(|t| t.0)
                .or(self.default),
        };
        ResponseFuture::new(self.inner.call(req), after, self.scope)
    }
}
