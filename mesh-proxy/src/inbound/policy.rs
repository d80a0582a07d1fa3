//! Inbound policy: who may call a port of the app, per connection and per route, with Linkerd's
//! semantics (`io.linkerd.proxy.inbound`).
//!
//! A [`ServerPolicy`] is what the control plane's `InboundServerPolicies.WatchPort` says of one
//! port, or, without a control plane, what the proxy's `--inbound-policy` default stands for.
//! It holds the port's authorizations and its routes, each route with the authorizations that
//! apply to it. An authorization admits a client when the client's address is in one of its
//! networks (and not in an exception of that network) and its authentication is met:
//! unauthenticated (anyone), or mesh TLS with an identity that is listed or ends with a listed
//! suffix (an empty suffix admits every meshed client).
//!
//! - An opaque connection is checked once, against the port's authorizations.
//! - An HTTP request is checked against its route's: the first route with a matching rule
//!   (method, path, headers; on gRPC ports the service and method). A request that matches no
//!   route is refused with 404, as Linkerd's proxy does once routes are configured.
//!
//! The policy is [`PolicyHandle`]: the current policy in an `ArcSwap`, so a request reads it
//! without a lock, and an edit in the catalog applies to the next connection and the next
//! request, with no restart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use http::{HeaderName, Method};
use ipnet::IpNet;
use linkerd2_proxy_api::inbound as api;
use linkerd2_proxy_api::meta;
use linkerd2_proxy_api::{grpc_route as grpc_api, http_route as http_api};
use mesh_tls::ServiceIdentity;
use regex::Regex;

/// What a resource in the policy is called, for metrics: Linkerd's `group`, `kind` and `name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Meta {
    pub(crate) group: Arc<str>,
    pub(crate) kind: Arc<str>,
    pub(crate) name: Arc<str>,
}

/// The policy of one port.
#[derive(Debug)]
pub(crate) struct ServerPolicy {
    pub(crate) meta: Meta,
    /// Who may open a connection (opaque traffic), and whom the default routes admit.
    pub(crate) authorizations: Vec<Authz>,
    /// The port's routes, first match wins (gRPC ports' match by service and method).
    pub(crate) routes: Vec<Route>,
}

/// One authorization: clients from some networks with some authentication.
#[derive(Debug)]
pub(crate) struct Authz {
    pub(crate) meta: Meta,
    networks: Vec<Network>,
    authn: Authn,
}

#[derive(Debug)]
struct Network {
    net: IpNet,
    except: Vec<IpNet>,
}

#[derive(Debug)]
enum Authn {
    Unauthenticated,
    MeshTls {
        identities: Vec<String>,
        /// Each suffix as its labels; an empty one admits every identity.
        suffixes: Vec<Vec<String>>,
    },
}

/// A route of the port.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) meta: Meta,
    /// Any of them matching selects the route.
    matches: Vec<RouteMatch>,
    pub(crate) authorizations: Vec<Authz>,
}

#[derive(Debug)]
enum RouteMatch {
    Http {
        path: Option<PathMatch>,
        method: Option<Method>,
        headers: Vec<(HeaderName, ValueMatch)>,
        /// Query parameters are not matched here: a rule that asks for them never matches.
        unsupported: bool,
    },
    Grpc {
        service: Option<String>,
        method: Option<String>,
        headers: Vec<(HeaderName, ValueMatch)>,
    },
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum ValueMatch {
    Exact(Vec<u8>),
    Regex(Regex),
}

/// The control plane sent a policy this proxy cannot apply; the previous policy stays.
#[derive(Debug, thiserror::Error)]
#[error("invalid inbound policy: {0}")]
pub(crate) struct InvalidPolicy(String);

/// The current policy of a port. Cheap to clone; clones see the same updates.
#[derive(Clone, Debug)]
pub(crate) struct PolicyHandle {
    current: Arc<ArcSwap<ServerPolicy>>,
    /// Whether the policy never changes (no control plane).
    fixed: bool,
    /// Bumped on every update: caches keyed by the policy's routes check it.
    generation: Arc<AtomicU64>,
}

// === impl PolicyHandle ===

impl PolicyHandle {
    /// A policy the control plane keeps current (see [`follow`]).
    pub(crate) fn new(policy: ServerPolicy) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(policy)),
            fixed: false,
            generation: Arc::default(),
        }
    }

    /// A policy that never changes (the proxy's own default, without a control plane).
    pub(crate) fn fixed(policy: ServerPolicy) -> Self {
        Self {
            fixed: true,
            ..Self::new(policy)
        }
    }

    /// Whether every client must present a certificate: only a fixed policy that admits no
    /// unauthenticated client can say so before a request is read (then clients without one
    /// fail the handshake, as with any mutual-TLS server); a live policy may change, so it
    /// decides per request.
    pub(crate) fn requires_client_certificates(&self) -> bool {
        self.fixed && !self.load().admits_unauthenticated()
    }

    /// The policy now.
    pub(crate) fn load(&self) -> Arc<ServerPolicy> {
        self.current.load_full()
    }

    /// Which version of the policy [`load`](Self::load) returns.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn store(&self, policy: ServerPolicy) {
        self.current.store(Arc::new(policy));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Keeps `handle` current with the control plane's answers for one port, for as long as the
/// proxy runs: each answer replaces the policy; an answer this proxy cannot apply is logged and
/// the previous policy kept; while the control plane is away, the last policy stays. `first` is
/// told when the first answer is in place (the inbound listener serves only then).
pub(crate) async fn follow(
    mut updates: mesh_control_client::Follow<api::Server>,
    handle: PolicyHandle,
    first: tokio::sync::oneshot::Sender<()>,
) {
    use futures_util::StreamExt;
    use mesh_control_client::Update;
    let mut first = Some(first);
    while let Some(update) = updates.next().await {
        let server = match update {
            Update::Reset(s) | Update::Next(s) => s,
            Update::Lost(status) => {
                tracing::debug!(%status, "inbound policy stream lost; keeping the last policy");
                continue;
            }
        };
        match ServerPolicy::try_from(server) {
            Ok(policy) => {
                tracing::debug!(server = %policy.meta.name, "inbound policy updated");
                handle.store(policy);
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
            }
            Err(error) => tracing::warn!(%error, "keeping the previous inbound policy"),
        }
    }
}

// === impl ServerPolicy ===

/// A default policy's name, and the authorization it stands for (as the control plane's
/// translation of Linkerd's default policies).
pub(crate) fn default_policy(
    name: &str,
    unauthenticated: bool,
    networks: &[IpNet],
) -> ServerPolicy {
    let meta = Meta::new("", "default", name);
    let authorizations = if networks.is_empty() {
        Vec::new()
    } else {
        vec![Authz {
            meta: meta.clone(),
            networks: networks
                .iter()
                .map(|net| Network {
                    net: *net,
                    except: Vec::new(),
                })
                .collect(),
            authn: if unauthenticated {
                Authn::Unauthenticated
            } else {
                Authn::MeshTls {
                    identities: Vec::new(),
                    suffixes: vec![Vec::new()],
                }
            },
        }]
    };
    ServerPolicy {
        meta: meta.clone(),
        routes: vec![Route {
            meta: Meta::new("", "default", "default"),
            matches: vec![RouteMatch::any()],
            authorizations: authorizations.iter().map(Authz::duplicate).collect(),
        }],
        authorizations,
    }
}

impl ServerPolicy {
    /// The authorization that admits a connection from `client` at `ip` to the port, if one
    /// does.
    pub(crate) fn authorize_connection(
        &self,
        client: Option<&ServiceIdentity>,
        ip: IpAddr,
    ) -> Option<&Authz> {
        self.authorizations.iter().find(|a| a.admits(client, ip))
    }

    /// Whether any authorization of the port or its routes admits clients without mesh TLS.
    fn admits_unauthenticated(&self) -> bool {
        self.authorizations
            .iter()
            .chain(self.routes.iter().flat_map(|r| &r.authorizations))
            .any(|a| matches!(a.authn, Authn::Unauthenticated))
    }

    /// The route `req` takes, by index, if any matches.
    pub(crate) fn route_of<B>(&self, req: &http::Request<B>) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matches.iter().any(|m| m.matches(req)))
    }
}

impl TryFrom<api::Server> for ServerPolicy {
    type Error = InvalidPolicy;

    fn try_from(server: api::Server) -> Result<Self, InvalidPolicy> {
        use api::proxy_protocol::Kind;
        let meta = Meta::from_labels(&server.labels, "server");
        let authorizations = server
            .authorizations
            .into_iter()
            .map(Authz::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let kind = server.protocol.and_then(|p| p.kind);
        let routes = match kind {
            Some(Kind::Detect(d)) => http_routes(d.http_routes)?,
            Some(Kind::Http1(h)) => http_routes(h.routes)?,
            Some(Kind::Http2(h)) => http_routes(h.routes)?,
            Some(Kind::Grpc(g)) => grpc_routes(g.routes)?,
            Some(Kind::Opaque(_)) | Some(Kind::Tls(_)) | None => Vec::new(),
        };
        Ok(Self {
            meta,
            authorizations,
            routes,
        })
    }
}

fn http_routes(routes: Vec<api::HttpRoute>) -> Result<Vec<Route>, InvalidPolicy> {
    routes
        .into_iter()
        .map(|r| {
            let matches = r
                .rules
                .into_iter()
                .flat_map(|rule| rule.matches)
                .map(RouteMatch::http)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Route {
                meta: Meta::from_metadata(r.metadata.as_ref(), "HTTPRoute"),
                // A rule without matches matches everything (Gateway API's default).
                matches: if matches.is_empty() {
                    vec![RouteMatch::any()]
                } else {
                    matches
                },
                authorizations: r
                    .authorizations
                    .into_iter()
                    .map(Authz::try_from)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

fn grpc_routes(routes: Vec<api::GrpcRoute>) -> Result<Vec<Route>, InvalidPolicy> {
    routes
        .into_iter()
        .map(|r| {
            let matches = r
                .rules
                .into_iter()
                .flat_map(|rule| rule.matches)
                .map(RouteMatch::grpc)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Route {
                meta: Meta::from_metadata(r.metadata.as_ref(), "GRPCRoute"),
                matches: if matches.is_empty() {
                    vec![RouteMatch::Grpc {
                        service: None,
                        method: None,
                        headers: Vec::new(),
                    }]
                } else {
                    matches
                },
                authorizations: r
                    .authorizations
                    .into_iter()
                    .map(Authz::try_from)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

// === impl Authz ===

impl Authz {
    /// Whether a client with `client`'s identity (None: not meshed) at `ip` is admitted.
    pub(crate) fn admits(&self, client: Option<&ServiceIdentity>, ip: IpAddr) -> bool {
        let in_networks = self
            .networks
            .iter()
            .any(|n| n.net.contains(&ip) && !n.except.iter().any(|e| e.contains(&ip)));
        if !in_networks {
            return false;
        }
        match &self.authn {
            Authn::Unauthenticated => true,
            Authn::MeshTls {
                identities,
                suffixes,
            } => {
                let Some(id) = client else {
                    return false;
                };
                let id = id.as_str();
                identities.iter().any(|i| i == id) || suffixes.iter().any(|s| has_suffix(id, s))
            }
        }
    }

    fn duplicate(&self) -> Self {
        Self {
            meta: self.meta.clone(),
            networks: self
                .networks
                .iter()
                .map(|n| Network {
                    net: n.net,
                    except: n.except.clone(),
                })
                .collect(),
            authn: match &self.authn {
                Authn::Unauthenticated => Authn::Unauthenticated,
                Authn::MeshTls {
                    identities,
                    suffixes,
                } => Authn::MeshTls {
                    identities: identities.clone(),
                    suffixes: suffixes.clone(),
                },
            },
        }
    }
}

/// Whether `id`'s trailing DNS labels are `suffix` (every identity has the empty suffix).
fn has_suffix(id: &str, suffix: &[String]) -> bool {
    let mut labels = id.rsplit('.');
    suffix
        .iter()
        .rev()
        .all(|s| labels.next().is_some_and(|l| l.eq_ignore_ascii_case(s)))
}

impl TryFrom<api::Authz> for Authz {
    type Error = InvalidPolicy;

    fn try_from(a: api::Authz) -> Result<Self, InvalidPolicy> {
        use api::authn::Permit;
        use api::authn::permit_mesh_tls::Clients;
        let meta = a
            .metadata
            .as_ref()
            .map(|m| Meta::from_metadata(Some(m), "authorization"))
            .unwrap_or_else(|| Meta::from_labels(&a.labels, "authorization"));
        let networks = a
            .networks
            .into_iter()
            .map(|n| {
                let net = n
                    .net
                    .ok_or_else(|| InvalidPolicy("a network without an address".into()))
                    .and_then(ip_net)?;
                let except = n.except.into_iter().map(ip_net).collect::<Result<_, _>>()?;
                Ok(Network { net, except })
            })
            .collect::<Result<Vec<_>, InvalidPolicy>>()?;
        let permit = a.authentication.and_then(|a| a.permit).ok_or_else(|| {
            InvalidPolicy(format!("authorization {} has no authentication", meta.name))
        })?;
        let authn = match permit {
            Permit::Unauthenticated(_) => Authn::Unauthenticated,
            Permit::MeshTls(m) => match m.clients {
                Some(Clients::Identities(ids)) => Authn::MeshTls {
                    identities: ids.identities.into_iter().map(|i| i.name).collect(),
                    suffixes: ids.suffixes.into_iter().map(|s| s.parts).collect(),
                },
                // Mesh TLS required, any client: every identity.
                Some(Clients::Unauthenticated(_)) | None => Authn::MeshTls {
                    identities: Vec::new(),
                    suffixes: vec![Vec::new()],
                },
            },
        };
        Ok(Self {
            meta,
            networks,
            authn,
        })
    }
}

fn ip_net(n: linkerd2_proxy_api::net::IpNetwork) -> Result<IpNet, InvalidPolicy> {
    IpNet::try_from(n).map_err(|e| InvalidPolicy(format!("invalid network: {e}")))
}

// === impl RouteMatch ===

impl RouteMatch {
    fn any() -> Self {
        Self::Http {
            path: None,
            method: None,
            headers: Vec::new(),
            unsupported: false,
        }
    }

    fn http(m: http_api::HttpRouteMatch) -> Result<Self, InvalidPolicy> {
        use http_api::path_match::Kind;
        let path = match m.path.and_then(|p| p.kind) {
            None => None,
            Some(Kind::Exact(p)) => Some(PathMatch::Exact(p)),
            Some(Kind::Prefix(p)) => Some(PathMatch::Prefix(p)),
            Some(Kind::Regex(r)) => Some(PathMatch::Regex(regex(&r)?)),
        };
        let method = m
            .method
            .map(Method::try_from)
            .transpose()
            .map_err(|e| InvalidPolicy(format!("invalid method: {e}")))?;
        Ok(Self::Http {
            path,
            method,
            headers: header_matches(m.headers)?,
            unsupported: !m.query_params.is_empty(),
        })
    }

    fn grpc(m: grpc_api::GrpcRouteMatch) -> Result<Self, InvalidPolicy> {
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let (service, method) = match m.rpc {
            Some(rpc) => (non_empty(rpc.service), non_empty(rpc.method)),
            None => (None, None),
        };
        Ok(Self::Grpc {
            service,
            method,
            headers: header_matches(m.headers)?,
        })
    }

    fn matches<B>(&self, req: &http::Request<B>) -> bool {
        match self {
            Self::Http {
                path,
                method,
                headers,
                unsupported,
            } => {
                !unsupported
                    && method.as_ref().is_none_or(|m| m == req.method())
                    && path.as_ref().is_none_or(|p| p.matches(req.uri().path()))
                    && headers_match(headers, req.headers())
            }
            Self::Grpc {
                service,
                method,
                headers,
            } => {
                // `/package.Service/Method`
                let mut parts = req.uri().path().trim_start_matches('/').splitn(2, '/');
                let (s, m) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                service.as_deref().is_none_or(|want| want == s)
                    && method.as_deref().is_none_or(|want| want == m)
                    && headers_match(headers, req.headers())
            }
        }
    }
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => p == path,
            Self::Prefix(p) => {
                let p = p.trim_end_matches('/');
                path == p
                    || path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/')
                    || p.is_empty()
            }
            Self::Regex(r) => r.is_match(path),
        }
    }
}

fn header_matches(
    headers: Vec<http_api::HeaderMatch>,
) -> Result<Vec<(HeaderName, ValueMatch)>, InvalidPolicy> {
    use http_api::header_match::Value;
    headers
        .into_iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| InvalidPolicy(format!("invalid header name {:?}: {e}", h.name)))?;
            let value = match h.value {
                Some(Value::Exact(v)) => ValueMatch::Exact(v),
                Some(Value::Regex(r)) => ValueMatch::Regex(regex(&r)?),
                None => ValueMatch::Regex(regex(".*")?),
            };
            Ok((name, value))
        })
        .collect()
}

fn headers_match(want: &[(HeaderName, ValueMatch)], have: &http::HeaderMap) -> bool {
    want.iter().all(|(name, value)| {
        have.get_all(name).iter().any(|v| match value {
            ValueMatch::Exact(e) => v.as_bytes() == e.as_slice(),
            ValueMatch::Regex(r) => v.to_str().is_ok_and(|v| r.is_match(v)),
        })
    })
}

/// A regex anchored at both ends, as the policy API's matches are.
fn regex(r: &str) -> Result<Regex, InvalidPolicy> {
    Regex::new(&format!("^(?:{r})$"))
        .map_err(|e| InvalidPolicy(format!("invalid regex {r:?}: {e}")))
}

// === impl Meta ===

impl Meta {
    pub(crate) fn new(group: &str, kind: &str, name: &str) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    fn from_labels(labels: &HashMap<String, String>, kind: &str) -> Self {
        let get = |k: &str| labels.get(k).map(String::as_str);
        Self::new(
            get("group").unwrap_or(""),
            get("kind").unwrap_or(kind),
            get("name").unwrap_or(""),
        )
    }

    fn from_metadata(m: Option<&meta::Metadata>, kind: &str) -> Self {
        match m.and_then(|m| m.kind.as_ref()) {
            Some(meta::metadata::Kind::Resource(r)) => Self::new(&r.group, &r.kind, &r.name),
            Some(meta::metadata::Kind::Default(name)) => Self::new("", "default", name),
            None => Self::new("", kind, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ServiceIdentity {
        format!("{name}.emojivoto.serviceaccount.identity.mesh.cluster.local")
            .parse()
            .unwrap()
    }

    fn authz(authn: Authn, nets: &[(&str, &[&str])]) -> Authz {
        Authz {
            meta: Meta::new("mesh", "authorization", "t"),
            networks: nets
                .iter()
                .map(|(n, ex)| Network {
                    net: n.parse().unwrap(),
                    except: ex.iter().map(|e| e.parse().unwrap()).collect(),
                })
                .collect(),
            authn,
        }
    }

    #[test]
    fn identities_suffixes_and_networks() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let exact = authz(
            Authn::MeshTls {
                identities: vec![id("vote-bot").as_str().to_owned()],
                suffixes: Vec::new(),
            },
            &[("0.0.0.0/0", &[])],
        );
        assert!(exact.admits(Some(&id("vote-bot")), lo));
        assert!(!exact.admits(Some(&id("web")), lo));
        assert!(!exact.admits(None, lo), "mesh TLS needs an identity");

        let ns = authz(
            Authn::MeshTls {
                identities: Vec::new(),
                suffixes: vec![
                    "emojivoto.serviceaccount.identity.mesh.cluster.local"
                        .split('.')
                        .map(str::to_owned)
                        .collect(),
                ],
            },
            &[("0.0.0.0/0", &[])],
        );
        assert!(ns.admits(Some(&id("web")), lo));
        let other: ServiceIdentity = "web.shop.serviceaccount.identity.mesh.cluster.local"
            .parse()
            .unwrap();
        assert!(!ns.admits(Some(&other), lo));

        let nets = authz(Authn::Unauthenticated, &[("10.0.0.0/8", &["10.1.0.0/16"])]);
        assert!(nets.admits(None, "10.2.3.4".parse().unwrap()));
        assert!(!nets.admits(None, "10.1.3.4".parse().unwrap()), "excepted");
        assert!(!nets.admits(None, lo), "outside");
    }

    #[test]
    fn routes_match_paths_methods_and_grpc_methods() {
        let get = |path: &str| http::Request::get(path).body(()).unwrap();
        let prefix = PathMatch::Prefix("/api".into());
        assert!(prefix.matches("/api"));
        assert!(prefix.matches("/api/vote"));
        assert!(!prefix.matches("/apix"));
        assert!(PathMatch::Prefix("/".into()).matches("/anything"));
        let m = RouteMatch::Http {
            path: Some(PathMatch::Exact("/api/vote".into())),
            method: Some(Method::POST),
            headers: Vec::new(),
            unsupported: false,
        };
        assert!(!m.matches(&get("/api/vote")), "method");
        let post = http::Request::post("/api/vote").body(()).unwrap();
        assert!(m.matches(&post));
        let g = RouteMatch::Grpc {
            service: Some("emojivoto.v1.VotingService".into()),
            method: Some("VoteDoughnut".into()),
            headers: Vec::new(),
        };
        assert!(g.matches(&get("/emojivoto.v1.VotingService/VoteDoughnut")));
        assert!(!g.matches(&get("/emojivoto.v1.VotingService/VotePoop")));
    }

    #[test]
    fn default_policies_deny_or_admit() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let all: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap()];
        let deny = default_policy("deny", false, &[]);
        assert!(deny.authorize_connection(Some(&id("web")), lo).is_none());
        let authn = default_policy("all-authenticated", false, &all);
        assert!(authn.authorize_connection(None, lo).is_none());
        assert!(authn.authorize_connection(Some(&id("web")), lo).is_some());
        let req = http::Request::get("/x").body(()).unwrap();
        let route = authn.route_of(&req).unwrap();
        assert!(authn.routes[route].authorizations[0].admits(Some(&id("web")), lo));
    }
}
