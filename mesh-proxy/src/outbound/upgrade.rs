//! Upgrades (WebSocket) and `CONNECT`: they cannot ride the HTTP/2 connection between proxies,
//! so each gets a connection of its own to one endpoint (mTLS with ALPN `http/1.1`), and the two
//! upgraded streams are spliced.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesh_core::BoxError;
use mesh_core::error::{Reason, Unavailable};

use super::client::EndpointClient;
use super::{RspBody, error_response};
use crate::connect::Connector;
use crate::discovery::Discover;
use crate::headers;

/// Proxies upgrade requests.
pub(crate) struct Upgrades {
    discovery: Arc<dyn Discover>,
    connector: Connector,
}

impl Upgrades {
    pub(crate) fn new(discovery: Arc<dyn Discover>, connector: Connector) -> Self {
        Self {
            discovery,
            connector,
        }
    }

    /// Sends `req` to an endpoint of `authority` on a connection of its own and, once the
    /// endpoint switches protocols, splices the app's upgraded stream to it.
    pub(crate) async fn proxy(
        &self,
        mut req: http::Request<Incoming>,
        authority: &str,
    ) -> http::Response<RspBody> {
        let grpc = false;
        let Some(dest) = self.discovery.resolve(authority) else {
            let unknown = Unavailable::new(authority, Reason::UnknownDestination);
            return error_response(&unknown, grpc);
        };
        let ep = {
            let d = dest.borrow();
            let eps: Vec<_> = d
                .backends
                .iter()
                .flat_map(|b| b.endpoints.clone())
                .collect();
            if eps.is_empty() {
                return error_response(&Unavailable::new(authority, Reason::NoEndpoints), grpc);
            }
            eps[rand::random_range(0..eps.len())].clone()
        };
        let client_upgrade = hyper::upgrade::on(&mut req);
        req.headers_mut().remove(headers::L5D_CLIENT_ID);
        let client = EndpointClient::new(ep.addr, ep.identity.clone(), self.connector.clone());
        let mut rsp = match client.upgrade(req).await {
            Ok(rsp) => rsp,
            Err(e) => return error_response(&*e, grpc),
        };
        if rsp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let peer_upgrade = hyper::upgrade::on(&mut rsp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, peer_upgrade) {
                    Ok((a, b)) => {
                        let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                        if let Err(error) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                            tracing::debug!(%error, "upgraded stream ended");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            });
        }
        use http_body_util::BodyExt;
        rsp.map(|b| b.map_err(BoxError::from).boxed_unsync())
    }
}

impl std::fmt::Debug for Upgrades {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrades")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}
