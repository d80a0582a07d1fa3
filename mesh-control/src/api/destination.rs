//! `io.linkerd.proxy.destination.Destination`: endpoints (`Get`) and profiles (`GetProfile`).
//!
//! `Get` streams the endpoints of `svc.ns.svc.cluster.local:port` (forms: [`crate::name`]) as
//! differences: the first message is every endpoint (`add`), or `no_endpoints{exists}` when there
//! are none (`exists: false` means the name is unknown, so the proxy may fall back to DNS or
//! forward); later messages `add` new or changed endpoints and `remove` gone ones. A name that
//! is unknown now keeps being watched: if the service appears, its endpoints are added.
//!
//! Each endpoint carries its TLS identity (`dns_like_identity` + `server_name`, what the proxy
//! expects the peer to prove and sends as SNI), a protocol hint (`h2` for meshed HTTP endpoints,
//! `opaque` on opaque ports), its weight and metric labels (`pod`, `serviceaccount`, user labels;
//! the set carries `namespace` and `service`).
//!
//! `GetProfile` streams the service's profile: routes (method + path regex conditions, response
//! classes, `is_retryable`, timeout, a `route` metrics label), the retry budget, `dst_overrides`
//! for a traffic split and `opaque_protocol` for opaque ports; a new message whenever any of that
//! changes. An unknown name gets an empty profile at once (and a full one if it appears). An
//! `ip:port` lookup that matches a known endpoint gets a profile whose `endpoint` is set.
//!
//! The `context_token` is accepted and ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use linkerd2_proxy_api::destination::{
    self as api, destination_server::Destination, destination_server::DestinationServer,
};
use linkerd2_proxy_api::http_types::HttpMethod;
use linkerd2_proxy_api::net::TcpAddress;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert::{duration, mesh_meta, service_labels, service_meta, weighted_addr};
use super::{BoxStream, watch_stream};
use crate::catalog::{Protocol, Route, Snapshot};
use crate::name::DstName;

/// The destination service.
#[derive(Clone, Debug)]
pub struct DestinationService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cluster_domain: Arc<str>,
    shutdown: CancellationToken,
}

impl DestinationService {
    /// Serves lookups from `snapshots` for names in `cluster_domain`; streams end when
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
    pub fn into_server(self) -> DestinationServer<Self> {
        DestinationServer::new(self)
    }

    fn parse(&self, path: &str) -> Result<DstName, Status> {
        DstName::parse(path, &self.cluster_domain)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

#[tonic::async_trait]
impl Destination for DestinationService {
    type GetStream = BoxStream<api::Update>;

    async fn get(
        &self,
        request: Request<api::GetDestination>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let name = self.parse(&request.get_ref().path)?;
        tracing::debug!(%name, "Get");
        let mut resolution = Resolution::new(name);
        Ok(Response::new(watch_stream(
            self.snapshots.clone(),
            self.shutdown.clone(),
            move |snapshot| resolution.step(snapshot).into_iter().map(Ok).collect(),
        )))
    }

    type GetProfileStream = BoxStream<api::DestinationProfile>;

    async fn get_profile(
        &self,
        request: Request<api::GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let name = self.parse(&request.get_ref().path)?;
        tracing::debug!(%name, "GetProfile");
        let domain = self.cluster_domain.clone();
        let mut last: Option<api::DestinationProfile> = None;
        Ok(Response::new(watch_stream(
            self.snapshots.clone(),
            self.shutdown.clone(),
            move |snapshot| {
                let profile = profile(&name, snapshot, &domain);
                if last.as_ref() == Some(&profile) {
                    return Vec::new();
                }
                last = Some(profile.clone());
                vec![Ok(profile)]
            },
        )))
    }
}

// === Get ===

/// What a `Get` stream has told its client so far.
struct Resolution {
    name: DstName,
    state: Told,
    sent: BTreeMap<SocketAddr, api::WeightedAddr>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Told {
    Nothing,
    DoesNotExist,
    Exists,
}

impl Resolution {
    fn new(name: DstName) -> Self {
        Self {
            name,
            state: Told::Nothing,
            sent: BTreeMap::new(),
        }
    }

    /// The endpoint set for the name now: `None` if the name is unknown.
    fn current(
        &self,
        snapshot: &Snapshot,
    ) -> Option<(
        BTreeMap<SocketAddr, api::WeightedAddr>,
        std::collections::HashMap<String, String>,
    )> {
        match &self.name {
            DstName::Service { service, port } => {
                let svc = snapshot.service(service)?;
                let protocol = svc.ports.get(port)?.protocol;
                let addrs = svc
                    .endpoints_for(*port)
                    .map(|e| (e.addr, weighted_addr(e, protocol)))
                    .collect();
                Some((addrs, service_labels(service)))
            }
            DstName::Addr(addr) => {
                let (svc, ep) = snapshot.endpoint_at(*addr)?;
                let protocol = endpoint_protocol(svc, ep);
                Some((
                    BTreeMap::from([(ep.addr, weighted_addr(ep, protocol))]),
                    service_labels(&svc.name),
                ))
            }
            DstName::External { .. } => None,
        }
    }

    fn step(&mut self, snapshot: &Snapshot) -> Vec<api::Update> {
        use api::update::Update as U;
        let mut out = Vec::new();
        let current = self.current(snapshot);
        let (addrs, labels) = match current {
            Some((addrs, labels)) => (addrs, Some(labels)),
            None => (BTreeMap::new(), None),
        };
        let removed: Vec<TcpAddress> = self
            .sent
            .keys()
            .filter(|a| !addrs.contains_key(a))
            .map(|a| TcpAddress::from(*a))
            .collect();
        if !removed.is_empty() {
            out.push(U::Remove(api::AddrSet { addrs: removed }));
        }
        let changed: Vec<api::WeightedAddr> = addrs
            .iter()
            .filter(|(a, w)| self.sent.get(a) != Some(w))
            .map(|(_, w)| w.clone())
            .collect();
        match labels {
            None => {
                if self.state != Told::DoesNotExist {
                    out.push(U::NoEndpoints(api::NoEndpoints { exists: false }));
                    self.state = Told::DoesNotExist;
                }
            }
            Some(labels) => {
                if !changed.is_empty() {
                    out.push(U::Add(api::WeightedAddrSet {
                        addrs: changed,
                        metric_labels: labels,
                    }));
                } else if addrs.is_empty() && self.state != Told::Exists {
                    out.push(U::NoEndpoints(api::NoEndpoints { exists: true }));
                }
                self.state = Told::Exists;
            }
        }
        self.sent = addrs;
        out.into_iter()
            .map(|u| api::Update { update: Some(u) })
            .collect()
    }
}

/// The protocol of the port an endpoint serves, when it serves exactly one.
fn endpoint_protocol(svc: &crate::catalog::Service, ep: &crate::catalog::Endpoint) -> Protocol {
    let ports: Vec<u16> = match &ep.ports {
        Some(p) => p.iter().copied().collect(),
        None => svc.ports.keys().copied().collect(),
    };
    match ports.as_slice() {
        [one] => svc.ports.get(one).map(|p| p.protocol).unwrap_or_default(),
        _ => Protocol::Detect,
    }
}

// === GetProfile ===

fn profile(name: &DstName, snapshot: &Snapshot, domain: &str) -> api::DestinationProfile {
    match name {
        DstName::Service { service, port } => {
            let Some(svc) = snapshot.service(service) else {
                return api::DestinationProfile::default();
            };
            let protocol = svc.ports.get(port).map(|p| p.protocol);
            api::DestinationProfile {
                fully_qualified_name: service.fqdn(domain),
                opaque_protocol: protocol == Some(Protocol::Opaque),
                routes: svc.profile.routes.iter().map(route).collect(),
                retry_budget: Some(api::RetryBudget {
                    retry_ratio: svc.profile.retry_budget.retry_ratio,
                    min_retries_per_second: svc.profile.retry_budget.min_retries_per_second,
                    ttl: Some(duration(svc.profile.retry_budget.ttl)),
                }),
                dst_overrides: svc
                    .split
                    .iter()
                    .map(|b| {
                        let port = b.port.unwrap_or(*port);
                        api::WeightedDst {
                            authority: b.service.authority(domain, port),
                            weight: b.weight,
                            backend_ref: Some(service_meta(&b.service, port)),
                        }
                    })
                    .collect(),
                endpoint: None,
                parent_ref: Some(service_meta(service, *port)),
                profile_ref: (!svc.profile.routes.is_empty()).then(|| {
                    mesh_meta("ServiceProfile", &service.fqdn(domain), &service.namespace)
                }),
            }
        }
        DstName::Addr(addr) => match snapshot.endpoint_at(*addr) {
            Some((svc, ep)) => {
                let protocol = endpoint_protocol(svc, ep);
                api::DestinationProfile {
                    opaque_protocol: protocol == Protocol::Opaque,
                    endpoint: Some(weighted_addr(ep, protocol)),
                    retry_budget: Some(api::RetryBudget {
                        retry_ratio: svc.profile.retry_budget.retry_ratio,
                        min_retries_per_second: svc.profile.retry_budget.min_retries_per_second,
                        ttl: Some(duration(svc.profile.retry_budget.ttl)),
                    }),
                    ..api::DestinationProfile::default()
                }
            }
            None => api::DestinationProfile::default(),
        },
        DstName::External { .. } => api::DestinationProfile::default(),
    }
}

fn route(r: &Route) -> api::Route {
    use api::request_match::Match;
    let mut conditions = Vec::new();
    if let Some(m) = &r.method {
        conditions.push(api::RequestMatch {
            r#match: Some(Match::Method(HttpMethod::from(m.clone()))),
        });
    }
    if let Some(re) = &r.path_regex {
        conditions.push(api::RequestMatch {
            r#match: Some(Match::Path(api::PathMatch { regex: re.clone() })),
        });
    }
    let condition = match conditions.len() {
        0 => api::RequestMatch {
            r#match: Some(Match::Path(api::PathMatch { regex: ".*".into() })),
        },
        1 => conditions.remove(0),
        _ => api::RequestMatch {
            r#match: Some(Match::All(api::request_match::Seq {
                matches: conditions,
            })),
        },
    };
    api::Route {
        condition: Some(condition),
        response_classes: r
            .response_classes
            .iter()
            .map(|c| api::ResponseClass {
                condition: Some(api::ResponseMatch {
                    r#match: Some(api::response_match::Match::Status(api::HttpStatusRange {
                        min: u32::from(*c.status.start()),
                        max: u32::from(*c.status.end()),
                    })),
                }),
                is_failure: c.is_failure,
            })
            .collect(),
        metrics_labels: [("route".to_owned(), r.name.clone())].into(),
        is_retryable: r.is_retryable,
        timeout: r.timeout.map(duration),
    }
}

#[cfg(test)]
mod tests;
