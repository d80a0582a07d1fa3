use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ServiceIdentity;

pin_project! {
    /// A server-side TLS connection with the client's verified identity.
    #[derive(Debug)]
    pub struct ServerTlsStream<IO> {
        #[pin]
        inner: tokio_rustls::server::TlsStream<IO>,
        client_identity: Option<ServiceIdentity>,
    }
}

impl<IO> ServerTlsStream<IO> {
    pub(super) fn new(
        inner: tokio_rustls::server::TlsStream<IO>,
        client_identity: Option<ServiceIdentity>,
    ) -> Self {
        Self {
            inner,
            client_identity,
        }
    }

    /// The identity the client proved with its certificate; `None` for a client that presented
    /// none (only possible with [`ClientAuth::Optional`](super::ClientAuth::Optional)).
    pub fn client_identity(&self) -> Option<&ServiceIdentity> {
        self.client_identity.as_ref()
    }

    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.inner.get_ref().1.alpn_protocol()
    }

    /// The client's certificate (verified), if it presented one.
    pub fn client_certificate(&self) -> Option<&rustls_pki_types::CertificateDer<'static>> {
        self.inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
    }

    /// The SNI name the client sent, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.inner.get_ref().1.server_name()
    }

    /// The underlying connection.
    pub fn get_ref(&self) -> &IO {
        self.inner.get_ref().0
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerTlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerTlsStream<IO> {
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
