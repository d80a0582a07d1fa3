//! The cost of mesh-tls's layers against plain TCP, measured in the same run.
//!
//! - `handshake/*`: connect, (handshake,) one byte each way, close; plain TCP vs mutual TLS
//!   through `TlsClientLayer` and `TlsServerLayer`.
//! - `request/*`: one HTTP GET on an established keep-alive connection (HTTP/1.1 and HTTP/2);
//!   plain TCP vs mutual TLS.
//!
//! Run with `cargo bench --bench tls`; compare each mTLS line with its plain line.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_tls::client::ServerIdentity;
use mesh_tls::server::ServerTlsStream;
use mesh_tls::{
    BoxError, CertificateAuthority, Credentials, ServiceIdentity, TlsClientLayer, TlsServerLayer,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt, service_fn};

struct Pki {
    client: Credentials,
    server: Credentials,
}

fn pki() -> Pki {
    let ca = CertificateAuthority::builder().generate().expect("ca");
    let certified = |sa: &str| {
        let id = ca.domain().workload(sa, "bench").expect("id");
        let creds = Credentials::generate(id.clone(), ca.trust_bundle()).expect("creds");
        creds
            .set_certificate(ca.sign(creds.csr().expect("csr"), &id).expect("sign"))
            .expect("install");
        creds
    };
    Pki {
        client: certified("client"),
        server: certified("server"),
    }
}

async fn echo_byte<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) -> Result<(), BoxError> {
    let mut b = [0u8; 1];
    io.read_exact(&mut b).await?;
    io.write_all(&b).await?;
    io.flush().await?;
    Ok(())
}

async fn serve_http<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: IO,
) -> Result<(), BoxError> {
    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
    });
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await
}

/// Accepts forever, serving each connection with `handle`, with or without TLS.
async fn listen<F, Fut>(tls: Option<&Credentials>, handle: F) -> SocketAddr
where
    F: Fn(Box<dyn Io>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tls = tls.map(TlsServerLayer::new);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let handle = handle.clone();
            match &tls {
                None => {
                    tokio::spawn(handle(Box::new(tcp)));
                }
                Some(layer) => {
                    let svc = layer.layer(service_fn(move |s: ServerTlsStream<TcpStream>| {
                        handle.clone()(Box::new(s))
                    }));
                    tokio::spawn(svc.oneshot(tcp));
                }
            }
        }
    });
    addr
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn dial(addr: SocketAddr, tls: Option<(&Credentials, &ServiceIdentity)>) -> Box<dyn Io> {
    let tcp = service_fn(move |_: ServerIdentity| async move {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok::<_, std::io::Error>(s)
    });
    match tls {
        None => Box::new(
            TcpStream::connect(addr)
                .await
                .and_then(|s| s.set_nodelay(true).map(|_| s))
                .expect("connect"),
        ),
        Some((creds, id)) => Box::new(
            TlsClientLayer::new(creds)
                .alpn_protocols(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
                .layer(tcp)
                .oneshot(ServerIdentity(id.clone()))
                .await
                .expect("tls connect"),
        ),
    }
}

fn bench_handshake(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let pki = pki();
    let server_id = pki.server.identity().clone();
    let plain = rt.block_on(listen(None, echo_byte));
    let mtls = rt.block_on(listen(Some(&pki.server), echo_byte));
    let mut g = c.benchmark_group("handshake");
    g.bench_function("plain_tcp", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut io = dial(plain, None).await;
                io.write_all(b"x").await.expect("write");
                io.read_exact(&mut [0u8; 1]).await.expect("read");
            })
        })
    });
    g.bench_function("mtls", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut io = dial(mtls, Some((&pki.client, &server_id))).await;
                io.write_all(b"x").await.expect("write");
                io.read_exact(&mut [0u8; 1]).await.expect("read");
            })
        })
    });
    g.finish();
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn open(io: Box<dyn Io>, h2: bool) -> Self {
        if h2 {
            let (s, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await
                    .expect("h2");
            tokio::spawn(conn);
            Sender::H2(s)
        } else {
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .expect("h1");
            tokio::spawn(conn);
            Sender::H1(s)
        }
    }

    async fn get(&mut self) {
        let rsp = match self {
            Sender::H1(s) => {
                s.ready().await.expect("ready");
                let req = Request::get("/")
                    .header("host", "bench")
                    .body(Empty::new())
                    .expect("req");
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.expect("ready");
                let req = Request::get("http://bench/")
                    .body(Empty::new())
                    .expect("req");
                s.send_request(req).await
            }
        }
        .expect("response");
        rsp.into_body().collect().await.expect("body");
    }
}

fn bench_requests(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let pki = pki();
    let server_id = pki.server.identity().clone();
    let plain = rt.block_on(listen(None, serve_http));
    let mtls = rt.block_on(listen(Some(&pki.server), serve_http));
    let mut g = c.benchmark_group("request");
    for (name, h2) in [("http1", false), ("http2", true)] {
        let mut s = rt.block_on(async { Sender::open(dial(plain, None).await, h2).await });
        g.bench_function(format!("{name}_plain_tcp"), |b| {
            b.iter(|| rt.block_on(s.get()))
        });
        let mut s = rt.block_on(async {
            Sender::open(dial(mtls, Some((&pki.client, &server_id))).await, h2).await
        });
        g.bench_function(format!("{name}_mtls"), |b| b.iter(|| rt.block_on(s.get())));
    }
    g.finish();
}

criterion_group!(benches, bench_handshake, bench_requests);
criterion_main!(benches);
