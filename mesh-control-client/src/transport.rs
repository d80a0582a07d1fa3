//! Connecting to the control plane: gRPC channels over mutual TLS.
//!
//! A proxy verifies the control plane against its trust anchors and expects the control plane's
//! identity (in local mode, `control.identity` in the state directory); it presents its own
//! certificate once it has one. Every Linkerd client in `linkerd2-proxy-api` (and
//! [`RegistrationClient`]) runs over the [`Channel`] these functions return:
//!
//! ```no_run
//! use linkerd2_proxy_api::destination::{destination_client::DestinationClient, GetDestination};
//! use mesh_control_client::transport as client;
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
//! [`RegistrationClient`]: crate::registration::RegistrationClient

use std::net::SocketAddr;

use hyper_util::rt::TokioIo;
use mesh_tls::client::{ServerIdentity, TlsClientLayer};
use mesh_tls::{BoxError, Credentials, ServiceIdentity};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, ServiceExt, service_fn};

/// How to reach a TLS control plane: our credentials (which present a certificate once they
/// have one) and the identity the control plane must prove.
#[derive(Clone, Debug)]
pub struct Tls {
    credentials: Credentials,
    pub(crate) server: ServiceIdentity,
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

/// A channel to a plaintext control plane (a test server, or one on this host's loopback).
pub fn channel_plaintext(addr: SocketAddr) -> Channel {
    endpoint(addr).connect_with_connector_lazy(service_fn(move |_: http::Uri| async move {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok::<_, std::io::Error>(TokioIo::new(tcp))
    }))
}
