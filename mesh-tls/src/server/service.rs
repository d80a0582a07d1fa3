use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use super::{ResponseFuture, ServerTlsStream};
use crate::BoxError;

/// Terminates TLS on a connection, then calls the inner service with the decrypted stream.
///
/// Built by [`TlsServerLayer`](super::TlsServerLayer).
#[derive(Clone)]
pub struct TlsServer<S> {
    inner: S,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl<S> TlsServer<S> {
    pub(super) fn new(inner: S, acceptor: TlsAcceptor, handshake_timeout: Duration) -> Self {
        Self {
            inner,
            acceptor,
            handshake_timeout,
        }
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

impl<S, IO> Service<IO> for TlsServer<S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<ServerTlsStream<IO>> + Clone,
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
        ResponseFuture::new(self.acceptor.accept(io), self.handshake_timeout, inner)
    }
}

impl<S: fmt::Debug> fmt::Debug for TlsServer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("inner", &self.inner)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}
