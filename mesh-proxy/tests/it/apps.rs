//! Backends with the behaviours the robustness tests need: an upgrade (WebSocket-style) echo, a
//! byte sink and source for large bodies, slow responses counted while in flight, a server that
//! speaks first, and one that resets its connection in the middle of a body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the app says first on an upgraded connection, before echoing.
pub const UPGRADE_GREETING: &[u8] = b"upgraded: say something\n";

/// A running app.
#[derive(Debug)]
pub struct App {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How many `/slow/...` and `/held` requests it is handling now.
    pub in_flight: watch::Receiver<usize>,
    gate: Arc<watch::Sender<bool>>,
}

impl App {
    /// Lets every `/held` request (now and later) answer.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }
}

#[derive(Debug)]
struct State {
    in_flight: watch::Sender<usize>,
    gate: Arc<watch::Sender<bool>>,
}

/// Starts the app on 127.0.0.1. Routes:
/// - any request with `Connection: upgrade`: `101 Switching Protocols` with the same `Upgrade`,
///   then [`UPGRADE_GREETING`], then every byte echoed until the client half-closes;
/// - `POST /stream/N`: counts the request body as it arrives (never holding it), then answers
///   `x-received: <count>` with N zero bytes, produced as the connection takes them;
/// - `GET /slow/MS`: answers `slow` after MS milliseconds;
/// - `GET /held`: answers `held` once [`App::release`] is called;
/// - anything else: `200 ok`.
pub async fn app() -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("app addr");
    let (in_flight_tx, in_flight) = watch::channel(0);
    let gate = Arc::new(watch::channel(false).0);
    let state = Arc::new(State {
        in_flight: in_flight_tx,
        gate: gate.clone(),
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    App {
        addr,
        in_flight,
        gate,
    }
}

type AppBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

fn body(b: impl Into<Bytes>) -> AppBody {
    http_body_util::Full::new(b.into()).boxed_unsync()
}

async fn handle(
    mut req: http::Request<Incoming>,
    state: Arc<State>,
) -> Result<http::Response<AppBody>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(proto) = req.headers().get(http::header::UPGRADE).cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            if io.write_all(UPGRADE_GREETING).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = io.shutdown().await;
        });
        let mut rsp = http::Response::new(body(Bytes::new()));
        *rsp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        rsp.headers_mut().insert(http::header::UPGRADE, proto);
        rsp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        return Ok(rsp);
    }
    if let Some(n) = path
        .strip_prefix("/stream/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        let mut received = 0u64;
        let mut incoming = req.into_body();
        while let Some(frame) = incoming.frame().await {
            match frame {
                Ok(f) => received += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        let mut rsp = http::Response::new(Zeros { left: n }.boxed_unsync());
        rsp.headers_mut().insert(
            "x-received",
            http::HeaderValue::from_str(&received.to_string()).expect("count"),
        );
        return Ok(rsp);
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        state.in_flight.send_modify(|n| *n += 1);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        state.in_flight.send_modify(|n| *n -= 1);
        return Ok(http::Response::new(body("slow")));
    }
    if path == "/held" {
        state.in_flight.send_modify(|n| *n += 1);
        let mut gate = state.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        state.in_flight.send_modify(|n| *n -= 1);
        return Ok(http::Response::new(body("held")));
    }
    Ok(http::Response::new(body("ok")))
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// `left` zero bytes, in 64 KiB chunks that are never allocated.
#[derive(Debug)]
pub struct Zeros {
    /// Bytes still to produce.
    pub left: u64,
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(ZEROS.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// A server that fails every response in the middle of its body. Over HTTP/1.1 it reads the
/// request head, promises a 1 MiB body, sends 64 KiB of it and resets the connection
/// (`SO_LINGER` 0, then close: a TCP RST); over HTTP/2 (prior knowledge) it resets the stream
/// after 128 KiB of the promised 1 MiB.
pub async fn resetting() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read until the bytes are, or cannot be, the HTTP/2 preface.
                let mut first = Vec::new();
                let mut buf = [0u8; 24];
                while first.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&first) {
                    match tcp.read(&mut buf[..H2_PREFACE.len() - first.len()]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => first.extend_from_slice(&buf[..n]),
                    }
                }
                if first == H2_PREFACE {
                    reset_h2(mesh_core::detect::PrefixedIo::new(first, tcp)).await
                } else {
                    reset_h1(tcp, first).await
                }
            });
        }
    });
    addr
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn reset_h1(mut tcp: tokio::net::TcpStream, mut head: Vec<u8>) {
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = tcp
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n")
        .await;
    let _ = tcp.write_all(&ZEROS).await;
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

async fn reset_h2<IO>(io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(|_req: http::Request<Incoming>| async {
        // The failure comes a moment after the first chunks, as a backend that dies while
        // streaming would (failing in the same poll would let HTTP/2 discard the unsent head
        // and answer with a bare RST_STREAM).
        use futures_util::StreamExt;
        let chunk = || Ok(Frame::data(Bytes::from_static(&ZEROS)));
        let frames = futures_util::stream::iter([chunk(), chunk()]).chain(
            futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("the app fails mid-body"))
            }),
        );
        let mut rsp = http::Response::new(http_body_util::StreamBody::new(frames));
        rsp.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("1048576"),
        );
        Ok::<_, Infallible>(rsp)
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}
