//! `OutboundPolicies.Watch`: how the proxy routes to a service (its routes' retries and
//! timeouts, failure accrual), followed across reconnections.

use linkerd2_proxy_api::outbound::{
    OutboundPolicy, TrafficSpec, outbound_policies_client::OutboundPoliciesClient, traffic_spec,
};
use tonic::transport::Channel;

use crate::Follow;

/// The outbound policy of `authority` (`name:port`), each time it changes. A target the
/// control plane does not know is `NOT_FOUND` ([`Update::Lost`](crate::Update::Lost)), and
/// asked again after a backoff: a service added later is found.
pub fn watch(channel: Channel, authority: impl Into<String>) -> Follow<OutboundPolicy> {
    let authority = authority.into();
    Follow::new(move || {
        let mut client = OutboundPoliciesClient::new(channel.clone());
        let req = TrafficSpec {
            source_workload: String::new(),
            target: Some(traffic_spec::Target::Authority(authority.clone())),
        };
        async move { client.watch(req).await.map(|rsp| rsp.into_inner()) }
    })
}
