//! `io.linkerd.proxy.inbound.InboundServerPolicies`: how a proxy serves its workload's ports.
//!
//! `PortSpec.workload` names the proxy's workload, as Linkerd's JSON `{"ns":"emojivoto",
//! "pod":"web-0"}` or the local form `emojivoto:web`. The port is the workload's application port
//! (a service port's `targetPort`). The policy comes from the first service, in name order, of
//! the workload's namespace that selects the workload (it lists it in `workloads`, is named after
//! it, or has an endpoint registered by it) and has that target port:
//!
//! - **protocol**: the port's (`detect` with a 10 s timeout when unset), with the port's routes
//!   in catalog order, then a default route matching every request (HTTP: path prefix `/`; gRPC:
//!   every method). A route matches a method and a path (exact, prefix or regex), or on a gRPC
//!   port a service and a method;
//! - **authorizations**: the port's `authorization`, or the workload's default policy (its own,
//!   else its namespace's, else the catalog's: Linkerd's pod, namespace and cluster annotations).
//!   Default policies translate as Linkerd's: `all-unauthenticated` admits everyone from
//!   `0.0.0.0/0` and `::/0`; `all-authenticated` admits any mesh-TLS identity (an empty suffix)
//!   from anywhere; the `cluster-*` variants do the same from the cluster networks only; `deny`
//!   admits nobody. Every route carries the authorizations that apply to it (its own, or the
//!   port's), as Linkerd's policy controller sends them, so a proxy checks a request against its
//!   route's;
//! - **labels**: `group`/`kind`/`name` (`mesh`/`server`/`<service>-<port>`, or `""`/`default`/
//!   `<policy>` when no service has the port).
//!
//! An unknown workload or port gets the default policy with protocol detection, as Linkerd does
//! for pods without a `Server`. `WatchPort` streams a new `Server` whenever the answer changes.

use std::sync::Arc;

use ipnet::IpNet;
use linkerd2_proxy_api::http_route as route_api;
use linkerd2_proxy_api::inbound::{
    self as api, inbound_server_policies_server::InboundServerPolicies,
    inbound_server_policies_server::InboundServerPoliciesServer,
};
use linkerd2_proxy_api::{grpc_route, http_types::HttpMethod, meta};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert::{default_meta, duration, mesh_meta};
use super::{BoxStream, watch_stream};
use crate::catalog::{
    Authorization, Clients, DefaultPolicy, InboundRoute, Network, PathMatch, Protocol, Snapshot,
};

/// How long an inbound proxy waits to detect the protocol (Linkerd's default).
pub const DETECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The inbound policy service.
#[derive(Clone, Debug)]
pub struct InboundPolicyService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: CancellationToken,
}

impl InboundPolicyService {
    /// Serves inbound policy from `snapshots`; watches end when `shutdown` is cancelled.
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, shutdown: CancellationToken) -> Self {
        Self {
            snapshots,
            shutdown,
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> InboundServerPoliciesServer<Self> {
        InboundServerPoliciesServer::new(self)
    }
}

/// A workload: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The namespace.
    pub namespace: String,
    /// The workload (pod) name.
    pub name: String,
}

impl Workload {
    /// Parses `{"ns":"<ns>","pod":"<name>"}` or `<ns>:<name>`.
    pub fn parse(s: &str) -> Result<Self, Status> {
        #[derive(serde::Deserialize)]
        struct Json {
            ns: String,
            pod: String,
        }
        let s = s.trim();
        let (namespace, name) = if s.starts_with('{') {
            let j: Json = serde_json::from_str(s).map_err(|e| {
                Status::invalid_argument(format!(
                    "invalid workload {s:?}: {e}; expected {{\"ns\":\"<namespace>\",\"pod\":\"<name>\"}} or <namespace>:<name>"
                ))
            })?;
            (j.ns, j.pod)
        } else {
            let (ns, name) = s.split_once(':').ok_or_else(|| {
                Status::invalid_argument(format!(
                    "invalid workload {s:?}; expected {{\"ns\":\"<namespace>\",\"pod\":\"<name>\"}} or <namespace>:<name>"
                ))
            })?;
            (ns.to_owned(), name.to_owned())
        };
        if namespace.is_empty() || name.is_empty() {
            return Err(Status::invalid_argument(format!(
                "invalid workload {s:?}: the namespace and the name must not be empty"
            )));
        }
        Ok(Self { namespace, name })
    }
}

fn check(spec: &api::PortSpec) -> Result<(Workload, u16), Status> {
    let workload = Workload::parse(&spec.workload)?;
    let port = u16::try_from(spec.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument(format!("invalid port {}", spec.port)))?;
    Ok((workload, port))
}

#[tonic::async_trait]
impl InboundServerPolicies for InboundPolicyService {
    async fn get_port(
        &self,
        request: Request<api::PortSpec>,
    ) -> Result<Response<api::Server>, Status> {
        let (workload, port) = check(request.get_ref())?;
        let snapshot = self.snapshots.borrow().clone();
        Ok(Response::new(server(&snapshot, &workload, port)))
    }

    type WatchPortStream = BoxStream<api::Server>;

    async fn watch_port(
        &self,
        request: Request<api::PortSpec>,
    ) -> Result<Response<Self::WatchPortStream>, Status> {
        let (workload, port) = check(request.get_ref())?;
        let mut last: Option<api::Server> = None;
        Ok(Response::new(watch_stream(
            self.snapshots.clone(),
            self.shutdown.clone(),
            move |snapshot| {
                let s = server(snapshot, &workload, port);
                if last.as_ref() == Some(&s) {
                    return Vec::new();
                }
                last = Some(s.clone());
                vec![Ok(s)]
            },
        )))
    }
}

/// The inbound policy for `workload`'s `port`.
pub fn server(snapshot: &Snapshot, workload: &Workload, port: u16) -> api::Server {
    let default = snapshot.default_policy_of(&workload.namespace, &workload.name);
    let found = snapshot
        .services
        .values()
        .filter(|s| s.name.namespace == workload.namespace && s.selects(&workload.name))
        .find_map(|s| {
            s.ports
                .values()
                .find(|p| p.target_port == port)
                .map(|p| (s, p))
        });
    let Some((svc, p)) = found else {
        let authzs = policy_authzs(default, &snapshot.cluster_networks);
        return api::Server {
            protocol: Some(proxy_protocol(Protocol::Detect, Vec::new(), &authzs)),
            server_ips: Vec::new(),
            authorizations: authzs,
            labels: labels("", "default", default.as_str()),
        };
    };
    let name = format!("{}-{}", svc.name.name, p.port);
    let ns = &svc.name.namespace;
    let authorizations = |authz: Option<&Authorization>, name: &str| match authz {
        None => policy_authzs(default, &snapshot.cluster_networks),
        Some(Authorization::Policy(policy)) => policy_authzs(*policy, &snapshot.cluster_networks),
        Some(Authorization::Clients(clients)) => vec![clients_authz(
            clients,
            mesh_meta("authorization", name, ns),
            name,
        )],
    };
    let server_authzs = authorizations(p.authorization.as_ref(), &name);
    // Each route carries the authorizations that apply to it, its own or the port's, as
    // Linkerd's policy controller sends them: a proxy checks a request against its route's.
    let routes: Vec<(&InboundRoute, Vec<api::Authz>)> = p
        .routes
        .iter()
        .map(|r| {
            let authzs = match &r.authorization {
                Some(a) => authorizations(Some(a), &format!("{name}-{}", r.name)),
                None => server_authzs.clone(),
            };
            (r, authzs)
        })
        .collect();
    api::Server {
        protocol: Some(proxy_protocol(
            p.protocol,
            routes
                .iter()
                .map(|(r, authzs)| (*r, ns.as_str(), authzs.clone()))
                .collect(),
            &server_authzs,
        )),
        server_ips: Vec::new(),
        authorizations: server_authzs,
        labels: labels("mesh", "server", &name),
    }
}

fn labels(group: &str, kind: &str, name: &str) -> std::collections::HashMap<String, String> {
    [("group", group), ("kind", kind), ("name", name)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The protocol with its routes: the catalog's, then a default route (every request) with the
/// server's authorizations.
fn proxy_protocol(
    protocol: Protocol,
    routes: Vec<(&InboundRoute, &str, Vec<api::Authz>)>,
    server_authzs: &[api::Authz],
) -> api::ProxyProtocol {
    use api::proxy_protocol::{self as pp, Kind};
    let http_routes = || {
        let mut out: Vec<api::HttpRoute> = routes
            .iter()
            .map(|(r, ns, authzs)| http_route(r, ns, authzs.clone()))
            .collect();
        out.push(default_http_route(server_authzs.to_vec()));
        out
    };
    let kind = match protocol {
        Protocol::Detect => Kind::Detect(pp::Detect {
            timeout: Some(duration(DETECT_TIMEOUT)),
            http_routes: http_routes(),
            http_local_rate_limit: None,
        }),
        Protocol::Http1 => Kind::Http1(pp::Http1 {
            routes: http_routes(),
            local_rate_limit: None,
        }),
        Protocol::Http2 => Kind::Http2(pp::Http2 {
            routes: http_routes(),
            local_rate_limit: None,
        }),
        Protocol::Grpc => {
            let mut out: Vec<api::GrpcRoute> = routes
                .iter()
                .map(|(r, ns, authzs)| grpc_route(r, ns, authzs.clone()))
                .collect();
            out.push(default_grpc_route(server_authzs.to_vec()));
            Kind::Grpc(pp::Grpc { routes: out })
        }
        Protocol::Opaque => Kind::Opaque(pp::Opaque {}),
    };
    api::ProxyProtocol { kind: Some(kind) }
}

fn http_route(r: &InboundRoute, ns: &str, authorizations: Vec<api::Authz>) -> api::HttpRoute {
    use route_api::path_match::Kind;
    let path = r.condition.path.as_ref().map(|p| route_api::PathMatch {
        kind: Some(match p {
            PathMatch::Exact(p) => Kind::Exact(p.clone()),
            PathMatch::Prefix(p) => Kind::Prefix(p.clone()),
            PathMatch::Regex(re) => Kind::Regex(format!("^(?:{re})$")),
        }),
    });
    api::HttpRoute {
        metadata: Some(mesh_meta("route", &r.name, ns)),
        hosts: Vec::new(),
        authorizations,
        rules: vec![api::http_route::Rule {
            matches: vec![route_api::HttpRouteMatch {
                path,
                method: r.condition.method.clone().map(HttpMethod::from),
                ..Default::default()
            }],
            filters: Vec::new(),
        }],
    }
}

fn grpc_route(r: &InboundRoute, ns: &str, authorizations: Vec<api::Authz>) -> api::GrpcRoute {
    let rpc = r
        .condition
        .grpc
        .as_ref()
        .map(|(service, method)| grpc_route::GrpcRpcMatch {
            service: service.clone(),
            method: method.clone().unwrap_or_default(),
        });
    api::GrpcRoute {
        metadata: Some(mesh_meta("route", &r.name, ns)),
        hosts: Vec::new(),
        authorizations,
        rules: vec![api::grpc_route::Rule {
            matches: vec![grpc_route::GrpcRouteMatch {
                rpc,
                ..Default::default()
            }],
            filters: Vec::new(),
        }],
    }
}

fn default_http_route(authorizations: Vec<api::Authz>) -> api::HttpRoute {
    api::HttpRoute {
        metadata: Some(default_meta("default")),
        hosts: Vec::new(),
        authorizations,
        rules: vec![api::http_route::Rule {
            matches: vec![route_api::HttpRouteMatch {
                path: Some(route_api::PathMatch {
                    kind: Some(route_api::path_match::Kind::Prefix("/".into())),
                }),
                ..Default::default()
            }],
            filters: Vec::new(),
        }],
    }
}

fn default_grpc_route(authorizations: Vec<api::Authz>) -> api::GrpcRoute {
    api::GrpcRoute {
        metadata: Some(default_meta("default")),
        hosts: Vec::new(),
        authorizations,
        rules: vec![api::grpc_route::Rule {
            matches: vec![grpc_route::GrpcRouteMatch::default()],
            filters: Vec::new(),
        }],
    }
}

fn all_networks() -> Vec<IpNet> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn networks(nets: &[IpNet]) -> Vec<api::Network> {
    nets.iter()
        .map(|n| api::Network {
            net: Some((*n).into()),
            except: Vec::new(),
        })
        .collect()
}

fn client_networks(nets: &[Network]) -> Vec<api::Network> {
    nets.iter()
        .map(|n| api::Network {
            net: Some(n.net.into()),
            except: n.except.iter().map(|e| (*e).into()).collect(),
        })
        .collect()
}

fn unauthenticated() -> api::Authn {
    api::Authn {
        permit: Some(api::authn::Permit::Unauthenticated(
            api::authn::PermitUnauthenticated {},
        )),
    }
}

fn mesh_tls(identities: Vec<api::Identity>, suffixes: Vec<api::IdentitySuffix>) -> api::Authn {
    use api::authn::permit_mesh_tls::{Clients, PermitClientIdentities};
    api::Authn {
        permit: Some(api::authn::Permit::MeshTls(api::authn::PermitMeshTls {
            clients: Some(Clients::Identities(PermitClientIdentities {
                identities,
                suffixes,
            })),
        })),
    }
}

/// The authorizations a default policy stands for.
pub fn policy_authzs(policy: DefaultPolicy, cluster_networks: &[IpNet]) -> Vec<api::Authz> {
    let everyone = || mesh_tls(Vec::new(), vec![api::IdentitySuffix { parts: Vec::new() }]);
    let (nets, authn) = match policy {
        DefaultPolicy::AllUnauthenticated => (all_networks(), unauthenticated()),
        DefaultPolicy::AllAuthenticated => (all_networks(), everyone()),
        DefaultPolicy::ClusterUnauthenticated => (cluster_networks.to_vec(), unauthenticated()),
        DefaultPolicy::ClusterAuthenticated => (cluster_networks.to_vec(), everyone()),
        DefaultPolicy::Deny => return Vec::new(),
    };
    vec![api::Authz {
        networks: networks(&nets),
        authentication: Some(authn),
        labels: labels("", "default", policy.as_str()),
        metadata: Some(default_meta(policy.as_str())),
    }]
}

fn clients_authz(clients: &Clients, metadata: meta::Metadata, name: &str) -> api::Authz {
    let nets = if clients.networks.is_empty() {
        networks(&all_networks())
    } else {
        client_networks(&clients.networks)
    };
    let authn = if clients.unauthenticated {
        unauthenticated()
    } else {
        mesh_tls(
            clients
                .identities
                .iter()
                .map(|i| api::Identity {
                    name: i.as_str().to_owned(),
                })
                .collect(),
            clients
                .suffixes
                .iter()
                .map(|s| api::IdentitySuffix {
                    parts: s
                        .split('.')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
                .collect(),
        )
    };
    api::Authz {
        networks: nets,
        authentication: Some(authn),
        labels: labels("mesh", "authorization", name),
        metadata: Some(metadata),
    }
}
