//! From catalog values to the proxy API's messages.

use std::collections::HashMap;
use std::time::Duration;

use linkerd2_proxy_api::destination as dst;
use linkerd2_proxy_api::meta;
use linkerd2_proxy_api::net;

use crate::catalog::{Endpoint, Protocol, ProtocolHint, ServiceRef};

/// A protobuf duration (saturating; durations here are small).
pub(crate) fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A `core/Service` resource reference.
pub(crate) fn service_meta(service: &ServiceRef, port: u16) -> meta::Metadata {
    meta::Metadata {
        kind: Some(meta::metadata::Kind::Resource(meta::Resource {
            group: "core".into(),
            kind: "Service".into(),
            name: service.name.clone(),
            namespace: service.namespace.clone(),
            section: String::new(),
            port: u32::from(port),
        })),
    }
}

/// A default (implicit) configuration's metadata.
pub(crate) fn default_meta(name: &str) -> meta::Metadata {
    meta::Metadata {
        kind: Some(meta::metadata::Kind::Default(name.into())),
    }
}

/// A mesh resource reference (a route, an authorization, a server from `mesh.yaml`).
pub(crate) fn mesh_meta(kind: &str, name: &str, namespace: &str) -> meta::Metadata {
    meta::Metadata {
        kind: Some(meta::metadata::Kind::Resource(meta::Resource {
            group: "mesh".into(),
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.into(),
            section: String::new(),
            port: 0,
        })),
    }
}

/// The labels describing a service's endpoint set.
pub(crate) fn service_labels(service: &ServiceRef) -> HashMap<String, String> {
    HashMap::from([
        ("namespace".to_owned(), service.namespace.clone()),
        ("service".to_owned(), service.name.clone()),
    ])
}

/// An endpoint as the destination API describes it.
pub(crate) fn weighted_addr(endpoint: &Endpoint, protocol: Protocol) -> dst::WeightedAddr {
    let mut labels: HashMap<String, String> = endpoint
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(w) = &endpoint.workload {
        labels.entry("pod".into()).or_insert_with(|| w.clone());
    }
    let tls_identity = endpoint.identity.as_ref().map(|id| {
        // `<sa>.<ns>.serviceaccount.identity...`: the service account is a metrics label too.
        if let Some((sa, rest)) = id.as_str().split_once('.')
            && rest.contains(".serviceaccount.identity.")
        {
            labels
                .entry("serviceaccount".into())
                .or_insert_with(|| sa.to_owned());
        }
        dst::TlsIdentity {
            strategy: Some(if id.is_spiffe() {
                dst::tls_identity::Strategy::UriLikeIdentity(dst::tls_identity::UriLikeIdentity {
                    uri: id.as_str().to_owned(),
                })
            } else {
                dst::tls_identity::Strategy::DnsLikeIdentity(dst::tls_identity::DnsLikeIdentity {
                    name: id.as_str().to_owned(),
                })
            }),
            server_name: Some(dst::tls_identity::DnsLikeIdentity {
                name: id.sni_name().to_owned(),
            }),
        }
    });
    let protocol_hint = match endpoint.effective_hint(protocol) {
        ProtocolHint::H2 => Some(dst::ProtocolHint {
            protocol: Some(dst::protocol_hint::Protocol::H2(dst::protocol_hint::H2 {})),
            opaque_transport: None,
        }),
        ProtocolHint::Opaque => Some(dst::ProtocolHint {
            protocol: Some(dst::protocol_hint::Protocol::Opaque(
                dst::protocol_hint::Opaque {},
            )),
            opaque_transport: None,
        }),
        ProtocolHint::None | ProtocolHint::Auto => None,
    };
    dst::WeightedAddr {
        addr: Some(net::TcpAddress::from(endpoint.addr)),
        weight: endpoint.weight,
        metric_labels: labels,
        tls_identity,
        protocol_hint,
        authority_override: None,
        http2: None,
        resource_ref: None,
    }
}
