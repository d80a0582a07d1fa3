use std::task::{Context, Poll};

use tokio::io::AsyncRead;
use tower_service::Service;

use super::{Config, Detected, PrefixedIo, ResponseFuture, detect};
use crate::BoxError;

/// Detects a connection's protocol, then calls the inner service with the [`Detected`]
/// protocol and the connection (its first bytes put back).
///
/// Built by [`DetectLayer`](super::DetectLayer). Fails with a [`ReadError`](super::ReadError)
/// when reading fails, or with the inner service's error.
#[derive(Clone, Debug)]
pub struct Detect<S> {
    inner: S,
    config: Config,
}

// === impl Detect ===

impl<S> Detect<S> {
    /// Wraps `inner`, detecting with `config`.
    pub const fn new(inner: S, config: Config) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, IO> Service<IO> for Detect<S>
where
    IO: AsyncRead + Unpin,
    S: Service<(Detected, PrefixedIo<IO>)> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<IO, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, io: IO) -> Self::Future {
        // The readied service goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(detect(io, &self.config), inner)
    }
}
