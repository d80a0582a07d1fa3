//! What the catalog holds: services, their ports, endpoints, profiles, splits and authorizations.
//!
//! A [`Snapshot`] is an immutable value: every change to the catalog (a `mesh.yaml` edit, a
//! registration, an expired lease, a Kubernetes event) publishes a new one, and the API servers
//! recompute their answers from it. Backends build snapshots; nothing else mutates them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnet::IpNet;
use mesh_tls::ServiceIdentity;

/// The whole catalog at one point in time.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The inbound policy for ports that no service configures explicitly.
    pub default_policy: DefaultPolicy,
    /// The networks `cluster-*` policies admit.
    pub cluster_networks: Vec<IpNet>,
    /// Default inbound policies per namespace, over [`default_policy`](Self::default_policy).
    pub namespace_policies: BTreeMap<String, DefaultPolicy>,
    /// Default inbound policies per workload (`(namespace, name)`), over the namespace's.
    pub workload_policies: BTreeMap<(String, String), DefaultPolicy>,
    /// Every known service.
    pub services: BTreeMap<ServiceRef, Service>,
}

/// A service's name and namespace. Displays as `name.namespace`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    /// The namespace.
    pub namespace: String,
    /// The service name.
    pub name: String,
}

/// A logical service: ports clients address, the endpoints serving it and how to route to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Its name.
    pub name: ServiceRef,
    /// Its ports, by port number.
    pub ports: BTreeMap<u16, Port>,
    /// The workloads (by name, in the service's namespace) that serve it; inbound policy for a
    /// workload comes from the services that list it.
    pub workloads: BTreeSet<String>,
    /// The endpoints serving it, static and registered, in address order.
    pub endpoints: Vec<Endpoint>,
    /// Routes and retry budget (a ServiceProfile).
    pub profile: Profile,
    /// A traffic split: when non-empty, requests to this service go to these backends instead,
    /// in proportion to their weights.
    pub split: Vec<SplitBackend>,
    /// Circuit breaking for this service's endpoints, if any.
    pub failure_accrual: Option<FailureAccrual>,
}

/// One port of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    /// The port clients address (`svc.ns.svc.cluster.local:<port>`).
    pub port: u16,
    /// The application port on the workloads, which inbound policy is keyed by.
    pub target_port: u16,
    /// How the port's traffic is proxied.
    pub protocol: Protocol,
    /// Who may call the port; `None` applies the workload's default policy.
    pub authorization: Option<Authorization>,
    /// Classes of the port's requests with an authorization of their own (Linkerd's HTTPRoutes
    /// with an AuthorizationPolicy), first match wins; other requests get the port's.
    pub routes: Vec<InboundRoute>,
}

/// A class of a port's requests, with the clients it admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundRoute {
    /// Its name (the `route_name` of the authorization metrics).
    pub name: String,
    /// What it matches.
    pub condition: InboundCondition,
    /// Who may send it; `None` admits whom the port admits.
    pub authorization: Option<Authorization>,
}

/// What an inbound route matches: every given part must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundCondition {
    /// The HTTP method; `None` matches any.
    pub method: Option<http::Method>,
    /// The path; `None` matches any.
    pub path: Option<PathMatch>,
    /// On gRPC ports: the service (`package.Service`) and, optionally, the method.
    pub grpc: Option<(String, Option<String>)>,
}

/// How a route matches the request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// A prefix of the path, on segment boundaries (`/api` matches `/api` and `/api/x`).
    Prefix(String),
    /// A regular expression the whole path matches.
    Regex(String),
}

/// How traffic on a port is proxied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Detect HTTP, else opaque TCP. The default.
    #[default]
    Detect,
    /// HTTP/1.
    Http1,
    /// HTTP/2.
    Http2,
    /// gRPC.
    Grpc,
    /// Opaque TCP: never parsed.
    Opaque,
}

/// One address serving a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect (in local mode, the workload proxy's inbound listener).
    pub addr: SocketAddr,
    /// The identity the endpoint proves with mutual TLS; `None` for an unmeshed endpoint.
    pub identity: Option<ServiceIdentity>,
    /// What the endpoint's proxy speaks; [`ProtocolHint::Auto`] derives it from the port.
    pub protocol_hint: ProtocolHint,
    /// Labels for metrics (`pod`, `zone`, ...).
    pub labels: BTreeMap<String, String>,
    /// The workload this endpoint belongs to, when known.
    pub workload: Option<String>,
    /// The service ports it serves; `None` means all of them.
    pub ports: Option<BTreeSet<u16>>,
    /// Its relative weight in load balancing. Default is 10 000, as Linkerd's.
    pub weight: u32,
    /// Where it came from.
    pub source: EndpointSource,
}

/// Where an endpoint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointSource {
    /// Listed in the catalog file (or another static source).
    Static,
    /// Registered by a proxy, held by a lease.
    Registered,
}

/// What a peer proxy at an endpoint understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProtocolHint {
    /// Meshed endpoints (with an identity) get `H2` on HTTP ports and `Opaque` on opaque ports;
    /// unmeshed ones get no hint. The default.
    #[default]
    Auto,
    /// No hint: connect with the application's protocol.
    None,
    /// The peer proxy accepts HTTP/2 and upgrades HTTP/1 over it.
    H2,
    /// The peer treats the connection as opaque TCP.
    Opaque,
}

/// The default weight of an endpoint (Linkerd's).
pub const DEFAULT_ENDPOINT_WEIGHT: u32 = 10_000;

/// A service profile: routes in order (first match wins) and the retry budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// How much retries may add to the load.
    pub retry_budget: RetryBudget,
}

/// A named class of requests with its own timeout, retry and response classification.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// The route's name (the `rt_route` metrics label).
    pub name: String,
    /// The HTTP method it matches; `None` matches any.
    pub method: Option<http::Method>,
    /// A regular expression the whole request path must match; `None` matches any path.
    pub path_regex: Option<String>,
    /// Whether failed requests may be retried (within the retry budget).
    pub is_retryable: bool,
    /// Maximum number of retries per request, for policy-based proxies. Default is 3.
    pub max_retries: u32,
    /// The deadline for the whole request, retries included.
    pub timeout: Option<Duration>,
    /// How responses are classified, first match wins; unmatched responses are successes
    /// unless a 5xx.
    pub response_classes: Vec<ResponseClass>,
    /// Each attempt's timeout when retried (Linkerd 2.16's `retry.linkerd.io/timeout`).
    pub retry_timeout: Option<Duration>,
    /// The statuses retried; empty: the failure response classes, else 5xx.
    pub retry_statuses: Vec<RangeInclusive<u16>>,
    /// The gRPC status codes retried; empty: `INTERNAL` and `UNAVAILABLE`.
    pub retry_grpc: Vec<i32>,
}

/// A class of responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseClass {
    /// The HTTP statuses in the class.
    pub status: RangeInclusive<u16>,
    /// Whether they count as failures.
    pub is_failure: bool,
}

/// Linkerd's retry budget: retries may add `retry_ratio` of the request load, plus
/// `min_retries_per_second`, measured over `ttl`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// Extra load retries may add, e.g. 0.2 for 20%.
    pub retry_ratio: f32,
    /// Retries always allowed per second.
    pub min_retries_per_second: u32,
    /// The window the ratio is computed over.
    pub ttl: Duration,
}

impl Default for RetryBudget {
    /// 0.2, 10 per second, 10 s: Linkerd's default budget.
    fn default() -> Self {
        Self {
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// One backend of a traffic split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitBackend {
    /// The backend service.
    pub service: ServiceRef,
    /// Its port; `None` uses the port the client addressed.
    pub port: Option<u16>,
    /// Its weight, relative to the other backends'. Zero sends it nothing.
    pub weight: u32,
}

/// Consecutive-failures circuit breaking.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailureAccrual {
    /// Failures in a row that eject an endpoint.
    pub consecutive_failures: u32,
    /// How long an ejected endpoint waits before a probe request.
    pub backoff: Backoff,
}

/// An exponential backoff with jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Random extra fraction of each delay.
    pub jitter_ratio: f32,
}

impl Default for Backoff {
    /// 1 s to 60 s, jitter 0.5 (Linkerd's failure-accrual defaults).
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter_ratio: 0.5,
        }
    }
}

/// Who may call a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// One of the named default policies.
    Policy(DefaultPolicy),
    /// Explicit clients.
    Clients(Clients),
}

/// The clients an explicit authorization admits: any listed identity or suffix over mesh TLS,
/// and anyone when `unauthenticated` is set, from `networks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clients {
    /// Exact identities.
    pub identities: Vec<ServiceIdentity>,
    /// Identity suffixes: `emojivoto.serviceaccount.identity.mesh.cluster.local` admits every
    /// workload of the namespace. An empty string admits every identity.
    pub suffixes: Vec<String>,
    /// Whether clients without mesh TLS are admitted too.
    pub unauthenticated: bool,
    /// The client networks the authorization applies to; empty means all.
    pub networks: Vec<Network>,
}

/// A client network, less the ranges excepted from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    /// The network.
    pub net: IpNet,
    /// Ranges inside it that are not admitted.
    pub except: Vec<IpNet>,
}

/// The named default inbound policies, as Linkerd's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Every client, meshed or not, from anywhere. The default.
    #[default]
    AllUnauthenticated,
    /// Meshed clients (any identity) from anywhere.
    AllAuthenticated,
    /// Every client from the cluster networks.
    ClusterUnauthenticated,
    /// Meshed clients from the cluster networks.
    ClusterAuthenticated,
    /// Nobody.
    Deny,
}

// === impl ServiceRef ===

impl ServiceRef {
    /// A service reference.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    /// The fully-qualified name, `name.namespace.svc.<cluster_domain>`.
    pub fn fqdn(&self, cluster_domain: &str) -> String {
        format!("{}.{}.svc.{cluster_domain}", self.name, self.namespace)
    }

    /// The authority clients use, `name.namespace.svc.<cluster_domain>:<port>`.
    pub fn authority(&self, cluster_domain: &str, port: u16) -> String {
        format!("{}:{port}", self.fqdn(cluster_domain))
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

// === impl Snapshot ===

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            default_policy: DefaultPolicy::default(),
            cluster_networks: default_cluster_networks(),
            namespace_policies: BTreeMap::new(),
            workload_policies: BTreeMap::new(),
            services: BTreeMap::new(),
        }
    }
}

impl Snapshot {
    /// The service named `name`, if known.
    pub fn service(&self, name: &ServiceRef) -> Option<&Service> {
        self.services.get(name)
    }

    /// The default inbound policy of workload `name` of `namespace`: its own, else its
    /// namespace's, else the catalog's (Linkerd's annotation hierarchy: pod, namespace, cluster).
    pub fn default_policy_of(&self, namespace: &str, name: &str) -> DefaultPolicy {
        self.workload_policies
            .get(&(namespace.to_owned(), name.to_owned()))
            .or_else(|| self.namespace_policies.get(namespace))
            .copied()
            .unwrap_or(self.default_policy)
    }

    /// The endpoint listening on `addr`, with its service and port, if any endpoint does.
    pub fn endpoint_at(&self, addr: SocketAddr) -> Option<(&Service, &Endpoint)> {
        self.services.values().find_map(|svc| {
            svc.endpoints
                .iter()
                .find(|e| e.addr == addr)
                .map(|e| (svc, e))
        })
    }
}

/// The cluster networks used when the catalog names none: Linkerd's defaults plus loopback
/// (local mode runs everything on 127.0.0.1).
pub fn default_cluster_networks() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fd00::/8",
        "127.0.0.0/8",
        "::1/128",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

// === impl Service ===

impl Service {
    /// An empty service with no ports.
    pub fn new(name: ServiceRef) -> Self {
        let workloads = BTreeSet::from([name.name.clone()]);
        Self {
            name,
            ports: BTreeMap::new(),
            workloads,
            endpoints: Vec::new(),
            profile: Profile::default(),
            split: Vec::new(),
            failure_accrual: None,
        }
    }

    /// The endpoints that serve `port`.
    pub fn endpoints_for(&self, port: u16) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(move |e| e.ports.as_ref().is_none_or(|p| p.contains(&port)))
    }

    /// Whether `workload` serves this service: it is listed, or a registered endpoint says so.
    pub fn selects(&self, workload: &str) -> bool {
        self.workloads.contains(workload)
            || self
                .endpoints
                .iter()
                .any(|e| e.workload.as_deref() == Some(workload))
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// The hint to send for this endpoint on a port with `protocol`.
    pub fn effective_hint(&self, protocol: Protocol) -> ProtocolHint {
        match self.protocol_hint {
            ProtocolHint::Auto if self.identity.is_none() => ProtocolHint::None,
            ProtocolHint::Auto if protocol == Protocol::Opaque => ProtocolHint::Opaque,
            ProtocolHint::Auto => ProtocolHint::H2,
            hint => hint,
        }
    }
}

// === impl DefaultPolicy ===

impl DefaultPolicy {
    /// The policy's name, as in `mesh.yaml` and Linkerd.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AllUnauthenticated => "all-unauthenticated",
            Self::AllAuthenticated => "all-authenticated",
            Self::ClusterUnauthenticated => "cluster-unauthenticated",
            Self::ClusterAuthenticated => "cluster-authenticated",
            Self::Deny => "deny",
        }
    }

    /// Every policy, for error messages.
    pub const ALL: [DefaultPolicy; 5] = [
        Self::AllUnauthenticated,
        Self::AllAuthenticated,
        Self::ClusterUnauthenticated,
        Self::ClusterAuthenticated,
        Self::Deny,
    ];
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for DefaultPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown default policy {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

// === impl Protocol ===

impl Protocol {
    /// The protocol's name in `mesh.yaml`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Detect => "detect",
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
            Self::Opaque => "opaque",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
