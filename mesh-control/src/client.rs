//! Connecting to the control plane: gRPC channels over mutual TLS, and a `Certify` client.
//!
//! A proxy verifies the control plane against its trust anchors and expects the control plane's
//! identity ([`crate::state::read_control_identity`]); it presents its own certificate once it
//! has one. Every Linkerd client in `linkerd2-proxy-api` (and [`RegistrationClient`]) runs over
//! the [`Channel`] these functions return:
//!
//! ```no_run
//! use linkerd2_proxy_api::destination::{destination_client::DestinationClient, GetDestination};
//! use mesh_control::client;
//! # async fn f(creds: mesh_tls::Credentials, addr: std::net::SocketAddr,
//! #            control: mesh_tls::ServiceIdentity) -> Result<(), Box<dyn std::error::Error>> {
//! let channel = client::channel(addr, client::Tls::new(creds, control));
//! let mut dst = DestinationClient::new(channel);
//! let mut updates = dst.get(GetDestination {
//!     path: "web.emojivoto.svc.cluster.local:8080".into(),
//!     ..Default::default()
//! }).await?.into_inner();
//! while let Some(update) = updates.message().await? {
//!     println!("{update:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! [`RegistrationClient`]: crate::api::registration::RegistrationClient

use std::net::SocketAddr;
use std::time::SystemTime;

use hyper_util::rt::TokioIo;
use linkerd2_proxy_api::identity::{CertifyRequest, identity_client::IdentityClient};
use mesh_tls::certify::{Certify, CertifyFuture, CertifyRequest as TlsCertifyRequest};
use mesh_tls::client::{ServerIdentity, TlsClientLayer};
use mesh_tls::{BoxError, Credentials, IssuedCertificate, ServiceIdentity};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, ServiceExt, service_fn};

/// How to reach a TLS control plane: our credentials (which present a certificate once they
/// have one) and the identity the control plane must prove.
#[derive(Clone, Debug)]
pub struct Tls {
    credentials: Credentials,
    server: ServiceIdentity,
}

impl Tls {
    /// TLS with `credentials`, expecting the control plane to prove `server`.
    pub fn new(credentials: Credentials, server: ServiceIdentity) -> Self {
        Self {
            credentials,
            server,
        }
    }
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    // The URI only names the :authority; the connector below decides where to connect.
    Endpoint::from(
        http::Uri::builder()
            .scheme("http")
            .authority(addr.to_string())
            .path_and_query("/")
            .build()
            .unwrap_or_else(|_| http::Uri::from_static("http://control.mesh")),
    )
    .tcp_nodelay(true)
}

fn tls_connector(
    addr: SocketAddr,
    tls: Tls,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<mesh_tls::client::ClientTlsStream<TcpStream>>,
    Error = BoxError,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let layer = TlsClientLayer::new(&tls.credentials).alpn_protocols(vec![b"h2".to_vec()]);
    let server = tls.server;
    service_fn(move |_: http::Uri| {
        let connect = layer.layer(service_fn(move |_: ServerIdentity| async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(tcp)
        }));
        let server = ServerIdentity(server.clone());
        async move { connect.oneshot(server).await.map(TokioIo::new) }
    })
}

/// A channel to the control plane at `addr` over mutual TLS. It connects lazily and reconnects
/// as needed.
pub fn channel(addr: SocketAddr, tls: Tls) -> Channel {
    endpoint(addr).connect_with_connector_lazy(tls_connector(addr, tls))
}

/// Connects to the control plane at `addr` over mutual TLS now, failing if it cannot.
pub async fn connect(addr: SocketAddr, tls: Tls) -> Result<Channel, tonic::transport::Error> {
    endpoint(addr)
        .connect_with_connector(tls_connector(addr, tls))
        .await
}

/// A channel to a plaintext control plane (tests).
pub fn channel_plaintext(addr: SocketAddr) -> Channel {
    endpoint(addr).connect_with_connector_lazy(service_fn(move |_: http::Uri| async move {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok::<_, std::io::Error>(TokioIo::new(tcp))
    }))
}

/// A [`Certify`] signer backed by the control plane's `Identity.Certify`.
///
/// Each call connects afresh, so that once the proxy has a certificate, renewals are
/// authenticated by it over mutual TLS (a long-lived connection opened before the first
/// certificate would carry no client identity). The bootstrap token is sent with every request;
/// the control plane ignores it when the connection already proves the identity.
///
/// ```no_run
/// # async fn f(creds: mesh_tls::Credentials, addr: std::net::SocketAddr,
/// #            control: mesh_tls::ServiceIdentity, token: String) {
/// use mesh_control::client::{RemoteCertify, Tls};
/// use mesh_tls::certify::{refresh, RefreshPolicy};
///
/// let certify = RemoteCertify::new(addr, Tls::new(creds.clone(), control), Some(token));
/// tokio::spawn(refresh(creds.clone(), certify, RefreshPolicy::default()));
/// creds.ready().await;
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteCertify {
    addr: SocketAddr,
    tls: Tls,
    token: Option<String>,
}

impl RemoteCertify {
    /// Certifies at the control plane at `addr`, proving the identity with `token` the first
    /// time.
    pub fn new(addr: SocketAddr, tls: Tls, token: Option<String>) -> Self {
        Self { addr, tls, token }
    }

    async fn call(&self, request: TlsCertifyRequest) -> Result<IssuedCertificate, BoxError> {
        let channel = connect(self.addr, self.tls.clone()).await?;
        let rsp = IdentityClient::new(channel)
            .certify(CertifyRequest {
                identity: request.identity.as_str().to_owned(),
                token: self
                    .token
                    .as_deref()
                    .map(|t| t.as_bytes().to_vec())
                    .unwrap_or_default(),
                certificate_signing_request: request.csr.to_vec(),
            })
            .await?
            .into_inner();
        let valid_until = rsp
            .valid_until
            .and_then(|t| SystemTime::try_from(t).ok())
            .ok_or("the control plane sent a certificate without valid_until")?;
        Ok(IssuedCertificate {
            leaf: CertificateDer::from(rsp.leaf_certificate),
            intermediates: rsp
                .intermediate_certificates
                .into_iter()
                .map(CertificateDer::from)
                .collect(),
            valid_until,
        })
    }
}

impl Certify for RemoteCertify {
    fn certify(&self, request: TlsCertifyRequest) -> CertifyFuture<'_> {
        Box::pin(self.call(request))
    }
}

impl std::fmt::Debug for RemoteCertify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCertify")
            .field("addr", &self.addr)
            .field("server", &self.tls.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
