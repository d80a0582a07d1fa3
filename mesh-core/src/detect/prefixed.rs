use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project! {
    /// A connection whose first bytes were already read: reads yield those bytes first, then
    /// the connection's; writes go straight to the connection.
    ///
    /// Detection hands one of these to the next layer so it sees the stream from its first
    /// byte, as if nobody had looked.
    ///
    /// ```
    /// use mesh_core::detect::PrefixedIo;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let (mut client, server) = tokio::io::duplex(64);
    /// client.write_all(b" world").await?;
    /// drop(client);
    ///
    /// let mut io = PrefixedIo::new("hello", server);
    /// let mut all = String::new();
    /// io.read_to_string(&mut all).await?;
    /// assert_eq!(all, "hello world");
    /// # Ok(()) }
    /// ```
    #[derive(Debug)]
    pub struct PrefixedIo<IO> {
        prefix: Bytes,
        #[pin]
        io: IO,
    }
}

// === impl PrefixedIo ===

impl<IO> PrefixedIo<IO> {
    /// Reads `prefix` before `io`.
    pub fn new(prefix: impl Into<Bytes>, io: IO) -> Self {
        Self {
            prefix: prefix.into(),
            io,
        }
    }

    /// The bytes still to be read before the connection's own.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The connection.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The connection, mutably. Reading from it directly skips the prefix.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// The unread prefix and the connection.
    pub fn into_parts(self) -> (Bytes, IO) {
        (self.prefix, self.io)
    }
}

impl<IO: AsyncRead> AsyncRead for PrefixedIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.prefix.is_empty() {
            return this.io.poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            // Let go of the detection buffer as soon as it has been replayed.
            *this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for PrefixedIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_then_the_connection() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = PrefixedIo::new(Bytes::from_static(b"abcde"), server);
        let mut two = [0; 2];
        io.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        assert_eq!(io.prefix(), b"cde");

        client.write_all(b"fg").await.unwrap();
        let mut rest = [0; 5];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"cdefg");
        assert!(io.prefix().is_empty());

        // Writes go straight through, vectored too.
        assert_eq!(io.is_write_vectored(), io.get_ref().is_write_vectored());
        let bufs = [io::IoSlice::new(b"hi "), io::IoSlice::new(b"there")];
        let n = io.write_vectored(&bufs).await.unwrap();
        io.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, &b"hi there"[..n]);
    }

    #[tokio::test]
    async fn an_empty_read_buffer_reads_nothing() {
        let (_client, server) = tokio::io::duplex(64);
        let mut io = PrefixedIo::new("x", server);
        assert_eq!(io.read(&mut []).await.unwrap(), 0);
        assert_eq!(io.prefix(), b"x");
        let (prefix, _server) = io.into_parts();
        assert_eq!(&prefix[..], b"x");
    }
}
