//! A real mTLS HTTP server and client over 127.0.0.1 for the tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mesh_tls::client::{ClientTlsStream, ServerIdentity};
use mesh_tls::server::{ClientIdentity, ClientIdentityLayer, ServerTlsStream};
use mesh_tls::{
    BoxError, CertificateAuthority, Credentials, ServiceIdentity, TlsClientLayer, TlsServerLayer,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt, service_fn};

pub fn ca() -> Arc<CertificateAuthority> {
    Arc::new(
        CertificateAuthority::builder()
            .generate()
            .expect("generate CA"),
    )
}

pub fn id(ca: &CertificateAuthority, sa: &str) -> ServiceIdentity {
    ca.domain()
        .workload(sa, "emojivoto")
        .expect("valid workload")
}

/// Credentials for `sa`, certified by `ca`.
pub fn certified(ca: &CertificateAuthority, sa: &str) -> Credentials {
    let id = id(ca, sa);
    let creds = Credentials::generate(id.clone(), ca.trust_bundle()).expect("generate");
    creds
        .set_certificate(ca.sign(creds.csr().expect("csr"), &id).expect("sign"))
        .expect("install");
    creds
}

/// An HTTP/1 + HTTP/2 server behind `TlsServerLayer`, answering `hello <client identity>`.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Errors of connections that failed (handshake or HTTP), in order.
    pub errors: mpsc::UnboundedReceiver<BoxError>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// The next connection error, waiting at most 5 s.
    pub async fn next_error(&mut self) -> BoxError {
        tokio::time::timeout(Duration::from_secs(5), self.errors.recv())
            .await
            .expect("a connection error within 5 s")
            .expect("server alive")
    }
}

pub async fn serve(layer: TlsServerLayer) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, errors) = mpsc::unbounded_channel();
    let svc = layer.layer(service_fn(serve_connection));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let conn = svc.clone().oneshot(tcp);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    let _ = tx.send(e);
                }
            });
        }
    });
    TestServer { addr, errors, task }
}

async fn serve_connection(conn: ServerTlsStream<TcpStream>) -> Result<(), BoxError> {
    let identity = conn.client_identity().cloned();
    let http = ClientIdentityLayer::new(identity).layer(service_fn(hello));
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(conn), TowerToHyperService::new(http))
        .await
}

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<ClientIdentity>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "anonymous".into());
    let body = format!("hello {who} over {:?}", req.version());
    Ok(Response::new(Full::new(Bytes::from(body))))
}

/// Opens an mTLS connection to `addr` expecting `expected`.
pub async fn connect(
    creds: &Credentials,
    addr: SocketAddr,
    expected: &ServiceIdentity,
    alpn: &[&[u8]],
) -> Result<ClientTlsStream<TcpStream>, BoxError> {
    let connector = service_fn(move |_: ServerIdentity| TcpStream::connect(addr));
    TlsClientLayer::new(creds)
        .alpn_protocols(alpn.iter().map(|p| p.to_vec()).collect())
        .layer(connector)
        .oneshot(ServerIdentity(expected.clone()))
        .await
}

/// An HTTP/1 or HTTP/2 request sender over a TLS connection.
pub enum Http {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Http {
    pub async fn h1(io: ClientTlsStream<TcpStream>) -> Self {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .expect("http1 handshake");
        tokio::spawn(conn);
        Http::H1(send)
    }

    pub async fn h2(io: ClientTlsStream<TcpStream>) -> Self {
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .expect("http2 handshake");
        tokio::spawn(conn);
        Http::H2(send)
    }

    /// GET / and return the body.
    pub async fn get(&mut self) -> Result<String, BoxError> {
        let req = Request::get("https://server.test/")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let rsp = match self {
            Http::H1(s) => {
                let (mut parts, body) = req.into_parts();
                parts.uri = "/".parse().expect("uri");
                parts
                    .headers
                    .insert(http::header::HOST, "server.test".parse().expect("host"));
                s.send_request(Request::from_parts(parts, body)).await?
            }
            Http::H2(s) => s.send_request(req).await?,
        };
        assert_eq!(rsp.status(), 200);
        let body = rsp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8(body.to_vec())?)
    }
}

/// A raw tokio-rustls client config trusting `ca`, with the given client certificate, if any.
pub fn raw_client(
    ca: &CertificateAuthority,
    client: Option<&mesh_tls::LeafCredentials>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = ca.trust_bundle().roots().clone();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some(leaf) => {
            let mut chain = vec![leaf.certificate.leaf.clone()];
            chain.extend(leaf.certificate.intermediates.iter().cloned());
            b.with_client_auth_cert(chain, leaf.key_der())
                .expect("client cert")
        }
    };
    Arc::new(cfg)
}

/// Connects with a raw rustls client and tries a read: returns the first error seen (TLS 1.3
/// clients learn that the server refused their certificate only on their first read).
pub async fn raw_handshake(
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &ServiceIdentity,
) -> Result<(), std::io::Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(name.as_str().to_owned())
        .map_err(std::io::Error::other)?;
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await?;
    if buf.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&buf)
        )))
    }
}
