use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ServiceIdentity;

pin_project! {
    /// A client-side TLS connection to a server that proved the expected identity.
    #[derive(Debug)]
    pub struct ClientTlsStream<IO> {
        #[pin]
        inner: tokio_rustls::client::TlsStream<IO>,
        server_identity: ServiceIdentity,
    }
}

impl<IO> ClientTlsStream<IO> {
    pub(super) fn new(
        inner: tokio_rustls::client::TlsStream<IO>,
        server_identity: ServiceIdentity,
    ) -> Self {
        Self {
            inner,
            server_identity,
        }
    }

    /// The identity the server proved (the one that was expected).
    pub fn server_identity(&self) -> &ServiceIdentity {
        &self.server_identity
    }

    /// The server's certificate (verified).
    pub fn server_certificate(&self) -> Option<&rustls_pki_types::CertificateDer<'static>> {
        self.inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
    }

    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.inner.get_ref().1.alpn_protocol()
    }

    /// The underlying connection.
    pub fn get_ref(&self) -> &IO {
        self.inner.get_ref().0
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientTlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientTlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
