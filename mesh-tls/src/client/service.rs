use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_core::stack::Param;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_service::Service;

use super::layer::ConfigCache;
use super::{ResponseFuture, ServerIdentity};
use crate::BoxError;

/// Connects with the inner connector, then runs the TLS client handshake.
///
/// Built by [`TlsClientLayer`](super::TlsClientLayer).
#[derive(Clone)]
pub struct TlsClient<C> {
    inner: C,
    configs: ConfigCache,
    handshake_timeout: Duration,
}

impl<C> TlsClient<C> {
    pub(super) fn new(inner: C, configs: ConfigCache, handshake_timeout: Duration) -> Self {
        Self {
            inner,
            configs,
            handshake_timeout,
        }
    }

    /// The inner connector.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// Consumes `self`, returning the inner connector.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C, T> Service<T> for TlsClient<C>
where
    T: Param<ServerIdentity>,
    C: Service<T>,
    C::Response: AsyncRead + AsyncWrite + Unpin,
    C::Error: Into<BoxError>,
{
    type Response = super::ClientTlsStream<C::Response>;
    type Error = BoxError;
    type Future = ResponseFuture<C::Future, C::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: T) -> Self::Future {
        let ServerIdentity(expected) = target.param();
        let config = self.configs.get(&expected);
        let server_name = ServerName::try_from(expected.sni_name().to_owned());
        let connect = self.inner.call(target);
        match server_name {
            Ok(name) => ResponseFuture::new(
                connect,
                tokio_rustls::TlsConnector::from(config),
                name,
                expected,
                self.handshake_timeout,
            ),
            Err(e) => ResponseFuture::failed(
                format!("cannot send {expected} as a TLS server name: {e}").into(),
            ),
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for TlsClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("inner", &self.inner)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}
