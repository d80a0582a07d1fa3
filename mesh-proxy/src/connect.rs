//! Connections to peers: TCP, then mutual TLS expecting the peer's identity, with the ALPN of
//! what the connection carries.
//!
//! Between proxies the ALPN says what a connection carries, so the inbound side never has to
//! guess: [`ALPN_H2`] for the mesh's multiplexed HTTP/2, [`ALPN_HTTP1`] for a connection of its
//! own (an upgrade: WebSocket, `CONNECT`), [`ALPN_OPAQUE`] for bytes to forward to the app as
//! they are. A peer without an identity is unmeshed and gets plaintext.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::BoxError;
use mesh_core::stack::Param;
use mesh_tls::client::ServerIdentity;
use mesh_tls::{Credentials, ServiceIdentity, TlsClientLayer};
use tokio::net::TcpStream;
use tower::{Layer, ServiceExt};

/// ALPN for HTTP/2 between proxies.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN for an HTTP/1.1 upgrade connection between proxies.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN for opaque TCP between proxies: the inbound proxy forwards the bytes to the app
/// without protocol detection.
pub(crate) const ALPN_OPAQUE: &[u8] = b"mesh.opaque/1";

/// How to open connections to peers.
#[derive(Clone)]
pub(crate) struct Connector {
    creds: Credentials,
    connect_timeout: Duration,
}

/// A connection could not be made.
#[derive(Debug, thiserror::Error)]
#[error("connect to {addr} failed: {source}")]
pub(crate) struct ConnectError {
    pub(crate) addr: SocketAddr,
    #[source]
    pub(crate) source: BoxError,
}

#[derive(Debug, thiserror::Error)]
#[error("timed out after {0:?}")]
struct ConnectTimeout(Duration, #[source] tokio::time::error::Elapsed);

#[derive(Clone, Debug)]
struct Peer {
    identity: ServiceIdentity,
}

impl Param<ServerIdentity> for Peer {
    fn param(&self) -> ServerIdentity {
        ServerIdentity(self.identity.clone())
    }
}

/// A TCP or TLS stream to an endpoint.
pub(crate) type PeerIo =
    tokio_util::either::Either<TcpStream, mesh_tls::client::ClientTlsStream<TcpStream>>;

impl Connector {
    /// Connects with `creds`, giving up on a connection after `connect_timeout`.
    pub(crate) fn new(creds: Credentials, connect_timeout: Duration) -> Self {
        Self {
            creds,
            connect_timeout,
        }
    }

    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        identity: Option<&ServiceIdentity>,
        alpn: &[u8],
    ) -> Result<PeerIo, ConnectError> {
        let wrap = |source: BoxError| ConnectError { addr, source };
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|e| wrap(Box::new(ConnectTimeout(self.connect_timeout, e))))?
            .map_err(|e| wrap(Box::new(e)))?;
        let _ = tcp.set_nodelay(true);
        let Some(identity) = identity else {
            return Ok(tokio_util::either::Either::Left(tcp));
        };
        let mut tcp = Some(tcp);
        let connect = tower::service_fn(move |_: Peer| {
            let io = tcp.take().ok_or("one connection per call");
            async move { io }
        });
        let tls = TlsClientLayer::new(&self.creds)
            .alpn_protocols(vec![alpn.to_vec()])
            .handshake_timeout(self.connect_timeout.max(Duration::from_secs(1)))
            .layer(connect)
            .oneshot(Peer {
                identity: identity.clone(),
            })
            .await
            .map_err(wrap)?;
        Ok(tokio_util::either::Either::Right(tls))
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("identity", self.creds.identity())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}
