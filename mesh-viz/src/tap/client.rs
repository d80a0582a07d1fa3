//! The CLI's side of `GET /api/tap`: a [`TapStream`] of [`TapLine`]s read from the control
//! plane's API, so that `mesh tap` and `mesh top` only print or aggregate.
//!
//! ```no_run
//! use mesh_viz::tap::{TapLine, TapQuery, client, render};
//!
//! # async fn f(api: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
//! let query = TapQuery::new("emojivoto", "deploy/web").path("/api/vote");
//! let mut lines = client::stream(api, &query).await?;
//! while let Some(line) = lines.next().await {
//!     match line? {
//!         TapLine::Event(event) => println!("{}", render::tap_line(&event)),
//!         TapLine::Proxy(status) => eprintln!("{status}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::api::TAP_PATH;
use super::event::TapLine;
use super::query::TapQuery;

/// The longest line accepted from the stream.
const MAX_LINE: usize = 1 << 20;

/// How long connecting to the API and getting its answer's head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a tap stream could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API could not be reached.
    #[error(
        "cannot reach the control plane's API at {addr}: {source} (is `mesh control` running?)"
    )]
    Connect {
        /// The API's address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the control plane's API at {addr} failed: {source}")]
    Http {
        /// The API's address.
        addr: SocketAddr,
        /// The cause.
        source: hyper::Error,
    },
    /// The API refused the query (it says why).
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's error message.
        message: String,
    },
    /// A line of the stream is not a [`TapLine`].
    #[error("the tap stream sent a line that is not a tap line ({source}): {line}")]
    Decode {
        /// The line (truncated).
        line: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A line of the stream is longer than any tap line.
    #[error("the tap stream sent a line longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// The lines of a tap, as the control plane streams them. Ends when the control plane ends
/// the stream; dropping it closes the connection (and the control plane stops tapping).
pub struct TapStream {
    addr: SocketAddr,
    body: Incoming,
    buf: BytesMut,
    conn: JoinHandle<()>,
    done: bool,
}

/// Starts a tap through the control plane's API at `api`: fails if the API cannot be reached
/// or refuses the query (no such workload, a malformed filter), else streams its lines.
pub async fn stream(api: SocketAddr, query: &TapQuery) -> Result<TapStream, ClientError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, start(api, query)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Connect {
            addr: api,
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            ),
        }),
    }
}

async fn start(addr: SocketAddr, query: &TapQuery) -> Result<TapStream, ClientError> {
    let http = |source| ClientError::Http { addr, source };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(http)?;
    let conn = tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "tap API connection ended");
        }
    });
    let req = http::Request::get(format!("{TAP_PATH}?{}", query.to_query_string()))
        .header(http::header::HOST, addr.to_string())
        .header(http::header::ACCEPT, super::api::NDJSON)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Api {
            status: 0,
            message: format!("cannot build the request: {e}"),
        })?;
    let rsp = send.send_request(req).await.map_err(http)?;
    if !rsp.status().is_success() {
        let status = rsp.status();
        let body = Limited::new(rsp.into_body(), MAX_LINE)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        conn.abort();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                format!(
                    "the control plane answered {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                )
            });
        return Err(ClientError::Api {
            status: status.as_u16(),
            message,
        });
    }
    Ok(TapStream {
        addr,
        body: rsp.into_body(),
        buf: BytesMut::new(),
        conn,
        done: false,
    })
}

// === impl TapStream ===

impl TapStream {
    /// The next line; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<TapLine, ClientError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Takes the next complete line out of the buffer (the last, unterminated one too once
    /// the body has ended).
    fn take_line(&mut self, at_end: bool) -> Option<Result<TapLine, ClientError>> {
        loop {
            let line = match self.buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let line = self.buf.split_to(i);
                    self.buf.advance(1);
                    line
                }
                None if at_end && !self.buf.is_empty() => self.buf.split(),
                None => return None,
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(serde_json::from_slice(&line).map_err(|source| {
                let text = String::from_utf8_lossy(&line);
                ClientError::Decode {
                    line: text.chars().take(200).collect(),
                    source,
                }
            }));
        }
    }
}

impl Stream for TapStream {
    type Item = Result<TapLine, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(line) = this.take_line(this.done) {
                return Poll::Ready(Some(line));
            }
            if this.done {
                return Poll::Ready(None);
            }
            if this.buf.len() > MAX_LINE {
                this.done = true;
                this.buf.clear();
                return Poll::Ready(Some(Err(ClientError::LineTooLong)));
            }
            match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(source)) => {
                    this.done = true;
                    this.buf.clear();
                    return Poll::Ready(Some(Err(ClientError::Http {
                        addr: this.addr,
                        source,
                    })));
                }
                None => this.done = true,
            }
        }
    }
}

impl Drop for TapStream {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl std::fmt::Debug for TapStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapStream")
            .field("addr", &self.addr)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
