//! Detection of real clients over real loopback sockets.
//!
//! Tests that expect a timeout run on paused time: when the runtime has nothing to do, tokio
//! jumps the clock to the next timer. That jump happens even while a socket has bytes waiting
//! (tokio advances the clock before it polls the woken tasks), so a paused-time test must have
//! its client's bytes in the socket before detection starts; detection reads before it looks
//! at its deadline, so it sees them first. Tests that expect a decision from the bytes run on
//! real time with the default 10 s timeout: a detector that waited for more would show up as
//! [`DecidedBy::Timeout`], not as a hang.

use std::convert::Infallible;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower::{Layer, ServiceBuilder, ServiceExt};

use super::*;

const SNI: &str = "web.emojivoto.serviceaccount.identity.mesh.cluster.local";

/// A rustls client (ring, no roots) for `name`, and the ClientHello it sends.
pub(super) fn rustls_client(name: &'static str) -> (rustls::ClientConnection, Vec<u8>) {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let server_name = name.try_into().expect("a valid DNS name");
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), server_name).expect("a client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("writes to a Vec");
    }
    (conn, hello)
}

/// The ClientHello rustls sends to open a connection to `name`.
pub(super) fn rustls_client_hello(name: &'static str) -> Vec<u8> {
    rustls_client(name).1
}

/// A connected client and server socket on 127.0.0.1.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    client.set_nodelay(true).unwrap();
    (client, accepted.unwrap().0)
}

/// Records what passes through a connection, and optionally signals each read.
#[derive(Debug)]
struct Spy<IO> {
    io: IO,
    read: Arc<Mutex<Vec<u8>>>,
    written: Arc<Mutex<Vec<u8>>>,
    on_read: Option<mpsc::UnboundedSender<usize>>,
}

impl<IO> Spy<IO> {
    fn new(io: IO) -> Self {
        Self {
            io,
            read: Default::default(),
            written: Default::default(),
            on_read: None,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Spy<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            self.read.lock().unwrap().extend_from_slice(new);
            if let Some(tx) = &self.on_read {
                let _ = tx.send(new.len());
            }
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Spy<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

// === real clients, through the layer ===

async fn hello(req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let body = format!("{:?} {}", req.version(), req.uri().path());
    Ok(http::Response::new(Full::new(Bytes::from(body))))
}

/// A server shaped like the proxy's: detect, then serve HTTP/1 or HTTP/2 with hyper over the
/// replayed connection. Returns what was detected and every byte the HTTP server read.
fn serve_one(listener: TcpListener) -> JoinHandle<(Detected, Vec<u8>)> {
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let svc = ServiceBuilder::new()
            .layer(DetectLayer::default())
            .service_fn(
                |(detected, io): (Detected, PrefixedIo<TcpStream>)| async move {
                    let io = Spy::new(io);
                    let read = io.read.clone();
                    let svc = hyper::service::service_fn(hello);
                    match detected.protocol() {
                        Protocol::Http1 => {
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(io), svc)
                                .await?
                        }
                        Protocol::Http2 => {
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(io), svc)
                                .await?
                        }
                        other => panic!("not HTTP: {other}"),
                    }
                    let read = read.lock().unwrap().clone();
                    Ok::<_, hyper::Error>((detected, read))
                },
            );
        svc.oneshot(tcp).await.expect("served")
    })
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(path)
        .header(http::header::HOST, "web.emojivoto")
        .body(Empty::new())
        .unwrap()
}

async fn listen() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[tokio::test]
async fn http1_from_hyper_client_round_trips() {
    let (listener, addr) = listen().await;
    let server = serve_one(listener);

    let client = Spy::new(TcpStream::connect(addr).await.unwrap());
    let sent = client.written.clone();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for path in ["/api/list", "/api/vote"] {
        let rsp = send.send_request(get(path)).await.unwrap();
        assert_eq!(rsp.status(), http::StatusCode::OK);
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("HTTP/1.1 {path}"));
    }
    drop(send);
    conn.await.unwrap().unwrap();

    let (detected, read) = server.await.unwrap();
    assert_eq!(detected, Detected::new(Protocol::Http1, DecidedBy::Bytes));
    // The HTTP server read exactly what the client sent: detection's bytes, then the rest.
    let sent = sent.lock().unwrap().clone();
    assert!(sent.starts_with(b"GET /api/list HTTP/1.1\r\n"));
    assert_eq!(read, sent);
}

#[tokio::test]
async fn http2_from_hyper_client_round_trips() {
    let (listener, addr) = listen().await;
    let server = serve_one(listener);

    let client = Spy::new(TcpStream::connect(addr).await.unwrap());
    let sent = client.written.clone();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let rsp = send
        .send_request(get("http://web.emojivoto/api/list"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), http::StatusCode::OK);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "HTTP/2.0 /api/list");
    drop(send);
    conn.await.unwrap().unwrap();

    let (detected, read) = server.await.unwrap();
    assert_eq!(detected, Detected::new(Protocol::Http2, DecidedBy::Bytes));
    let sent = sent.lock().unwrap().clone();
    assert!(sent.starts_with(sniff::H2_PREFACE));
    assert_eq!(read, sent);
}

#[tokio::test]
async fn a_read_error_is_a_read_error() {
    let (client, server) = tcp_pair().await;
    // Reset the connection before detection reads anything.
    client.set_zero_linger().unwrap();
    drop(client);
    let svc = DetectLayer::default().layer(tower::service_fn(
        |_: (Detected, PrefixedIo<TcpStream>)| async { Ok::<_, Infallible>(()) },
    ));
    let err = svc.oneshot(server).await.unwrap_err();
    let err = err.downcast::<ReadError>().expect("a ReadError");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

// === real clients, through `detect` ===

#[tokio::test]
async fn tls_client_hello_from_rustls() {
    let (mut conn, hello) = rustls_client(SNI);
    let (mut client, server) = tcp_pair().await;
    client.write_all(&hello).await.unwrap();

    let (detected, mut io) = detect(server, &Config::default()).await.unwrap();
    assert_eq!(detected.decided_by(), DecidedBy::Bytes);
    assert_eq!(detected.protocol().sni(), Some(SNI));
    assert_eq!(io.prefix(), &hello[..]);

    // A real TLS server reads the same ClientHello from the replayed connection...
    let mut replayed = vec![0; hello.len()];
    io.read_exact(&mut replayed).await.unwrap();
    let mut acceptor = rustls::server::Acceptor::default();
    acceptor.read_tls(&mut &replayed[..]).unwrap();
    let accepted = acceptor
        .accept()
        .ok()
        .flatten()
        .expect("a complete ClientHello");
    assert_eq!(accepted.client_hello().server_name(), Some(SNI));

    // ... and what it writes back reaches the client: a handshake_failure alert.
    io.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
        .await
        .unwrap();
    let mut alert = [0; 7];
    client.read_exact(&mut alert).await.unwrap();
    conn.read_tls(&mut &alert[..]).unwrap();
    assert_eq!(
        conn.process_new_packets().unwrap_err(),
        rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure)
    );
}

#[tokio::test]
async fn a_client_hello_larger_than_the_buffer_is_tls_without_a_name() {
    let hello = rustls_client_hello(SNI);
    let (mut client, server) = tcp_pair().await;
    client.write_all(&hello).await.unwrap();

    // The name comes after the random and session id: beyond 48 bytes.
    let config = Config::default().with_capacity(48);
    let (detected, io) = detect(server, &config).await.unwrap();
    assert_eq!(
        detected,
        Detected::new(Protocol::Tls { sni: None }, DecidedBy::Full)
    );
    assert_eq!(io.prefix(), &hello[..48]);
}

#[tokio::test]
async fn arbitrary_bytes_are_opaque_at_once() {
    for bytes in [
        &b"\x00\x01\x02\x03 binary"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"GETX / HTTP/1.1\r\n",
        b"\x16\x03\x07",
    ] {
        let (mut client, server) = tcp_pair().await;
        client.write_all(bytes).await.unwrap();
        // The client stays connected and silent: only the bytes can decide.
        let (detected, io) = detect(server, &Config::default()).await.unwrap();
        assert_eq!(
            detected,
            Detected::new(Protocol::Opaque, DecidedBy::Bytes),
            "{bytes:?}"
        );
        assert_eq!(io.prefix(), bytes);
        drop(client);
    }
}

/// Sends `bytes` one at a time, each only once detection has read the one before; returns
/// what detection decided and the bytes it read.
async fn dribble(bytes: &[u8]) -> (Detected, Bytes) {
    let (mut client, server) = tcp_pair().await;
    let (tx, mut reads) = mpsc::unbounded_channel();
    let mut server = Spy::new(server);
    server.on_read = Some(tx);
    let detection = tokio::spawn(async move {
        let (detected, io) = detect(server, &Config::default()).await.unwrap();
        // Dropping the connection closes `reads`, so a too-early decision fails the loop below.
        (detected, io.into_parts().0)
    });
    for (i, b) in bytes.iter().enumerate() {
        client.write_all(&[*b]).await.unwrap();
        assert_eq!(reads.recv().await, Some(1), "byte {i} read alone");
    }
    detection.await.unwrap()
}

#[tokio::test]
async fn dribbled_bytes_detect_at_the_last_byte_needed() {
    let line = b"GET /api/list HTTP/1.1\r\n";
    assert_eq!(
        dribble(line).await,
        (
            Detected::new(Protocol::Http1, DecidedBy::Bytes),
            Bytes::from_static(line)
        )
    );

    let preface = sniff::H2_PREFACE;
    assert_eq!(
        dribble(preface).await,
        (
            Detected::new(Protocol::Http2, DecidedBy::Bytes),
            Bytes::from_static(preface)
        )
    );

    let hello = rustls_client_hello(SNI);
    let (detected, read) = dribble(&hello).await;
    assert_eq!(detected.protocol().sni(), Some(SNI));
    assert_eq!(detected.decided_by(), DecidedBy::Bytes);
    assert_eq!(read, hello);

    let not = b"GET /api HTTP/1.1\n";
    assert_eq!(
        dribble(not).await.0,
        Detected::new(Protocol::Opaque, DecidedBy::Bytes)
    );
}

#[tokio::test]
async fn a_line_longer_than_the_buffer_is_opaque_and_nothing_more_is_read() {
    let mut line = b"GET /".to_vec();
    line.resize(3 * Config::DEFAULT_CAPACITY, b'a');
    let (mut client, server) = tcp_pair().await;
    let sent = line.clone();
    let writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
    });

    let (detected, mut io) = detect(server, &Config::default()).await.unwrap();
    assert_eq!(detected, Detected::new(Protocol::Opaque, DecidedBy::Full));
    assert_eq!(io.prefix(), &line[..Config::DEFAULT_CAPACITY]);
    // The rest is still in the socket, in order, behind the prefix.
    let mut all = Vec::new();
    io.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, line);
    writer.await.unwrap();
}

#[tokio::test]
async fn eof_before_a_decision_is_opaque_with_the_bytes() {
    for bytes in [&b"GET / HT"[..], b"", b"\x16\x03"] {
        let (mut client, server) = tcp_pair().await;
        client.write_all(bytes).await.unwrap();
        client.shutdown().await.unwrap();
        let (detected, mut io) = detect(server, &Config::default()).await.unwrap();
        assert_eq!(
            detected,
            Detected::new(Protocol::Opaque, DecidedBy::Eof),
            "{bytes:?}"
        );
        assert_eq!(io.prefix(), bytes);
        // The client may still be listening.
        io.write_all(b"bye").await.unwrap();
        let mut bye = [0; 3];
        client.read_exact(&mut bye).await.unwrap();
        assert_eq!(&bye, b"bye");
    }
}

// === timeouts, on paused time ===

#[tokio::test(start_paused = true)]
async fn a_partial_h2_preface_then_silence_times_out_opaque() {
    let (mut client, server) = tcp_pair().await;
    let partial = &sniff::H2_PREFACE[..16]; // "PRI * HTTP/2.0\r\n"
    client.write_all(partial).await.unwrap();

    let start = tokio::time::Instant::now();
    let (detected, io) = detect(server, &Config::default()).await.unwrap();
    assert_eq!(start.elapsed(), Config::DEFAULT_TIMEOUT);
    assert_eq!(
        detected,
        Detected::new(Protocol::Opaque, DecidedBy::Timeout)
    );
    assert!(detected.is_timeout());
    assert_eq!(io.prefix(), partial);
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_times_out_opaque() {
    let (client, server) = tcp_pair().await;
    let timeout = Duration::from_millis(1500);
    let start = tokio::time::Instant::now();
    let (detected, io) = detect(server, &Config::default().with_timeout(timeout))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), timeout);
    assert_eq!(
        detected,
        Detected::new(Protocol::Opaque, DecidedBy::Timeout)
    );
    assert!(io.prefix().is_empty());
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_partial_client_hello_then_silence_times_out_as_tls() {
    let hello = rustls_client_hello(SNI);
    let (mut client, server) = tcp_pair().await;
    // The record header, the handshake header, the version and part of the random.
    client.write_all(&hello[..40]).await.unwrap();

    let (detected, io) = detect(server, &Config::default()).await.unwrap();
    // A record header arrived, so it is TLS; the name had not.
    assert_eq!(
        detected,
        Detected::new(Protocol::Tls { sni: None }, DecidedBy::Timeout)
    );
    assert_eq!(io.prefix(), &hello[..40]);
    drop(client);
}
