//! `InboundServerPolicies.WatchPort`: how the proxy must serve one of its workload's ports,
//! followed across reconnections.

use linkerd2_proxy_api::inbound::{
    PortSpec, Server, inbound_server_policies_client::InboundServerPoliciesClient,
};
use tonic::transport::Channel;

use crate::Follow;

/// The policy of `port` of `workload` (`namespace:name`, or Linkerd's JSON
/// `{"ns":"...","pod":"..."}`), each time it changes.
pub fn watch_port(channel: Channel, workload: impl Into<String>, port: u16) -> Follow<Server> {
    let workload = workload.into();
    Follow::new(move || {
        let mut client = InboundServerPoliciesClient::new(channel.clone());
        let req = PortSpec {
            workload: workload.clone(),
            port: u32::from(port),
        };
        async move { client.watch_port(req).await.map(|rsp| rsp.into_inner()) }
    })
}
