//! `io.linkerd.proxy.outbound.OutboundPolicies`: how a proxy routes to a service.
//!
//! The target is an authority (`svc.ns.svc.cluster.local:port`, forms: [`crate::name`]); a
//! service or port the catalog does not know is `NOT_FOUND` (the proxy then forwards, as
//! Linkerd's does), as is an `addr` target. The policy for a known port:
//!
//! - **protocol** from the port: `http1`, `http2`, `grpc`, `opaque`, or `detect` (10 s timeout,
//!   with the opaque, HTTP/1 and HTTP/2 variants all filled in);
//! - **routes**, from the service profile, one route per profile route in profile order, then a
//!   `default` route matching everything (HTTP: prefix `/`; gRPC: every method). A profile route
//!   matches its method and its path regex anchored to the whole path; on gRPC ports a route whose
//!   regex is a literal `/package.Service/Method` becomes an RPC match and other routes are left
//!   to the profile API. Each route carries: `timeouts.request` = the route timeout;
//!   `retry` when `isRetryable` (`maxRetries`, 64 KiB of body, statuses: the failure response
//!   classes or 5xx; gRPC: `INTERNAL` and `UNAVAILABLE`; backoff 25 ms to 250 ms);
//! - **backends**: `random_available` over the split's backends by weight, or the service itself
//!   (weight 1); each is a P2C balancer over `Destination.Get` of the backend's authority,
//!   peak-EWMA load (30 ms default RTT, 10 s decay), a queue of 100 with a 3 s failfast;
//! - **failure accrual**: the service's `failureAccrual` (consecutive failures), else none;
//! - **metadata**: the `core/Service` with its port.
//!
//! `Watch` streams a new policy whenever it changes, and ends with `NOT_FOUND` if the service or
//! port is removed. `source_workload` is accepted and not used: every client gets the same
//! policy.

use std::sync::Arc;
use std::time::Duration;

use linkerd2_proxy_api::outbound::{
    self as api, outbound_policies_server::OutboundPolicies,
    outbound_policies_server::OutboundPoliciesServer,
};
use linkerd2_proxy_api::{grpc_route, http_route, http_types::HttpMethod};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert::{default_meta, duration, mesh_meta, service_meta};
use super::inbound::DETECT_TIMEOUT;
use super::{BoxStream, watch_stream};
use crate::catalog::{Protocol, Route, Service, ServiceRef, Snapshot};
use crate::name::DstName;

/// Request bodies up to this size are buffered so they can be retried (Linkerd's limit).
pub const MAX_RETRY_BODY: u32 = 64 * 1024;

/// The outbound policy service.
#[derive(Clone, Debug)]
pub struct OutboundPolicyService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cluster_domain: Arc<str>,
    shutdown: CancellationToken,
}

impl OutboundPolicyService {
    /// Serves outbound policy from `snapshots` for names in `cluster_domain`; watches end when
    /// `shutdown` is cancelled.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        cluster_domain: &str,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            snapshots,
            cluster_domain: cluster_domain.into(),
            shutdown,
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> OutboundPoliciesServer<Self> {
        OutboundPoliciesServer::new(self)
    }

    fn target(&self, spec: &api::TrafficSpec) -> Result<(ServiceRef, u16), Status> {
        use api::traffic_spec::Target;
        match &spec.target {
            Some(Target::Authority(a)) => match DstName::parse(a, &self.cluster_domain) {
                Ok(DstName::Service { service, port }) => Ok((service, port)),
                Ok(other) => Err(Status::not_found(format!(
                    "{other} is not a service of the cluster domain {}",
                    self.cluster_domain
                ))),
                Err(e) => Err(Status::invalid_argument(e.to_string())),
            },
            Some(Target::Addr(_)) => Err(Status::not_found(
                "outbound policy is served for service authorities, not addresses",
            )),
            None => Err(Status::invalid_argument("the traffic spec has no target")),
        }
    }
}

#[tonic::async_trait]
impl OutboundPolicies for OutboundPolicyService {
    async fn get(
        &self,
        request: Request<api::TrafficSpec>,
    ) -> Result<Response<api::OutboundPolicy>, Status> {
        let (service, port) = self.target(request.get_ref())?;
        let snapshot = self.snapshots.borrow().clone();
        policy(&snapshot, &service, port, &self.cluster_domain).map(Response::new)
    }

    type WatchStream = BoxStream<api::OutboundPolicy>;

    async fn watch(
        &self,
        request: Request<api::TrafficSpec>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (service, port) = self.target(request.get_ref())?;
        // Refuse at once if unknown, rather than opening a stream that fails.
        policy(
            &self.snapshots.borrow(),
            &service,
            port,
            &self.cluster_domain,
        )?;
        let domain = self.cluster_domain.clone();
        let mut last: Option<api::OutboundPolicy> = None;
        Ok(Response::new(watch_stream(
            self.snapshots.clone(),
            self.shutdown.clone(),
            move |snapshot| match policy(snapshot, &service, port, &domain) {
                Ok(p) if last.as_ref() == Some(&p) => Vec::new(),
                Ok(p) => {
                    last = Some(p.clone());
                    vec![Ok(p)]
                }
                Err(e) => vec![Err(e)],
            },
        )))
    }
}

/// The outbound policy for `service:port`, or `NOT_FOUND`.
pub fn policy(
    snapshot: &Snapshot,
    service: &ServiceRef,
    port: u16,
    domain: &str,
) -> Result<api::OutboundPolicy, Status> {
    let svc = snapshot
        .service(service)
        .ok_or_else(|| Status::not_found(format!("no service {service} in the catalog")))?;
    let p = svc
        .ports
        .get(&port)
        .ok_or_else(|| Status::not_found(format!("service {service} has no port {port}")))?;
    let backends = backends(svc, port, domain);
    let accrual = failure_accrual(svc);
    use api::proxy_protocol::{self as pp, Kind};
    let kind = match p.protocol {
        Protocol::Detect => Kind::Detect(pp::Detect {
            timeout: Some(duration(DETECT_TIMEOUT)),
            opaque: Some(pp::Opaque {
                routes: vec![opaque_route(&backends)],
            }),
            http1: Some(pp::Http1 {
                routes: http_routes(svc, &backends),
                failure_accrual: accrual,
            }),
            http2: Some(pp::Http2 {
                routes: http_routes(svc, &backends),
                failure_accrual: accrual,
            }),
        }),
        Protocol::Http1 => Kind::Http1(pp::Http1 {
            routes: http_routes(svc, &backends),
            failure_accrual: accrual,
        }),
        Protocol::Http2 => Kind::Http2(pp::Http2 {
            routes: http_routes(svc, &backends),
            failure_accrual: accrual,
        }),
        Protocol::Grpc => Kind::Grpc(pp::Grpc {
            routes: grpc_routes(svc, &backends),
            failure_accrual: accrual,
        }),
        Protocol::Opaque => Kind::Opaque(pp::Opaque {
            routes: vec![opaque_route(&backends)],
        }),
    };
    Ok(api::OutboundPolicy {
        protocol: Some(api::ProxyProtocol { kind: Some(kind) }),
        metadata: Some(service_meta(service, port)),
    })
}

/// The weighted backends of a route: the split's, or the service itself.
fn backends(svc: &Service, port: u16, domain: &str) -> Vec<(api::Backend, u32)> {
    let backend = |service: &ServiceRef, port: u16| api::Backend {
        metadata: Some(service_meta(service, port)),
        queue: Some(api::Queue {
            capacity: 100,
            failfast_timeout: Some(duration(Duration::from_secs(3))),
        }),
        kind: Some(api::backend::Kind::Balancer(api::backend::BalanceP2c {
            discovery: Some(api::backend::EndpointDiscovery {
                kind: Some(api::backend::endpoint_discovery::Kind::Dst(
                    api::backend::endpoint_discovery::DestinationGet {
                        path: service.authority(domain, port),
                    },
                )),
            }),
            load: Some(api::backend::balance_p2c::Load::PeakEwma(
                api::backend::balance_p2c::PeakEwma {
                    default_rtt: Some(duration(Duration::from_millis(30))),
                    decay: Some(duration(Duration::from_secs(10))),
                },
            )),
        })),
    };
    if svc.split.is_empty() {
        return vec![(backend(&svc.name, port), 1)];
    }
    svc.split
        .iter()
        .map(|b| (backend(&b.service, b.port.unwrap_or(port)), b.weight))
        .collect()
}

fn failure_accrual(svc: &Service) -> Option<api::FailureAccrual> {
    svc.failure_accrual.map(|fa| api::FailureAccrual {
        ejection: None,
        kind: Some(api::failure_accrual::Kind::ConsecutiveFailures(
            api::failure_accrual::ConsecutiveFailures {
                max_failures: fa.consecutive_failures,
                backoff: Some(api::ExponentialBackoff {
                    min_backoff: Some(duration(fa.backoff.min)),
                    max_backoff: Some(duration(fa.backoff.max)),
                    jitter_ratio: fa.backoff.jitter_ratio,
                    respect_retry_after_hint: false,
                }),
            },
        )),
    })
}

fn retry_backoff() -> api::ExponentialBackoff {
    api::ExponentialBackoff {
        min_backoff: Some(duration(Duration::from_millis(25))),
        max_backoff: Some(duration(Duration::from_millis(250))),
        jitter_ratio: 0.5,
        respect_retry_after_hint: false,
    }
}

fn timeouts(route: Option<&Route>) -> Option<http_route::Timeouts> {
    route.and_then(|r| r.timeout).map(|t| http_route::Timeouts {
        request: Some(duration(t)),
        response: None,
        idle: None,
    })
}

// === HTTP ===

fn http_distribution(backends: &[(api::Backend, u32)]) -> api::http_route::Distribution {
    use api::http_route::{Distribution, RouteBackend, WeightedRouteBackend, distribution};
    Distribution {
        kind: Some(distribution::Kind::RandomAvailable(
            distribution::RandomAvailable {
                backends: backends
                    .iter()
                    .map(|(b, w)| WeightedRouteBackend {
                        backend: Some(RouteBackend {
                            backend: Some(b.clone()),
                            filters: Vec::new(),
                            ..Default::default()
                        }),
                        weight: *w,
                    })
                    .collect(),
            },
        )),
    }
}

fn http_routes(svc: &Service, backends: &[(api::Backend, u32)]) -> Vec<api::HttpRoute> {
    let rule = |route: Option<&Route>| {
        let matches = match route {
            Some(r) => vec![http_route::HttpRouteMatch {
                path: Some(http_route::PathMatch {
                    kind: Some(match &r.path_regex {
                        Some(re) => http_route::path_match::Kind::Regex(format!("^(?:{re})$")),
                        None => http_route::path_match::Kind::Prefix("/".into()),
                    }),
                }),
                method: r.method.clone().map(HttpMethod::from),
                ..Default::default()
            }],
            None => vec![http_route::HttpRouteMatch {
                path: Some(http_route::PathMatch {
                    kind: Some(http_route::path_match::Kind::Prefix("/".into())),
                }),
                ..Default::default()
            }],
        };
        api::http_route::Rule {
            matches,
            filters: Vec::new(),
            backends: Some(http_distribution(backends)),
            timeouts: timeouts(route),
            retry: route.filter(|r| r.is_retryable).map(|r| {
                let range = |s: &std::ops::RangeInclusive<u16>| {
                    api::http_route::retry::conditions::StatusRange {
                        start: u32::from(*s.start()),
                        end: u32::from(*s.end()),
                    }
                };
                let mut ranges: Vec<_> = if r.retry_statuses.is_empty() {
                    r.response_classes
                        .iter()
                        .filter(|c| c.is_failure)
                        .map(|c| range(&c.status))
                        .collect()
                } else {
                    r.retry_statuses.iter().map(range).collect()
                };
                if ranges.is_empty() {
                    ranges.push(api::http_route::retry::conditions::StatusRange {
                        start: 500,
                        end: 599,
                    });
                }
                api::http_route::Retry {
                    max_retries: r.max_retries,
                    max_request_bytes: MAX_RETRY_BODY,
                    conditions: Some(api::http_route::retry::Conditions {
                        status_ranges: ranges,
                    }),
                    timeout: r.retry_timeout.map(duration),
                    backoff: Some(retry_backoff()),
                }
            }),
            allow_l5d_request_headers: false,
            ..Default::default()
        }
    };
    svc.profile
        .routes
        .iter()
        .map(|r| api::HttpRoute {
            metadata: Some(mesh_meta("Route", &r.name, &svc.name.namespace)),
            hosts: Vec::new(),
            rules: vec![rule(Some(r))],
        })
        .chain(std::iter::once(api::HttpRoute {
            metadata: Some(default_meta("default")),
            hosts: Vec::new(),
            rules: vec![rule(None)],
        }))
        .collect()
}

// === gRPC ===

fn grpc_distribution(backends: &[(api::Backend, u32)]) -> api::grpc_route::Distribution {
    use api::grpc_route::{Distribution, RouteBackend, WeightedRouteBackend, distribution};
    Distribution {
        kind: Some(distribution::Kind::RandomAvailable(
            distribution::RandomAvailable {
                backends: backends
                    .iter()
                    .map(|(b, w)| WeightedRouteBackend {
                        backend: Some(RouteBackend {
                            backend: Some(b.clone()),
                            filters: Vec::new(),
                            ..Default::default()
                        }),
                        weight: *w,
                    })
                    .collect(),
            },
        )),
    }
}

/// `/pkg.Service/Method` from a literal path regex (`\.` read as `.`).
fn grpc_rpc(regex: &str) -> Option<grpc_route::GrpcRpcMatch> {
    let path = regex.replace("\\.", ".");
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let ok = |s: &str, dots: bool| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.'))
    };
    (ok(service, true) && ok(method, false)).then(|| grpc_route::GrpcRpcMatch {
        service: service.to_owned(),
        method: method.to_owned(),
    })
}

fn grpc_routes(svc: &Service, backends: &[(api::Backend, u32)]) -> Vec<api::GrpcRoute> {
    let rule =
        |route: Option<&Route>, rpc: Option<grpc_route::GrpcRpcMatch>| api::grpc_route::Rule {
            matches: vec![grpc_route::GrpcRouteMatch {
                rpc,
                headers: Vec::new(),
            }],
            filters: Vec::new(),
            backends: Some(grpc_distribution(backends)),
            timeouts: timeouts(route),
            retry: route
                .filter(|r| r.is_retryable)
                .map(|r| api::grpc_route::Retry {
                    max_retries: r.max_retries,
                    max_request_bytes: MAX_RETRY_BODY,
                    conditions: Some(if r.retry_grpc.is_empty() {
                        api::grpc_route::retry::Conditions {
                            internal: true,
                            unavailable: true,
                            ..Default::default()
                        }
                    } else {
                        let on = |code| r.retry_grpc.contains(&code);
                        api::grpc_route::retry::Conditions {
                            cancelled: on(1),
                            deadine_exceeded: on(4),
                            resource_exhausted: on(8),
                            internal: on(13),
                            unavailable: on(14),
                        }
                    }),
                    timeout: r.retry_timeout.map(duration),
                    backoff: Some(retry_backoff()),
                }),
            allow_l5d_request_headers: false,
            ..Default::default()
        };
    svc.profile
        .routes
        .iter()
        .filter_map(|r| {
            let rpc = r.path_regex.as_deref().and_then(grpc_rpc)?;
            Some(api::GrpcRoute {
                metadata: Some(mesh_meta("Route", &r.name, &svc.name.namespace)),
                hosts: Vec::new(),
                rules: vec![rule(Some(r), Some(rpc))],
            })
        })
        .chain(std::iter::once(api::GrpcRoute {
            metadata: Some(default_meta("default")),
            hosts: Vec::new(),
            rules: vec![rule(None, None)],
        }))
        .collect()
}

// === Opaque ===

fn opaque_route(backends: &[(api::Backend, u32)]) -> api::OpaqueRoute {
    use api::opaque_route::{Distribution, RouteBackend, WeightedRouteBackend, distribution};
    api::OpaqueRoute {
        metadata: Some(default_meta("opaq")),
        rules: vec![api::opaque_route::Rule {
            backends: Some(Distribution {
                kind: Some(distribution::Kind::RandomAvailable(
                    distribution::RandomAvailable {
                        backends: backends
                            .iter()
                            .map(|(b, w)| WeightedRouteBackend {
                                backend: Some(RouteBackend {
                                    backend: Some(b.clone()),
                                    filters: Vec::new(),
                                }),
                                weight: *w,
                            })
                            .collect(),
                    },
                )),
            }),
            filters: Vec::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_literal_paths_become_rpc_matches() {
        let m = grpc_rpc("/emojivoto.v1.VotingService/VoteDoughnut").unwrap();
        assert_eq!(m.service, "emojivoto.v1.VotingService");
        assert_eq!(m.method, "VoteDoughnut");
        assert!(grpc_rpc(r"/emojivoto\.v1\.VotingService/Vote").is_some());
        assert!(grpc_rpc("/emojivoto.v1.VotingService/Vote.*").is_none());
        assert!(grpc_rpc("/api/list").is_some_and(|m| m.service == "api"));
        assert!(grpc_rpc(".*").is_none());
    }
}
