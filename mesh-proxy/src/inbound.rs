//! The inbound stack: from a peer proxy (or an unmeshed client) to the app on 127.0.0.1.
//!
//! Per connection, outermost first:
//!
//! 1. **detect** — peek the first bytes (bounded, with a timeout): a TLS ClientHello from a
//!    meshed peer, plaintext HTTP, or opaque TCP. Server-speaks-first (opaque) app ports skip
//!    HTTP detection; meshed peers' TLS is still detected and terminated there.
//! 2. **mTLS** — terminate TLS with the proxy's certificate; the client's identity is read from
//!    its verified certificate.
//! 3. **authorize** — the port's default policy (Linkerd's names): `all-authenticated`,
//!    `all-unauthenticated`, `cluster-unauthenticated`, `deny`. A refused HTTP request gets a 403
//!    naming the policy; a refused TCP connection is closed.
//! 4. **protocol** — by ALPN from a meshed peer (`h2`: the mesh's HTTP/2, `http/1.1`: an upgrade
//!    connection, `mesh.opaque/1`: bytes), by detection for plaintext.
//! 5. **HTTP** — metrics and tap per request, mesh headers restored to what the app expects
//!    (`l5d-orig-proto` → HTTP/1, `l5d-client-id` set), then pooled connections to the app.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::BoxError;
use mesh_core::detect::{self, Protocol};
use mesh_core::metrics::Labels;
use mesh_core::rescue::RescueLayer;
use mesh_core::tap::{TapLayer, TapMeta, TapPeer};
use mesh_tls::server::{ClientAuth, ServerTlsStream};
use mesh_tls::{ServiceIdentity, TlsServerLayer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::discovery::Destination;
use crate::endpoint::{ALPN_H2, ALPN_HTTP1, ALPN_OPAQUE, RequestError};
use crate::outbound::RspBody;
use crate::runtime::Runtime;
use crate::{headers, serve};

/// Which clients may call a port, with Linkerd's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Only meshed clients with a verified identity.
    AllAuthenticated,
    /// Anyone, meshed or not (Linkerd's default).
    #[default]
    AllUnauthenticated,
    /// Meshed clients, and unmeshed ones from loopback or private (cluster) networks.
    ClusterUnauthenticated,
    /// Nobody.
    Deny,
}

impl std::str::FromStr for DefaultPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "all-authenticated" => Self::AllAuthenticated,
            "all-unauthenticated" => Self::AllUnauthenticated,
            "cluster-unauthenticated" => Self::ClusterUnauthenticated,
            "deny" => Self::Deny,
            other => {
                return Err(format!(
                    "unknown policy {other:?}; use all-authenticated, all-unauthenticated, \
                     cluster-unauthenticated or deny"
                ));
            }
        })
    }
}

impl DefaultPolicy {
    /// The policy's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AllAuthenticated => "all-authenticated",
            Self::AllUnauthenticated => "all-unauthenticated",
            Self::ClusterUnauthenticated => "cluster-unauthenticated",
            Self::Deny => "deny",
        }
    }

    /// Whether a client with `identity` (None: unauthenticated) from `addr` may call.
    pub fn allows(&self, identity: Option<&ServiceIdentity>, addr: IpAddr) -> bool {
        match self {
            Self::Deny => false,
            Self::AllUnauthenticated => true,
            Self::AllAuthenticated => identity.is_some(),
            Self::ClusterUnauthenticated => identity.is_some() || is_cluster_network(addr),
        }
    }
}

fn is_cluster_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The inbound side of a proxy, forwarding to one app address.
pub struct Inbound {
    rt: Runtime,
    app: SocketAddr,
    policy: DefaultPolicy,
    /// The profile of this workload's own service: its routes label the requests' metrics.
    profile: Option<watch::Receiver<Arc<Destination>>>,
    h1: Client<AppConnector, Incoming>,
    h2: Client<AppConnector, Incoming>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("app", &self.app)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Connects to the app, whatever the request's URI says.
#[derive(Clone, Debug)]
struct AppConnector(SocketAddr, std::time::Duration);

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
        Box::pin(async move {
            let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| format!("connect to the app at {addr} timed out after {timeout:?}"))?
                .map_err(|e| format!("connect to the app at {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(tcp))
        })
    }
}

impl Inbound {
    /// The inbound side, forwarding to the app at `app` under `policy`; `profile` is that of
    /// the workload's own service, whose routes label the requests' metrics (as Linkerd's
    /// inbound side does with the server's service profile).
    pub fn new(
        rt: Runtime,
        app: SocketAddr,
        policy: DefaultPolicy,
        profile: Option<watch::Receiver<Arc<Destination>>>,
    ) -> Arc<Self> {
        let connector = AppConnector(app, rt.config.connect_timeout);
        let h1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Arc::new(Self {
            rt,
            app,
            policy,
            profile,
            h1,
            h2,
        })
    }

    /// Serves connections on `listener`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let rt = self.rt.clone();
        serve::accept_loop(listener, rt, "inbound", move |tcp, peer| {
            let this = self.clone();
            async move { this.connection(tcp, peer).await }
        })
        .await;
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let rt = &self.rt;
        // A server-speaks-first app port is never detected as HTTP. TLS is still detected: a
        // meshed peer speaks first whatever the app's protocol (its ClientHello), and its mTLS
        // must be terminated here, not handed to the app. An unmeshed client that waits for the
        // app's greeting waits for the detect timeout, as with Linkerd's opaque ports (such
        // clients need the port skipped instead).
        let opaque_port = rt.config.opaque_ports.contains(&self.app.port());
        let config = detect::Config::new()
            .with_timeout(rt.config.detect_timeout)
            .with_capacity(8 * 1024);
        let (detected, io) = match detect::detect(tcp, &config).await {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(%error, %peer, "detection failed");
                rt.metrics.conn_error("inbound", "detect");
                return;
            }
        };
        if detected.is_timeout() {
            rt.metrics
                .detect_timeouts
                .get_or_create(&Labels::new().with("direction", "inbound"))
                .inc();
        }
        match detected.protocol() {
            Protocol::Tls { .. } => self.tls(io, peer).await,
            _ if opaque_port => self.opaque(io, None, peer).await,
            Protocol::Http1 | Protocol::Http2 => self.http(io, None, peer, None).await,
            Protocol::Opaque => self.opaque(io, None, peer).await,
        }
    }

    async fn tls<IO>(self: Arc<Self>, io: IO, peer: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let auth = match self.policy {
            DefaultPolicy::AllAuthenticated => ClientAuth::Required,
            _ => ClientAuth::Optional,
        };
        let layer = TlsServerLayer::new(&self.rt.creds)
            .client_auth(auth)
            .alpn_protocols(vec![
                ALPN_H2.to_vec(),
                ALPN_HTTP1.to_vec(),
                ALPN_OPAQUE.to_vec(),
            ])
            .handshake_timeout(self.rt.config.detect_timeout);
        let this = self.clone();
        let svc = layer.layer(tower::service_fn(move |tls: ServerTlsStream<IO>| {
            let this = this.clone();
            async move {
                let client = tls.client_identity().cloned();
                let alpn = tls.alpn_protocol().map(<[u8]>::to_vec);
                match alpn.as_deref() {
                    Some(ALPN_OPAQUE) => this.opaque(tls, client, peer).await,
                    Some(ALPN_H2) | Some(ALPN_HTTP1) => this.http(tls, client, peer, alpn).await,
                    _ => this.http(tls, client, peer, None).await,
                }
                Ok::<_, Infallible>(())
            }
        }));
        if let Err(error) = svc.oneshot(io).await {
            tracing::info!(%error, %peer, "inbound TLS handshake failed");
            self.rt.metrics.conn_error("inbound", "tls_handshake");
        }
    }

    async fn http<IO>(
        self: Arc<Self>,
        io: IO,
        client: Option<ServiceIdentity>,
        peer: SocketAddr,
        _alpn: Option<Vec<u8>>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let allowed = self.policy.allows(client.as_ref(), peer.ip());
        let tls = client.is_some();
        let mut labels = Labels::new()
            .with("direction", "inbound")
            .with("tls", if tls { "true" } else { "no_identity" })
            .with("target_addr", self.app.to_string());
        if let Some(c) = &client {
            labels = labels.with("client_id", c.as_str());
        }
        let mut tap_peer = TapPeer::new(peer).with_tls(tls);
        if let Some(c) = &client {
            tap_peer = tap_peer.with_identity(c.as_str().to_string());
        }
        let tap_meta = TapMeta::inbound()
            .with_destination_addr(self.app)
            .with_destination_identity(self.rt.creds.identity().as_str().to_string())
            .with_tls(tls);
        let profile = self.profile.clone();
        let this = self.clone();
        let client_id = client.as_ref().map(|c| c.as_str().to_string());
        let forward = tower::service_fn(move |req: http::Request<Incoming>| {
            let this = this.clone();
            let client_id = client_id.clone();
            async move { this.forward(req, client_id.as_deref()).await }
        });
        let svc: BoxCloneService<http::Request<Incoming>, http::Response<RspBody>, Infallible> =
            if allowed {
                BoxCloneService::new(
                    ServiceBuilder::new()
                        .map_request(move |mut req: http::Request<Incoming>| {
                            req.extensions_mut().insert(tap_peer.clone());
                            if let Some(profile) = &profile {
                                let route = profile
                                    .borrow()
                                    .routes
                                    .iter()
                                    .find(|r| r.matches(&req))
                                    .map(|r| r.name.clone());
                                if let Some(route) = route {
                                    req.extensions_mut().insert(route);
                                }
                            }
                            req
                        })
                        .layer(RescueLayer::new())
                        .layer(self.rt.metrics.http.layer(labels))
                        .layer(TapLayer::new(self.rt.tap.clone(), tap_meta))
                        .service(forward)
                        .map_response(|rsp: http::Response<_>| {
                            rsp.map(|b| b.map_err(BoxError::from).boxed_unsync())
                        }),
                )
            } else {
                let deny = self.rt.metrics.authz_deny.get_or_create(&labels).clone();
                let policy = self.policy;
                BoxCloneService::new(tower::service_fn(move |_req: http::Request<Incoming>| {
                    deny.inc();
                    let msg = format!(
                        "unauthorized: the {} policy of this server refuses {} clients",
                        policy.as_str(),
                        if tls { "these" } else { "unauthenticated" }
                    );
                    let mut rsp = http::Response::new(
                        http_body_util::Full::new(Bytes::from(format!("{msg}\n")))
                            .map_err(BoxError::from)
                            .boxed_unsync(),
                    );
                    *rsp.status_mut() = http::StatusCode::FORBIDDEN;
                    if let Ok(v) = http::HeaderValue::from_str(&msg) {
                        rsp.headers_mut()
                            .insert(mesh_core::rescue::L5D_PROXY_ERROR, v);
                    }
                    async move { Ok::<_, Infallible>(rsp) }
                }))
            };
        let svc = hyper_util::service::TowerToHyperService::new(svc);
        serve::http_auto(io, svc, &self.rt, "inbound").await;
    }

    /// Sends a request to the app.
    async fn forward(
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
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
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
                .unwrap_or_else(|| self.app.to_string());
            *req.uri_mut() = http::Uri::builder()
                .scheme("http")
                .authority(authority.as_str())
                .path_and_query(pq.as_str())
                .build()
                .or_else(|_| {
                    http::Uri::builder()
                        .scheme("http")
                        .authority(self.app.to_string())
                        .path_and_query(pq.as_str())
                        .build()
                })?;
        }
        let rsp = if req.version() == http::Version::HTTP_2 {
            self.h2.request(req).await
        } else {
            self.h1.request(req).await
        }
        .map_err(|e| RequestError::new(format!("the app at {}", self.app), e))?;
        let (mut parts, body) = rsp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(http::Response::from_parts(parts, body))
    }

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
        let tcp =
            tokio::time::timeout(self.rt.config.connect_timeout, TcpStream::connect(self.app))
                .await
                .map_err(|_| format!("connect to the app at {} timed out", self.app))??;
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

    async fn opaque<IO>(self: Arc<Self>, io: IO, client: Option<ServiceIdentity>, peer: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let rt = &self.rt;
        let mut labels = Labels::new()
            .with("direction", "inbound")
            .with(
                "tls",
                if client.is_some() {
                    "true"
                } else {
                    "no_identity"
                },
            )
            .with("target_addr", self.app.to_string());
        if let Some(c) = &client {
            labels = labels.with("client_id", c.as_str());
        }
        if !self.policy.allows(client.as_ref(), peer.ip()) {
            rt.metrics.authz_deny.get_or_create(&labels).inc();
            tracing::info!(%peer, policy = self.policy.as_str(), "TCP connection refused by policy");
            return;
        }
        let mut client_io = rt.metrics.tcp.sensor(&labels).wrap(io);
        let app =
            match tokio::time::timeout(rt.config.connect_timeout, TcpStream::connect(self.app))
                .await
            {
                Ok(Ok(app)) => app,
                Ok(Err(error)) => {
                    tracing::info!(%error, app = %self.app, "cannot connect to the app");
                    rt.metrics.conn_error("inbound", "app_connect");
                    return;
                }
                Err(_) => {
                    rt.metrics.conn_error("inbound", "app_connect_timeout");
                    return;
                }
            };
        let _ = app.set_nodelay(true);
        let mut app = app;
        if let Err(error) = tokio::io::copy_bidirectional(&mut client_io, &mut app).await {
            tracing::debug!(%error, "opaque connection ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let id: ServiceIdentity = "web.ns.serviceaccount.identity.mesh.cluster.local"
            .parse()
            .unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        use DefaultPolicy::*;
        assert!(AllUnauthenticated.allows(None, public));
        assert!(!AllAuthenticated.allows(None, lo));
        assert!(AllAuthenticated.allows(Some(&id), public));
        assert!(ClusterUnauthenticated.allows(None, private));
        assert!(!ClusterUnauthenticated.allows(None, public));
        assert!(!Deny.allows(Some(&id), lo));
        assert!(
            "nobody"
                .parse::<DefaultPolicy>()
                .unwrap_err()
                .contains("all-authenticated")
        );
    }
}
