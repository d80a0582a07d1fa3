//! Drives every API method with the plain tonic clients of `linkerd2-proxy-api`, over the
//! control plane's TLS port, and checks the answers field by field against the catalog.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use linkerd2_proxy_api::destination::{self as dst, update::Update};
use linkerd2_proxy_api::http_route::{self, path_match};
use linkerd2_proxy_api::http_types::HttpMethod;
use linkerd2_proxy_api::inbound::{
    self as inbound, PortSpec, inbound_server_policies_client::InboundServerPoliciesClient,
};
use linkerd2_proxy_api::meta::{self, metadata};
use linkerd2_proxy_api::net::TcpAddress;
use linkerd2_proxy_api::outbound::{
    self as outbound, TrafficSpec, outbound_policies_client::OutboundPoliciesClient,
};

use crate::support::*;

pub const CATALOG: &str = r#"
defaultPolicy: cluster-authenticated
clusterNetworks: [127.0.0.0/8]
services:
  - name: web
    namespace: emojivoto
    ports:
      - port: 8080
        protocol: http1
        authorization:
          serviceAccounts: [vote-bot]
          suffixes: [ops.serviceaccount.identity.mesh.cluster.local]
          networks: [127.0.0.0/8]
    endpoints:
      - address: 127.0.0.1:41001
        serviceAccount: web
        labels: {pod: web-0, zone: a}
      - address: 127.0.0.1:41002
        identity: web.emojivoto.serviceaccount.identity.mesh.cluster.local
        protocolHint: none
        weight: 5
    profile:
      retryBudget: {retryRatio: 0.3, minRetriesPerSecond: 5, ttl: 20s}
      routes:
        - name: list
          condition: {method: GET, pathRegex: /api/list}
          isRetryable: true
          maxRetries: 2
          timeout: 500ms
        - name: vote
          condition: {pathRegex: "/api/vote.*"}
          timeout: 1s
          responseClasses:
            - condition: {status: {min: 500, max: 503}}
              isFailure: true
    failureAccrual:
      consecutiveFailures: 5
      backoff: {min: 2s, max: 30s, jitterRatio: 0.25}

  - name: voting
    namespace: emojivoto
    ports:
      - port: 8080
        protocol: grpc
        authorization: {policy: all-authenticated}
    profile:
      routes:
        - name: vote-doughnut
          condition: {pathRegex: /emojivoto.v1.VotingService/VoteDoughnut}
          isRetryable: true

  - name: emoji
    namespace: emojivoto
    ports: [{port: 8080, protocol: http2}]
    split:
      - {service: emoji-v1, weight: 100}
      - {service: emoji-v2, weight: 0, port: 9090}
  - name: emoji-v1
    namespace: emojivoto
    ports: [{port: 8080, protocol: http2}]
  - name: emoji-v2
    namespace: emojivoto
    ports: [{port: 9090, protocol: http2}]

  - name: db
    namespace: emojivoto
    ports: [{port: 5432, protocol: opaque}]
    endpoints:
      - {address: 127.0.0.1:45432, serviceAccount: db}
"#;

const WEB_ID: &str = "web.emojivoto.serviceaccount.identity.mesh.cluster.local";

fn addr(s: &str) -> TcpAddress {
    TcpAddress::from(s.parse::<SocketAddr>().expect("addr"))
}

fn pd(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).expect("duration")
}

fn resource(group: &str, kind: &str, name: &str, ns: &str, port: u32) -> meta::Metadata {
    meta::Metadata {
        kind: Some(metadata::Kind::Resource(meta::Resource {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
            namespace: ns.into(),
            section: String::new(),
            port,
        })),
    }
}

fn default_meta(name: &str) -> meta::Metadata {
    meta::Metadata {
        kind: Some(metadata::Kind::Default(name.into())),
    }
}

#[tokio::test]
async fn destination_get_streams_the_catalog_endpoints() {
    let h = Harness::start(Some(CATALOG)).await;
    let mut updates = h.get("web.emojivoto.svc.cluster.local:8080").await;
    let first = next(&mut updates, "the endpoint set").await;
    let Some(Update::Add(set)) = first.update else {
        panic!("expected add, got {first:?}");
    };
    assert_eq!(
        set.metric_labels,
        HashMap::from([
            ("namespace".to_owned(), "emojivoto".to_owned()),
            ("service".to_owned(), "web".to_owned()),
        ])
    );
    let mut addrs = set.addrs;
    addrs.sort_by_key(|a| a.addr.as_ref().map(|a| a.port));
    assert_eq!(addrs.len(), 2);

    let meshed = dst::WeightedAddr {
        addr: Some(addr("127.0.0.1:41001")),
        weight: 10_000,
        metric_labels: HashMap::from([
            ("pod".to_owned(), "web-0".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
            ("serviceaccount".to_owned(), "web".to_owned()),
        ]),
        tls_identity: Some(dst::TlsIdentity {
            strategy: Some(dst::tls_identity::Strategy::DnsLikeIdentity(
                dst::tls_identity::DnsLikeIdentity {
                    name: WEB_ID.into(),
                },
            )),
            server_name: Some(dst::tls_identity::DnsLikeIdentity {
                name: WEB_ID.into(),
            }),
        }),
        protocol_hint: Some(dst::ProtocolHint {
            protocol: Some(dst::protocol_hint::Protocol::H2(dst::protocol_hint::H2 {})),
            opaque_transport: None,
        }),
        authority_override: None,
        http2: None,
        resource_ref: None,
    };
    assert_eq!(addrs[0], meshed);
    // Explicit `protocolHint: none` and weight.
    assert_eq!(addrs[1].addr, Some(addr("127.0.0.1:41002")));
    assert_eq!(addrs[1].weight, 5);
    assert_eq!(addrs[1].protocol_hint, None);
    assert_eq!(addrs[1].tls_identity, meshed.tls_identity);

    // The short name forms resolve to the same service.
    for path in ["web.emojivoto:8080", "web.emojivoto.svc:8080"] {
        let mut s = h.get(path).await;
        let m = next(&mut s, path).await;
        assert!(
            matches!(m.update, Some(Update::Add(ref s)) if s.addrs.len() == 2),
            "{path}"
        );
    }

    // Opaque ports hint opaque.
    let mut db = h.get("db.emojivoto.svc.cluster.local:5432").await;
    let Some(Update::Add(set)) = next(&mut db, "db").await.update else {
        panic!("expected add")
    };
    assert!(matches!(
        set.addrs[0]
            .protocol_hint
            .as_ref()
            .and_then(|h| h.protocol.as_ref()),
        Some(dst::protocol_hint::Protocol::Opaque(_))
    ));

    // A service with no endpoints exists; an address lookup finds the endpoint.
    let mut empty = h.get("voting.emojivoto.svc.cluster.local:8080").await;
    let m = next(&mut empty, "voting").await;
    assert_eq!(
        m.update,
        Some(Update::NoEndpoints(dst::NoEndpoints { exists: true }))
    );
    let mut by_ip = h.get("127.0.0.1:41001").await;
    let Some(Update::Add(set)) = next(&mut by_ip, "by ip").await.update else {
        panic!("expected add")
    };
    assert_eq!(set.addrs, vec![meshed]);
}

#[tokio::test]
async fn destination_get_profile_streams_routes_budget_and_splits() {
    let h = Harness::start(Some(CATALOG)).await;
    let mut profiles = h.get_profile("web.emojivoto.svc.cluster.local:8080").await;
    let p = next(&mut profiles, "web profile").await;
    assert_eq!(p.fully_qualified_name, "web.emojivoto.svc.cluster.local");
    assert!(!p.opaque_protocol);
    assert_eq!(
        p.retry_budget,
        Some(dst::RetryBudget {
            retry_ratio: 0.3,
            min_retries_per_second: 5,
            ttl: Some(pd(Duration::from_secs(20))),
        })
    );
    assert!(p.dst_overrides.is_empty());
    assert_eq!(p.endpoint, None);
    assert_eq!(
        p.parent_ref,
        Some(resource("core", "Service", "web", "emojivoto", 8080))
    );
    assert!(p.profile_ref.is_some());
    assert_eq!(p.routes.len(), 2);

    use dst::request_match::Match;
    let list = &p.routes[0];
    assert_eq!(
        list.condition,
        Some(dst::RequestMatch {
            r#match: Some(Match::All(dst::request_match::Seq {
                matches: vec![
                    dst::RequestMatch {
                        r#match: Some(Match::Method(HttpMethod::from(http::Method::GET))),
                    },
                    dst::RequestMatch {
                        r#match: Some(Match::Path(dst::PathMatch {
                            regex: "/api/list".into()
                        })),
                    },
                ],
            })),
        })
    );
    assert!(list.is_retryable);
    assert_eq!(list.timeout, Some(pd(Duration::from_millis(500))));
    assert_eq!(list.metrics_labels["route"], "list");
    assert!(list.response_classes.is_empty());

    let vote = &p.routes[1];
    assert_eq!(
        vote.condition,
        Some(dst::RequestMatch {
            r#match: Some(Match::Path(dst::PathMatch {
                regex: "/api/vote.*".into()
            })),
        })
    );
    assert!(!vote.is_retryable);
    assert_eq!(vote.timeout, Some(pd(Duration::from_secs(1))));
    assert_eq!(
        vote.response_classes,
        vec![dst::ResponseClass {
            condition: Some(dst::ResponseMatch {
                r#match: Some(dst::response_match::Match::Status(dst::HttpStatusRange {
                    min: 500,
                    max: 503
                })),
            }),
            is_failure: true,
        }]
    );

    // A split becomes dst_overrides; a backend port overrides the addressed one.
    let mut emoji = h.get_profile("emoji.emojivoto:8080").await;
    let p = next(&mut emoji, "emoji profile").await;
    assert_eq!(
        p.dst_overrides,
        vec![
            dst::WeightedDst {
                authority: "emoji-v1.emojivoto.svc.cluster.local:8080".into(),
                weight: 100,
                backend_ref: Some(resource("core", "Service", "emoji-v1", "emojivoto", 8080)),
            },
            dst::WeightedDst {
                authority: "emoji-v2.emojivoto.svc.cluster.local:9090".into(),
                weight: 0,
                backend_ref: Some(resource("core", "Service", "emoji-v2", "emojivoto", 9090)),
            },
        ]
    );

    let mut db = h.get_profile("db.emojivoto.svc.cluster.local:5432").await;
    assert!(next(&mut db, "db profile").await.opaque_protocol);

    // An endpoint address gets a profile naming the endpoint.
    let mut by_ip = h.get_profile("127.0.0.1:45432").await;
    let p = next(&mut by_ip, "endpoint profile").await;
    assert!(p.opaque_protocol);
    assert_eq!(
        p.endpoint.and_then(|e| e.addr),
        Some(addr("127.0.0.1:45432"))
    );
}

#[tokio::test]
async fn identity_certify_signs_for_the_token_s_identity() {
    let h = Harness::start(Some(CATALOG)).await;
    let creds = h.creds("web");
    let token =
        h.cp.issue_token(creds.identity(), Duration::from_secs(60))
            .expect("token");
    let issued = certify(&h.channel(&creds), &creds, token.as_bytes())
        .await
        .expect("certify");
    assert_eq!(
        sans(&issued.leaf),
        [
            format!("dns:{WEB_ID}"),
            "uri:spiffe://cluster.local/ns/emojivoto/sa/web".to_owned()
        ]
    );
    assert_eq!(issued.intermediates.len(), 1, "the issuer");
    let lifetime = issued
        .valid_until
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(lifetime > Duration::from_secs(23 * 3600), "{lifetime:?}");
    // The chain verifies against the trust anchors, for this key and identity.
    creds.set_certificate(issued).expect("the leaf installs");
}

#[tokio::test]
async fn inbound_get_port_and_watch_port_serve_the_port_policy() {
    let h = Harness::start(Some(CATALOG)).await;
    let mut client = InboundServerPoliciesClient::new(h.anonymous());
    let spec = PortSpec {
        workload: r#"{"ns":"emojivoto","pod":"web"}"#.into(),
        port: 8080,
    };
    let server = within("GetPort", client.get_port(spec.clone()))
        .await
        .expect("GetPort")
        .into_inner();

    use inbound::proxy_protocol::Kind;
    let Some(Kind::Http1(http1)) = server.protocol.and_then(|p| p.kind) else {
        panic!("expected http1")
    };
    assert_eq!(http1.routes.len(), 1);
    let route = &http1.routes[0];
    assert_eq!(route.metadata, Some(default_meta("default")));
    assert_eq!(
        route.authorizations, server.authorizations,
        "the default route carries the server's, as Linkerd's policy controller sends them"
    );
    assert_eq!(
        route.rules[0].matches[0].path,
        Some(http_route::PathMatch {
            kind: Some(path_match::Kind::Prefix("/".into()))
        })
    );
    assert_eq!(server.labels["kind"], "server");
    assert_eq!(server.labels["name"], "web-8080");

    assert_eq!(server.authorizations.len(), 1);
    let authz = &server.authorizations[0];
    assert_eq!(
        authz.networks,
        vec![inbound::Network {
            net: Some(linkerd2_proxy_api::net::IpNetwork::from(
                "127.0.0.0/8".parse::<ipnet::IpNet>().unwrap()
            )),
            except: vec![],
        }]
    );
    use inbound::authn::{Permit, permit_mesh_tls::Clients};
    let Some(Permit::MeshTls(tls)) = authz.authentication.as_ref().and_then(|a| a.permit.clone())
    else {
        panic!("expected mesh TLS")
    };
    let Some(Clients::Identities(ids)) = tls.clients else {
        panic!("expected identities")
    };
    assert_eq!(
        ids.identities,
        vec![inbound::Identity {
            name: "vote-bot.emojivoto.serviceaccount.identity.mesh.cluster.local".into()
        }]
    );
    assert_eq!(
        ids.suffixes,
        vec![inbound::IdentitySuffix {
            parts: [
                "ops",
                "serviceaccount",
                "identity",
                "mesh",
                "cluster",
                "local"
            ]
            .map(String::from)
            .to_vec()
        }]
    );
    assert_eq!(
        authz.metadata,
        Some(resource(
            "mesh",
            "authorization",
            "web-8080",
            "emojivoto",
            0
        ))
    );

    // WatchPort starts with the same answer.
    let mut watch = within("WatchPort", client.watch_port(spec))
        .await
        .expect("WatchPort")
        .into_inner();
    let first = next(&mut watch, "first server").await;
    assert_eq!(
        first,
        within(
            "GetPort",
            client.get_port(PortSpec {
                workload: "emojivoto:web".into(),
                port: 8080
            })
        )
        .await
        .expect("GetPort")
        .into_inner()
    );

    // gRPC port with a named default policy.
    let voting = within(
        "GetPort voting",
        client.get_port(PortSpec {
            workload: "emojivoto:voting".into(),
            port: 8080,
        }),
    )
    .await
    .expect("GetPort")
    .into_inner();
    assert!(matches!(
        voting.protocol.and_then(|p| p.kind),
        Some(Kind::Grpc(ref g)) if g.routes.len() == 1
    ));
    assert_eq!(voting.authorizations.len(), 1);
    assert_eq!(
        voting.authorizations[0].metadata,
        Some(default_meta("all-authenticated"))
    );
    assert_eq!(
        voting.authorizations[0].networks.len(),
        2,
        "0.0.0.0/0 and ::/0"
    );

    // A port no service declares: the catalog's default policy, with detection.
    let unknown = within(
        "GetPort unknown",
        client.get_port(PortSpec {
            workload: "emojivoto:web".into(),
            port: 9999,
        }),
    )
    .await
    .expect("GetPort")
    .into_inner();
    let Some(Kind::Detect(detect)) = unknown.protocol.and_then(|p| p.kind) else {
        panic!("expected detect")
    };
    assert_eq!(detect.timeout, Some(pd(Duration::from_secs(10))));
    assert_eq!(unknown.labels["name"], "cluster-authenticated");
    assert_eq!(
        unknown.authorizations[0].metadata,
        Some(default_meta("cluster-authenticated"))
    );

    // A malformed workload is refused with a message saying what is expected.
    let err = within(
        "GetPort bad",
        client.get_port(PortSpec {
            workload: "web".into(),
            port: 8080,
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("<namespace>:<name>"), "{err}");
}

#[tokio::test]
async fn outbound_get_and_watch_serve_routes_backends_and_accrual() {
    let h = Harness::start(Some(CATALOG)).await;
    let mut client = OutboundPoliciesClient::new(h.anonymous());
    let spec = |authority: &str| TrafficSpec {
        source_workload: "emojivoto:vote-bot".into(),
        target: Some(outbound::traffic_spec::Target::Authority(authority.into())),
    };
    let policy = within(
        "Get",
        client.get(spec("web.emojivoto.svc.cluster.local:8080")),
    )
    .await
    .expect("Get")
    .into_inner();
    assert_eq!(
        policy.metadata,
        Some(resource("core", "Service", "web", "emojivoto", 8080))
    );
    use outbound::proxy_protocol::Kind;
    let Some(Kind::Http1(http1)) = policy.protocol.and_then(|p| p.kind) else {
        panic!("expected http1")
    };
    assert_eq!(
        http1.failure_accrual,
        Some(outbound::FailureAccrual {
            ejection: None,
            kind: Some(outbound::failure_accrual::Kind::ConsecutiveFailures(
                outbound::failure_accrual::ConsecutiveFailures {
                    max_failures: 5,
                    backoff: Some(outbound::ExponentialBackoff {
                        min_backoff: Some(pd(Duration::from_secs(2))),
                        max_backoff: Some(pd(Duration::from_secs(30))),
                        jitter_ratio: 0.25,
                        respect_retry_after_hint: false,
                    }),
                }
            )),
        })
    );
    assert_eq!(http1.routes.len(), 3, "two profile routes and the default");
    let list = &http1.routes[0];
    assert_eq!(
        list.metadata,
        Some(resource("mesh", "Route", "list", "emojivoto", 0))
    );
    let rule = &list.rules[0];
    assert_eq!(
        rule.matches,
        vec![http_route::HttpRouteMatch {
            path: Some(http_route::PathMatch {
                kind: Some(path_match::Kind::Regex("^(?:/api/list)$".into()))
            }),
            method: Some(HttpMethod::from(http::Method::GET)),
            ..Default::default()
        }]
    );
    assert_eq!(
        rule.timeouts,
        Some(http_route::Timeouts {
            request: Some(pd(Duration::from_millis(500))),
            response: None,
            idle: None,
        })
    );
    let retry = rule.retry.as_ref().expect("retry");
    assert_eq!(retry.max_retries, 2);
    assert_eq!(retry.max_request_bytes, 64 * 1024);
    assert_eq!(
        retry.conditions.as_ref().unwrap().status_ranges,
        vec![outbound::http_route::retry::conditions::StatusRange {
            start: 500,
            end: 599
        }]
    );
    // The backend: a P2C balancer over Destination.Get of the service.
    use outbound::http_route::distribution::Kind as Dist;
    let Some(Dist::RandomAvailable(ra)) = rule.backends.as_ref().and_then(|b| b.kind.clone())
    else {
        panic!("expected random_available")
    };
    assert_eq!(ra.backends.len(), 1);
    assert_eq!(ra.backends[0].weight, 1);
    let backend = ra.backends[0]
        .backend
        .as_ref()
        .and_then(|b| b.backend.clone())
        .expect("backend");
    assert_eq!(
        backend.metadata,
        Some(resource("core", "Service", "web", "emojivoto", 8080))
    );
    assert_eq!(
        backend.queue,
        Some(outbound::Queue {
            capacity: 100,
            failfast_timeout: Some(pd(Duration::from_secs(3)))
        })
    );
    let Some(outbound::backend::Kind::Balancer(p2c)) = backend.kind else {
        panic!("expected a balancer")
    };
    assert_eq!(
        p2c.discovery,
        Some(outbound::backend::EndpointDiscovery {
            kind: Some(outbound::backend::endpoint_discovery::Kind::Dst(
                outbound::backend::endpoint_discovery::DestinationGet {
                    path: "web.emojivoto.svc.cluster.local:8080".into()
                }
            ))
        })
    );
    // Not retryable; failure classes do not matter then.
    assert!(http1.routes[1].rules[0].retry.is_none());
    let default = &http1.routes[2];
    assert_eq!(default.metadata, Some(default_meta("default")));
    assert!(default.rules[0].timeouts.is_none());

    // Watch: a split, by weight, on an HTTP/2 port.
    let mut watch = within("Watch", client.watch(spec("emoji.emojivoto:8080")))
        .await
        .expect("Watch")
        .into_inner();
    let p = next(&mut watch, "emoji policy").await;
    let Some(Kind::Http2(http2)) = p.protocol.and_then(|p| p.kind) else {
        panic!("expected http2")
    };
    let weights = split_weights(&http2.routes[0]);
    assert_eq!(
        weights,
        [
            ("emoji-v1.emojivoto.svc.cluster.local:8080".to_owned(), 100),
            ("emoji-v2.emojivoto.svc.cluster.local:9090".to_owned(), 0)
        ]
    );

    // gRPC: literal profile paths become RPC matches, retries on UNAVAILABLE and INTERNAL.
    let voting = within("Get voting", client.get(spec("voting.emojivoto:8080")))
        .await
        .expect("Get")
        .into_inner();
    let Some(Kind::Grpc(grpc)) = voting.protocol.and_then(|p| p.kind) else {
        panic!("expected grpc")
    };
    assert_eq!(grpc.routes.len(), 2);
    let rpc = grpc.routes[0].rules[0].matches[0].rpc.clone().expect("rpc");
    assert_eq!(
        (rpc.service.as_str(), rpc.method.as_str()),
        ("emojivoto.v1.VotingService", "VoteDoughnut")
    );
    let conditions = grpc.routes[0].rules[0]
        .retry
        .as_ref()
        .and_then(|r| r.conditions)
        .expect("conditions");
    assert!(conditions.unavailable && conditions.internal && !conditions.cancelled);

    // Opaque.
    let db = within("Get db", client.get(spec("db.emojivoto:5432")))
        .await
        .expect("Get")
        .into_inner();
    assert!(matches!(
        db.protocol.and_then(|p| p.kind),
        Some(Kind::Opaque(ref o)) if o.routes.len() == 1
    ));

    // Unknown services and addresses: NOT_FOUND (the proxy forwards).
    let err = within("Get unknown", client.get(spec("nope.emojivoto:80")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("nope.emojivoto"), "{err}");
    let err = within(
        "Watch addr",
        client.watch(TrafficSpec {
            source_workload: String::new(),
            target: Some(outbound::traffic_spec::Target::Addr(addr("127.0.0.1:1"))),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

/// The (authority, weight) of each backend of a route's first rule.
pub fn split_weights(route: &outbound::HttpRoute) -> Vec<(String, u32)> {
    use outbound::http_route::distribution::Kind as Dist;
    let Some(Dist::RandomAvailable(ra)) = route.rules[0]
        .backends
        .as_ref()
        .and_then(|b| b.kind.clone())
    else {
        panic!("expected random_available")
    };
    ra.backends
        .iter()
        .map(|b| {
            let backend = b
                .backend
                .as_ref()
                .and_then(|b| b.backend.clone())
                .expect("backend");
            let Some(outbound::backend::Kind::Balancer(p2c)) = backend.kind else {
                panic!("expected a balancer")
            };
            let Some(outbound::backend::endpoint_discovery::Kind::Dst(d)) =
                p2c.discovery.and_then(|d| d.kind)
            else {
                panic!("expected dst discovery")
            };
            (d.path, b.weight)
        })
        .collect()
}

#[tokio::test]
async fn inbound_routes_network_exceptions_and_default_policies_per_workload() {
    let yaml = r#"
defaultPolicy: all-unauthenticated
namespaces:
  - {name: locked, defaultPolicy: deny}
workloads:
  - {name: open, namespace: locked, defaultPolicy: all-authenticated}
services:
  - name: api
    namespace: shop
    ports:
      - port: 9000
        protocol: http1
        authorization:
          unauthenticated: true
          networks: [{cidr: 10.0.0.0/8, except: [10.9.0.0/16]}]
        routes:
          - name: admin
            condition: {method: POST, pathPrefix: /admin}
            authorization: {serviceAccounts: [ops]}
  - name: votes
    namespace: shop
    ports:
      - port: 9001
        protocol: grpc
        routes:
          - name: doughnut
            condition: {grpcService: emojivoto.v1.VotingService, grpcMethod: VoteDoughnut}
            authorization: {policy: deny}
"#;
    let h = Harness::start(Some(yaml)).await;
    let mut client = InboundServerPoliciesClient::new(h.anonymous());
    let get = |workload: &str, port: u32| PortSpec {
        workload: workload.into(),
        port,
    };
    use inbound::proxy_protocol::Kind;

    // HTTP: the route with its own authorization first, the default route with the port's.
    let server = within("GetPort", client.get_port(get("shop:api", 9000)))
        .await
        .expect("GetPort")
        .into_inner();
    let Some(Kind::Http1(http1)) = server.protocol.and_then(|p| p.kind) else {
        panic!("expected http1")
    };
    assert_eq!(http1.routes.len(), 2);
    let admin = &http1.routes[0];
    let m = &admin.rules[0].matches[0];
    assert_eq!(
        m.path,
        Some(http_route::PathMatch {
            kind: Some(path_match::Kind::Prefix("/admin".into()))
        })
    );
    assert!(m.method.is_some(), "{m:?}");
    assert_eq!(admin.authorizations.len(), 1);
    assert_eq!(admin.authorizations[0].labels["name"], "api-9000-admin");
    assert_eq!(http1.routes[1].authorizations, server.authorizations);
    let net = &server.authorizations[0].networks[0];
    assert_eq!(
        net.except,
        vec![linkerd2_proxy_api::net::IpNetwork::from(
            "10.9.0.0/16".parse::<ipnet::IpNet>().unwrap()
        )]
    );

    // gRPC: the route matches a service and a method, and denies everyone.
    let server = within("GetPort", client.get_port(get("shop:votes", 9001)))
        .await
        .expect("GetPort")
        .into_inner();
    let Some(Kind::Grpc(grpc)) = server.protocol.and_then(|p| p.kind) else {
        panic!("expected grpc")
    };
    let rpc = grpc.routes[0].rules[0].matches[0].rpc.clone().expect("rpc");
    assert_eq!(
        (rpc.service.as_str(), rpc.method.as_str()),
        ("emojivoto.v1.VotingService", "VoteDoughnut")
    );
    assert!(
        grpc.routes[0].authorizations.is_empty(),
        "deny admits nobody"
    );
    assert!(
        !grpc.routes[1].authorizations.is_empty(),
        "the port's default"
    );

    // Default policies: the workload's, else the namespace's, else the catalog's.
    let default_of = |server: inbound::Server| server.labels["name"].clone();
    let open = within("GetPort", client.get_port(get("locked:open", 1)))
        .await
        .expect("GetPort")
        .into_inner();
    assert_eq!(default_of(open), "all-authenticated");
    let other = within("GetPort", client.get_port(get("locked:other", 1)))
        .await
        .expect("GetPort")
        .into_inner();
    assert_eq!(default_of(other.clone()), "deny");
    assert!(other.authorizations.is_empty());
    let elsewhere = within("GetPort", client.get_port(get("shop:x", 1)))
        .await
        .expect("GetPort")
        .into_inner();
    assert_eq!(default_of(elsewhere), "all-unauthenticated");
}
