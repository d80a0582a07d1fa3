//! Stage 6: the app on 127.0.0.1. HTTP over pooled connections (an HTTP/1 pool and an HTTP/2
//! one, as the request's version says), upgrades and opaque TCP over connections of their own.
//! The mesh's headers are restored to what the app expects: the original HTTP version
//! (`l5d-orig-proto`), `Host`, and `l5d-client-id` set to the verified client identity.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::BoxError;
use mesh_core::error::RequestError;
use tokio::net::TcpStream;

use super::Inbound;
use crate::headers;
use crate::runtime::Runtime;

/// The app's clients. One per proxy; shared by every connection.
pub(crate) struct App {
    rt: Runtime,
    addr: SocketAddr,
    h1: Client<AppConnector, Incoming>,
    h2: Client<AppConnector, Incoming>,
}

/// Connects to the app, whatever the request's URI says.
#[derive(Clone, Debug)]
struct AppConnector(SocketAddr, Duration);

impl Inbound<()> {
    /// The bottom of the stack: clients of the app at `app`.
    pub(crate) fn push_app(self, app: SocketAddr) -> Inbound<App> {
        let connector = AppConnector(app, self.rt.config.connect_timeout);
        let h1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        let rt = self.rt.clone();
        self.map_stack(|()| App {
            rt,
            addr: app,
            h1,
            h2,
        })
    }
}

impl App {
    /// The app's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A TCP connection to the app (opaque traffic, upgrades), within the connect timeout.
    pub(crate) async fn connect(&self) -> Result<TcpStream, AppConnectError> {
        connect(self.addr, self.rt.config.connect_timeout).await
    }

    /// Sends a request to the app, from a client with identity `client`.
    pub(crate) async fn forward(
        &self,
        mut req: http::Request<Incoming>,
        client: Option<&str>,
    ) -> Result<http::Response<Incoming>, BoxError> {
        if headers::is_upgrade(&req) {
            return self.upgrade(req, client).await;
        }
        headers::to_app(&mut req, client);
        if self.rt.config.app_http1 && req.version() == http::Version::HTTP_2 {
            // The app speaks only HTTP/1.1: downgrade, with the authority as Host.
            *req.version_mut() = http::Version::HTTP_11;
            if !req.headers().contains_key(http::header::HOST)
                && let Some(v) = req
                    .uri()
                    .authority()
                    .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        // The client wants an absolute URI. One from the peer proxy already is (`http://`
        // and the authority the app was called by); build one only for the others.
        let absolute =
            req.uri().scheme() == Some(&http::uri::Scheme::HTTP) && req.uri().authority().is_some();
        if !absolute {
            *req.uri_mut() = self.absolute_uri(&req)?;
        }
        let rsp = if req.version() == http::Version::HTTP_2 {
            self.h2.request(req).await
        } else {
            self.h1.request(req).await
        }
        .map_err(|e| RequestError::new(format!("the app at {}", self.addr), e))?;
        let (mut parts, body) = rsp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(http::Response::from_parts(parts, body))
    }

    /// `http://<authority><path>` for a request with a relative URI: its `Host`, else the app's
    /// address.
    fn absolute_uri(&self, req: &http::Request<Incoming>) -> Result<http::Uri, http::Error> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.addr.to_string());
        http::Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(pq)
            .build()
            .or_else(|_| {
                http::Uri::builder()
                    .scheme("http")
                    .authority(self.addr.to_string())
                    .path_and_query(pq)
                    .build()
            })
    }

    /// An upgrade (WebSocket) or `CONNECT`: a connection of its own to the app, spliced to the
    /// client's once the app switches protocols.
    async fn upgrade(
        &self,
        mut req: http::Request<Incoming>,
        client: Option<&str>,
    ) -> Result<http::Response<Incoming>, BoxError> {
        let client_upgrade = hyper::upgrade::on(&mut req);
        req.headers_mut().remove(headers::L5D_CLIENT_ID);
        if let Some(id) = client.and_then(|c| http::HeaderValue::from_str(c).ok()) {
            req.headers_mut().insert(headers::L5D_CLIENT_ID, id);
        }
        let tcp = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upgraded app connection ended");
            }
        });
        let mut rsp = sender.send_request(req).await?;
        if rsp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let app_upgrade = hyper::upgrade::on(&mut rsp);
            tokio::spawn(async move {
                if let Ok((a, b)) = tokio::try_join!(client_upgrade, app_upgrade) {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
        Ok(rsp)
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("addr", &self.addr).finish()
    }
}

impl tower_service::Service<http::Uri> for AppConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let (addr, timeout) = (self.0, self.1);
        Box::pin(async move { Ok(TokioIo::new(connect(addr, timeout).await?)) })
    }
}

/// The app could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the app at {addr}: {source}; is it listening there?")]
pub(crate) struct AppConnectError {
    addr: SocketAddr,
    #[source]
    source: io::Error,
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, AppConnectError> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(AppConnectError { addr, source }),
        Err(_) => {
            let source = io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {timeout:?}"),
            );
            return Err(AppConnectError { addr, source });
        }
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}
