//! Protocol detection: what an accepted connection speaks, from its first bytes.
//!
//! A mesh listener accepts connections it knows nothing about. Before it can serve HTTP (to
//! route, retry and count requests), terminate mTLS (to learn the peer's identity) or just
//! forward bytes, it must know which of those the client is doing. Detection reads the first
//! bytes the client sends, keeps them, and decides:
//!
//! | the bytes start with | [`Protocol`] |
//! |---|---|
//! | a TLS handshake record, `0x16 0x03 0x00..=0x04` | [`Tls`](Protocol::Tls), with the SNI server name of the ClientHello |
//! | the HTTP/2 preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` | [`Http2`](Protocol::Http2) |
//! | a request line `METHOD SP request-target SP HTTP/1.x CRLF` | [`Http1`](Protocol::Http1) |
//! | anything else, or nothing in time | [`Opaque`](Protocol::Opaque) |
//!
//! It decides as soon as the bytes allow: a first byte that starts none of these is opaque at
//! once; a prefix that could still become one of them waits for more. The bytes it read are
//! put back: the next layer gets a [`PrefixedIo`] that reads them first, then the connection,
//! and writes straight to the connection.
//!
//! Use [`detect`] on a connection, or [`DetectLayer`] in a tower stack.
//!
//! # Bounded, because the client is not trusted yet
//!
//! Nothing is known about the client while detecting, so it must not be able to make the proxy
//! hold more than a fixed amount per connection. Detection reads at most
//! [`Config::with_capacity`] bytes (8 KiB by default) into one buffer allocated up front, and
//! never more: bytes beyond stay in the socket for the next layer. If the buffer fills
//! without a decision (a request line longer than the capacity, a stream of junk that keeps
//! looking like a request target), the connection is opaque.
//!
//! # A timeout, and then opaque
//!
//! A client that has not said enough within [`Config::with_timeout`] (10 s by default, as in
//! Linkerd) is opaque: its connection is forwarded untouched, which is correct for every
//! protocol, while guessing HTTP for something that is not breaks the connection. The timeout
//! also caps how long a slow or silent client holds the buffer. [`Detected::decided_by`] says
//! [`DecidedBy::Timeout`] so the proxy can count detect timeouts: they cost a client the full
//! timeout before its first byte moves, and a port that times out often is misconfigured.
//!
//! The one exception is TLS: once a whole handshake record header (five bytes) has arrived, the
//! connection is TLS whatever follows; detection only keeps reading for the server name. A
//! timeout, end of stream or full buffer then gives [`Tls`](Protocol::Tls) with the name if
//! the bytes read hold it, `None` otherwise (and so does a ClientHello that is malformed after
//! the header, or continues in a second record).
//!
//! # Server-speaks-first protocols are the proxy's business
//!
//! MySQL, SMTP and the like wait for the server's greeting before they send anything, so
//! detection sees nothing and each connection pays the full timeout before it is forwarded as
//! opaque. Detection cannot do better (it cannot answer for a server it has not connected
//! to), so it does not try: the proxy skips detection on ports configured as opaque (as
//! Linkerd's `config.linkerd.io/opaque-ports`) and the timeout metric points at ports that
//! should be.
//!
//! # End of stream
//!
//! A client that closes its side before the bytes decide (`printf foo | nc`) is opaque, with
//! [`DecidedBy::Eof`] and whatever it sent still in the [`PrefixedIo`] to forward; it may still
//! be waiting for a response. One that closes before sending anything has an empty prefix; the
//! caller may drop it. A failed read is the only error ([`ReadError`] from the layer).
//!
//! # What is not recognised
//!
//! HTTP/1 detection knows the methods of RFC 9110 and PATCH; a connection whose first request
//! uses an extension method (WebDAV's `PROPFIND`, say), ends its request line with a bare LF,
//! or is HTTP/0.9, is opaque: forwarded correctly, just not seen as HTTP. The TLS parser reads
//! only the first record's ClientHello, only as far as the `server_name` extension, and
//! checks that the name is a DNS name; it does not validate the rest of the handshake.
//!
//! # Example
//!
//! ```
//! use mesh_core::detect::{detect, Config, DecidedBy, Protocol};
//! use std::time::Duration;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let config = Config::default().with_timeout(Duration::from_secs(1));
//!
//! // An HTTP/1 client: detected from its request line, which the next layer reads again.
//! let (mut client, server) = tokio::io::duplex(1024);
//! client.write_all(b"GET /api/list HTTP/1.1\r\nhost: web\r\n\r\n").await?;
//! let (detected, mut io) = detect(server, &config).await?;
//! assert_eq!(detected.protocol(), &Protocol::Http1);
//! let mut line = [0; 26];
//! io.read_exact(&mut line).await?;
//! assert_eq!(&line, b"GET /api/list HTTP/1.1\r\nho");
//! io.write_all(b"HTTP/1.1 200 OK\r\n").await?; // writes go to the client
//!
//! // A client that speaks something else is opaque at once.
//! let (mut client, server) = tokio::io::duplex(1024);
//! client.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
//! let (detected, io) = detect(server, &config).await?;
//! assert_eq!(detected.protocol(), &Protocol::Opaque);
//! assert_eq!(detected.decided_by(), DecidedBy::Bytes);
//! assert_eq!(io.prefix(), b"*1\r\n$4\r\nPING\r\n");
//! # Ok(()) }
//! ```

mod client_hello;
mod config;
mod detection;
mod error;
mod future;
mod layer;
mod prefixed;
mod protocol;
mod service;
mod sniff;

#[cfg(test)]
mod tests;

pub use self::config::Config;
pub use self::detection::{Detection, detect};
pub use self::error::ReadError;
pub use self::future::ResponseFuture;
pub use self::layer::DetectLayer;
pub use self::prefixed::PrefixedIo;
pub use self::protocol::{DecidedBy, Detected, Protocol};
pub use self::service::Detect;
