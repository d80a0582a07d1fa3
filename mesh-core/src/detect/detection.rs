use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

use super::sniff::Sniffer;
use super::{Config, DecidedBy, Detected, PrefixedIo};

/// Reads the first bytes of `io` until they tell its [`Protocol`](super::Protocol), and hands
/// them back in front of the connection.
///
/// An `async fn` in all but name: the returned future owns a copy of `config`, so it is
/// `'static` when `IO` is. It reads at most [`Config::capacity`] bytes and waits at most
/// [`Config::timeout`]; see the [module docs](super) for what it decides when.
///
/// # Errors
///
/// The error of a failed read (a reset connection). A timeout or an end of stream is not an
/// error: it decides [`Protocol::Opaque`](super::Protocol::Opaque), with the bytes read so
/// far, and says so in [`Detected::decided_by`].
///
/// # Panics
///
/// Outside a Tokio runtime with its time driver, as [`tokio::time::sleep`] does: the timeout
/// starts when `detect` is called.
///
/// ```
/// use mesh_core::detect::{detect, Config, DecidedBy, Protocol};
/// use tokio::io::AsyncWriteExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (mut client, server) = tokio::io::duplex(64);
/// client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
/// let (detected, io) = detect(server, &Config::default()).await?;
/// assert_eq!(detected.protocol(), &Protocol::Http2);
/// assert_eq!(detected.decided_by(), DecidedBy::Bytes);
/// assert_eq!(io.prefix().len(), 24);
/// # Ok(()) }
/// ```
pub fn detect<IO>(io: IO, config: &Config) -> Detection<IO>
where
    IO: AsyncRead + Unpin,
{
    Detection::new(io, config)
}

pin_project! {
    /// The future of [`detect`]: the connection's [`Detected`] protocol and the connection with
    /// its first bytes put back.
    #[must_use = "futures do nothing unless polled"]
    pub struct Detection<IO> {
        io: Option<IO>,
        // Zeroed up front, so reads go into initialised memory without `unsafe`; only
        // `buf[..filled]` holds data.
        buf: BytesMut,
        filled: usize,
        sniffer: Sniffer,
        #[pin]
        deadline: Sleep,
    }
}

// === impl Detection ===

impl<IO> Detection<IO> {
    fn new(io: IO, config: &Config) -> Self {
        Self {
            io: Some(io),
            buf: BytesMut::zeroed(config.capacity()),
            filled: 0,
            sniffer: Sniffer::default(),
            deadline: tokio::time::sleep(config.timeout()),
        }
    }
}

impl<IO: AsyncRead + Unpin> Future for Detection<IO> {
    type Output = io::Result<(Detected, PrefixedIo<IO>)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(io) = this.io.as_mut() else {
            panic!("Detection polled after completion");
        };
        let (protocol, decided_by) = loop {
            let read = &this.buf[..*this.filled];
            if let Some(protocol) = this.sniffer.sniff(read) {
                break (protocol, DecidedBy::Bytes);
            }
            if *this.filled == this.buf.len() {
                break (Sniffer::settle(read), DecidedBy::Full);
            }
            let mut dst = ReadBuf::new(&mut this.buf[*this.filled..]);
            let decided_by = match Pin::new(&mut *io).poll_read(cx, &mut dst) {
                Poll::Ready(Ok(())) if dst.filled().is_empty() => DecidedBy::Eof,
                Poll::Ready(Ok(())) => {
                    *this.filled += dst.filled().len();
                    continue;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Only a client that makes us wait can time out: one that keeps sending
                    // fills the buffer first.
                    ready!(this.deadline.as_mut().poll(cx));
                    DecidedBy::Timeout
                }
            };
            break (Sniffer::settle(&this.buf[..*this.filled]), decided_by);
        };
        let mut prefix = std::mem::take(this.buf);
        prefix.truncate(*this.filled);
        let io = this.io.take().expect("checked at the top of poll");
        let io = PrefixedIo::new(prefix.freeze(), io);
        Poll::Ready(Ok((Detected::new(protocol, decided_by), io)))
    }
}

impl<IO> fmt::Debug for Detection<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detection")
            .field("capacity", &self.buf.len())
            .field("read", &self.filled)
            .field("done", &self.io.is_none())
            .finish_non_exhaustive()
    }
}
