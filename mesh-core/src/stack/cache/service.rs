use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::Token;

/// A service from a [`Cache`](super::Cache); while any clone is alive its entry is in use.
#[derive(Clone)]
pub struct Cached<S> {
    inner: S,
    _token: Arc<Token>,
}

impl<S> Cached<S> {
    pub(super) fn new(inner: S, token: Arc<Token>) -> Self {
        Self {
            inner,
            _token: token,
        }
    }

    /// The cached service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The cached service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S, Req> Service<Req> for Cached<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

impl<S: fmt::Debug> fmt::Debug for Cached<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cached").field(&self.inner).finish()
    }
}
