//! Opaque TCP to a destination: bytes forwarded as they are to one of its endpoints, over mutual
//! TLS with ALPN `mesh.opaque/1` (so the inbound proxy forwards them to the app without detecting
//! a protocol). Endpoints are tried in a random order until one connects.

use std::sync::Arc;

use mesh_core::BoxError;
use mesh_core::error::{Reason, Unavailable};
use mesh_core::metrics::Labels;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::connect::{ALPN_OPAQUE, Connector};
use crate::discovery::Discover;
use crate::runtime::Runtime;

/// Forwards opaque connections.
pub(crate) struct Opaque {
    rt: Runtime,
    discovery: Arc<dyn Discover>,
    connector: Connector,
}

impl Opaque {
    pub(crate) fn new(rt: Runtime, discovery: Arc<dyn Discover>) -> Self {
        let connector = Connector::new(rt.creds.clone(), rt.config.connect_timeout);
        Self {
            rt,
            discovery,
            connector,
        }
    }

    /// Forwards `tcp` to an endpoint of `authority` until either side closes; counts a failure.
    pub(crate) async fn serve<IO>(&self, tcp: IO, authority: &str)
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        if let Err(error) = self.forward(tcp, authority).await {
            tracing::info!(%error, %authority, "opaque connection failed");
            self.rt.metrics.conn_error("outbound", "opaque_connect");
        }
    }

    async fn forward<IO>(&self, tcp: IO, authority: &str) -> Result<(), BoxError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let dest = self
            .discovery
            .resolve(authority)
            .ok_or_else(|| Unavailable::new(authority, Reason::UnknownDestination))?;
        let endpoints = dest.borrow().all_endpoints();
        let labels = Labels::new()
            .with("direction", "outbound")
            .with("authority", authority);
        let mut client = self.rt.metrics.tcp.sensor(&labels).wrap(tcp);
        let start = rand::random_range(0..endpoints.len().max(1));
        let mut last = None;
        for i in 0..endpoints.len() {
            let ep = &endpoints[(start + i) % endpoints.len()];
            match self
                .connector
                .connect(ep.addr, ep.identity.as_ref(), ALPN_OPAQUE)
                .await
            {
                Ok(mut peer) => {
                    tokio::io::copy_bidirectional(&mut client, &mut peer).await?;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => Box::new(e),
            None => Box::new(Unavailable::new(authority, Reason::NoEndpoints)),
        })
    }
}

impl std::fmt::Debug for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opaque")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}
