//! Stage 6, per endpoint: tap, then one multiplexed HTTP/2 connection to the peer proxy over
//! mutual TLS ([`EndpointClient`]).
//!
//! Tap sits here, as in Linkerd, so each event names the endpoint the balancer picked (its
//! address and identity) and each retry is an attempt of its own.

use mesh_core::stack::{NewService, Param};
use mesh_core::tap::{Tap, TapLayer, TapMeta};
use tower::Layer;

use super::Outbound;
use super::client::EndpointClient;
use super::target::Endpoint;
use crate::connect::Connector;

/// The service each endpoint of a balancer gets.
pub(crate) type EndpointStack = mesh_core::tap::TapService<EndpointClient>;

/// Builds an endpoint's stack. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NewEndpoint {
    tap: Tap,
    connector: Connector,
}

impl Outbound<()> {
    /// The bottom of the stack: an endpoint's tap and client.
    pub(crate) fn push_endpoint(self) -> Outbound<NewEndpoint> {
        let stack = NewEndpoint {
            tap: self.rt.tap.clone(),
            connector: Connector::new(self.rt.creds.clone(), self.rt.config.connect_timeout),
        };
        self.map_stack(|()| stack)
    }
}

impl NewService<Endpoint> for NewEndpoint {
    type Service = EndpointStack;

    fn new_service(&self, target: Endpoint) -> EndpointStack {
        let meta: TapMeta = target.param();
        let client = EndpointClient::new(target.addr, target.identity, self.connector.clone());
        TapLayer::new(self.tap.clone(), meta).layer(client)
    }
}
