//! Where the proxy learns about destinations: which endpoints serve an authority, with which
//! identity, and the routes (timeouts, retries) and splits of its profile.
//!
//! Discovery is a trait ([`Discover`]) so sources plug in: a static file ([`StaticDiscovery`],
//! [`file`]), enough for a pair of proxies with no control plane, and the control plane's
//! `Destination.Get`/`GetProfile` ([`ControlDiscovery`], [`control`]). A destination is a `watch`
//! so a source can change it live.

pub mod control;
pub mod file;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

pub use self::control::ControlDiscovery;
pub use self::file::StaticDiscovery;

use mesh_core::metrics::RouteLabel;
use mesh_core::retry::RetryableRoute;
use mesh_tls::ServiceIdentity;

/// What a destination (an authority the app calls) resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    /// The authority, as configured.
    pub authority: String,
    /// HTTP or opaque TCP.
    pub protocol: Protocol,
    /// Default request timeout.
    pub timeout: Option<Duration>,
    /// Retry budget parameters (ratio, min per second, window).
    pub retry_budget: Option<(f32, u32, Duration)>,
    /// When to eject an endpoint that keeps failing (`None`: never; Linkerd's default).
    pub failure_accrual: Option<mesh_balance::FailureAccrual>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// Weighted backends, each a set of endpoints.
    pub backends: Vec<Backend>,
}

impl Destination {
    /// Every endpoint of every backend, as known now.
    pub fn all_endpoints(&self) -> Vec<EndpointAddr> {
        let mut out = Vec::new();
        for b in &self.backends {
            out.extend(b.endpoints.iter().cloned());
            if let Some((_, set)) = &b.live {
                out.extend(set.endpoints().into_iter().map(|e| {
                    EndpointAddr {
                        addr: e.addr(),
                        identity: e
                            .identity()
                            .and_then(|i| ServiceIdentity::parse(i.as_str()).ok()),
                    }
                }));
            }
        }
        out
    }
}

/// HTTP or opaque TCP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1 or HTTP/2 (and gRPC).
    #[default]
    Http,
    /// Bytes, proxied as they are.
    Opaque,
}

/// A route of a destination's profile.
#[derive(Clone, Debug)]
pub struct Route {
    /// Its name (the `route` metrics label).
    pub name: RouteLabel,
    /// Method to match, if any.
    pub method: Option<http::Method>,
    /// Path pattern, anchored at both ends.
    pub path: Option<regex::Regex>,
    /// Request timeout on this route (the whole request, retries included).
    pub timeout: Option<Duration>,
    /// Whether and when its requests are retried (`None`: not retried).
    pub retry: Option<RetryableRoute>,
    /// Each attempt's timeout, when retried (a timed-out attempt is retried).
    pub attempt_timeout: Option<Duration>,
}

impl PartialEq for Route {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.method == o.method
            && self.path.as_ref().map(|r| r.as_str()) == o.path.as_ref().map(|r| r.as_str())
            && self.timeout == o.timeout
            && self.retry == o.retry
            && self.attempt_timeout == o.attempt_timeout
    }
}

impl Route {
    /// Whether the request matches this route.
    pub fn matches<B>(&self, req: &http::Request<B>) -> bool {
        self.method.as_ref().is_none_or(|m| m == req.method())
            && self
                .path
                .as_ref()
                .is_none_or(|p| p.is_match(req.uri().path()))
    }
}

/// One weighted backend of a destination.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Relative weight.
    pub weight: u32,
    /// The endpoints that serve it (a fixed list).
    pub endpoints: Vec<EndpointAddr>,
    /// Or a live set of endpoints kept current by a discovery stream, named by its authority.
    pub live: Option<(String, mesh_balance::discover::EndpointSet)>,
}

impl Backend {
    /// A backend of fixed endpoints.
    pub fn fixed(weight: u32, endpoints: Vec<EndpointAddr>) -> Self {
        Self {
            weight,
            endpoints,
            live: None,
        }
    }

    /// A backend whose endpoints `set` follows (discovery of `authority`).
    pub fn live(weight: u32, authority: &str, set: mesh_balance::discover::EndpointSet) -> Self {
        Self {
            weight,
            endpoints: Vec::new(),
            live: Some((authority.to_string(), set)),
        }
    }
}

impl PartialEq for Backend {
    fn eq(&self, o: &Self) -> bool {
        self.weight == o.weight
            && self.endpoints == o.endpoints
            && self.live.as_ref().map(|(a, _)| a) == o.live.as_ref().map(|(a, _)| a)
    }
}

/// An endpoint: where to connect and who must answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointAddr {
    /// The peer proxy's inbound address.
    pub addr: SocketAddr,
    /// The identity the peer must prove; `None` sends plaintext (an unmeshed endpoint).
    pub identity: Option<ServiceIdentity>,
}

/// A source of destinations.
pub trait Discover: Send + Sync + 'static {
    /// The destination for `authority` (`host:port`), kept current; `None` if unknown.
    fn resolve(&self, authority: &str) -> Option<watch::Receiver<Arc<Destination>>>;

    /// Whether the source has its first answer (the proxy reports ready only then).
    fn is_synced(&self) -> bool {
        true
    }
}

/// Lower-cased, with `:80` added when no port is given.
pub fn normalize_authority(a: &str) -> String {
    let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
    let has_port = a
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port { a } else { format!("{a}:80") }
}
