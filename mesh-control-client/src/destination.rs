//! `Destination.Get` and `Destination.GetProfile`, followed across reconnections.
//!
//! The proxy turns these into its own types (endpoint sets for the balancers, routes for the
//! logical stack); this module only keeps the streams alive and says where each new stream starts
//! ([`Update::Reset`](crate::Update::Reset)).

use std::net::SocketAddr;

use linkerd2_proxy_api::destination::{
    self as api, GetDestination, destination_client::DestinationClient,
};
use tonic::transport::Channel;

use crate::Follow;

/// The scheme Linkerd's proxies name destinations with.
const SCHEME: &str = "k8s";

fn request(authority: &str, context_token: &str) -> GetDestination {
    GetDestination {
        scheme: SCHEME.into(),
        path: authority.to_owned(),
        context_token: context_token.to_owned(),
    }
}

/// The endpoints of `authority` (`name:port`), as `Destination.Get` streams them.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use mesh_control_client::{Update, destination};
/// # async fn f(channel: tonic::transport::Channel) {
/// let mut updates = destination::endpoints(channel, "web.emojivoto.svc.cluster.local:8080");
/// while let Some(Update::Reset(u) | Update::Next(u)) = updates.next().await {
///     println!("{u:?}");
/// }
/// # }
/// ```
pub fn endpoints(channel: Channel, authority: impl Into<String>) -> Follow<api::Update> {
    let authority = authority.into();
    Follow::new(move || {
        let mut client = DestinationClient::new(channel.clone());
        let req = request(&authority, "");
        async move { client.get(req).await.map(|rsp| rsp.into_inner()) }
    })
}

/// The service profile of `authority`, as `Destination.GetProfile` streams it: routes, retry
/// budget, traffic split overrides, whether the port is opaque.
pub fn profiles(channel: Channel, authority: impl Into<String>) -> Follow<api::DestinationProfile> {
    let authority = authority.into();
    Follow::new(move || {
        let mut client = DestinationClient::new(channel.clone());
        let req = request(&authority, "");
        async move { client.get_profile(req).await.map(|rsp| rsp.into_inner()) }
    })
}

/// The address of a `WeightedAddr`, if it has a valid one.
pub fn socket_addr(addr: &linkerd2_proxy_api::net::TcpAddress) -> Option<SocketAddr> {
    SocketAddr::try_from(*addr).ok()
}

/// The TLS identity a `WeightedAddr` says its endpoint proves, if any.
pub fn tls_identity(addr: &api::WeightedAddr) -> Option<&str> {
    match addr.tls_identity.as_ref()?.strategy.as_ref()? {
        api::tls_identity::Strategy::DnsLikeIdentity(d) => Some(&d.name),
        api::tls_identity::Strategy::UriLikeIdentity(u) => Some(&u.uri),
    }
}
