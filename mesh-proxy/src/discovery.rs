//! Where the proxy learns about destinations: which endpoints serve an authority, with which
//! identity, and the routes (timeouts, retries) and splits of its profile.
//!
//! Discovery is a trait ([`Discover`]) so sources plug in: this module ships the static
//! configuration file ([`StaticDiscovery`]), enough for a pair of proxies with no control plane;
//! the control-plane client (Linkerd's `Destination.Get`/`GetProfile`) implements the same
//! trait. A destination is a `watch` so a source can change it live.
//!
//! The static file is YAML:
//!
//! ```yaml
//! destinations:
//!   - authority: voting.emojivoto:8080          # what the app calls (Host / :authority)
//!     protocol: http                            # http (default) or opaque
//!     timeout: 2s                               # default request timeout (optional)
//!     retry_budget: { ratio: 0.2, min_per_second: 10, ttl: 10s }   # optional
//!     routes:                                   # optional, first match wins
//!       - name: vote
//!         method: POST                          # optional
//!         path_regex: "/emojivoto.v1.VotingService/Vote.*"
//!         timeout: 500ms                        # optional
//!         retryable: true                       # optional: retry even non-idempotent
//!     backends:                                 # one, or several for a weighted split
//!       - weight: 100
//!         endpoints:
//!           - addr: 127.0.0.1:4143
//!             identity: voting.emojivoto.serviceaccount.identity.mesh.cluster.local
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use mesh_core::metrics::RouteLabel;
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
    /// Request timeout on this route.
    pub timeout: Option<Duration>,
    /// Retry even non-idempotent requests.
    pub retryable: bool,
}

impl PartialEq for Route {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.method == o.method
            && self.path.as_ref().map(|r| r.as_str()) == o.path.as_ref().map(|r| r.as_str())
            && self.timeout == o.timeout
            && self.retryable == o.retryable
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Destinations from a YAML file.
#[derive(Debug, Default)]
pub struct StaticDiscovery {
    destinations: HashMap<String, watch::Sender<Arc<Destination>>>,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    path: String,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl StaticDiscovery {
    /// Reads the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&shown, format!("cannot read: {e}")))?;
        Self::from_yaml(&text).map_err(|reason| ConfigError::new(&shown, reason))
    }

    /// Parses the YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let file: FileConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut destinations = HashMap::new();
        for d in file.destinations {
            let dest = d.validate()?;
            let key = normalize_authority(&dest.authority);
            if destinations.contains_key(&key) {
                return Err(format!("destination {} is listed twice", dest.authority));
            }
            destinations.insert(key, watch::channel(Arc::new(dest)).0);
        }
        Ok(Self { destinations })
    }

    /// Adds or replaces a destination (watchers see the change).
    pub fn set(&mut self, dest: Destination) {
        let key = normalize_authority(&dest.authority);
        match self.destinations.get(&key) {
            Some(tx) => {
                tx.send_replace(Arc::new(dest));
            }
            None => {
                self.destinations
                    .insert(key, watch::channel(Arc::new(dest)).0);
            }
        }
    }
}

impl Discover for StaticDiscovery {
    fn resolve(&self, authority: &str) -> Option<watch::Receiver<Arc<Destination>>> {
        self.destinations
            .get(&normalize_authority(authority))
            .map(|tx| tx.subscribe())
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

// === the file format ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    destinations: Vec<DestinationConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationConfig {
    authority: String,
    #[serde(default)]
    protocol: Protocol,
    timeout: Option<String>,
    retry_budget: Option<BudgetConfig>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
    #[serde(default)]
    backends: Vec<BackendConfig>,
    /// Shorthand for one backend.
    #[serde(default)]
    endpoints: Vec<EndpointConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetConfig {
    ratio: f32,
    min_per_second: u32,
    ttl: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    name: String,
    method: Option<String>,
    path_regex: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    retryable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendConfig {
    #[serde(default = "default_weight")]
    weight: u32,
    endpoints: Vec<EndpointConfig>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointConfig {
    addr: String,
    identity: Option<String>,
}

impl DestinationConfig {
    fn validate(self) -> Result<Destination, String> {
        let at = |field: &str| format!("destination {:?}: {field}", self.authority);
        if self.authority.trim().is_empty() {
            return Err("a destination has an empty authority".into());
        }
        let timeout = self
            .timeout
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("{}: {e}", at("timeout")))?;
        let retry_budget = match &self.retry_budget {
            None => None,
            Some(b) => {
                let ttl = parse_duration(&b.ttl)
                    .map_err(|e| format!("{}: {e}", at("retry_budget.ttl")))?;
                mesh_core::retry::RetryBudget::new(b.ratio, b.min_per_second, ttl)
                    .map_err(|e| format!("{}: {e}", at("retry_budget")))?;
                Some((b.ratio, b.min_per_second, ttl))
            }
        };
        let mut routes = Vec::new();
        for r in &self.routes {
            let method = r
                .method
                .as_deref()
                .map(|m| http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                .transpose()
                .map_err(|e| format!("{}: {e}", at(&format!("routes[{}].method", r.name))))?;
            let path = r
                .path_regex
                .as_deref()
                .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
                .transpose()
                .map_err(|e| format!("{}: {e}", at(&format!("routes[{}].path_regex", r.name))))?;
            let timeout = r
                .timeout
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| format!("{}: {e}", at(&format!("routes[{}].timeout", r.name))))?;
            routes.push(Route {
                name: RouteLabel::new(r.name.as_str()),
                method,
                path,
                timeout,
                retryable: r.retryable,
            });
        }
        let mut backends = Vec::new();
        let endpoints = |eps: &[EndpointConfig]| -> Result<Vec<EndpointAddr>, String> {
            eps.iter()
                .map(|e| {
                    let addr = e.addr.parse().map_err(|err| {
                        format!(
                            "{}: {err}; give IP:PORT",
                            at(&format!("endpoint {:?}", e.addr))
                        )
                    })?;
                    let identity = e
                        .identity
                        .as_deref()
                        .map(ServiceIdentity::parse)
                        .transpose()
                        .map_err(|err| format!("{}: {err}", at("endpoint identity")))?;
                    Ok(EndpointAddr { addr, identity })
                })
                .collect()
        };
        if !self.endpoints.is_empty() {
            backends.push(Backend::fixed(1, endpoints(&self.endpoints)?));
        }
        for b in &self.backends {
            backends.push(Backend::fixed(b.weight, endpoints(&b.endpoints)?));
        }
        if backends.is_empty() {
            return Err(format!("{} with no endpoints or backends", at("")));
        }
        Ok(Destination {
            authority: self.authority.trim().to_string(),
            protocol: self.protocol,
            timeout,
            retry_budget,
            routes,
            backends,
        })
    }
}

/// Parses `250ms`, `2s`, `1m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}; use e.g. 250ms, 2s, 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}; use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=365.0 * 24.0 * 3600.0).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let d = StaticDiscovery::from_yaml(
            r#"
destinations:
  - authority: voting.emojivoto:8080
    timeout: 2s
    retry_budget: { ratio: 0.2, min_per_second: 10, ttl: 10s }
    routes:
      - name: vote
        method: post
        path_regex: "/vote/.*"
        timeout: 500ms
        retryable: true
    backends:
      - weight: 90
        endpoints:
          - addr: 127.0.0.1:4143
            identity: voting.emojivoto.serviceaccount.identity.mesh.cluster.local
      - weight: 10
        endpoints: [{ addr: "127.0.0.1:4144" }]
  - authority: redis
    protocol: opaque
    endpoints: [{ addr: "127.0.0.1:6379" }]
"#,
        )
        .unwrap();
        let v = d.resolve("Voting.Emojivoto:8080").unwrap();
        let v = v.borrow();
        assert_eq!(v.timeout, Some(Duration::from_secs(2)));
        assert_eq!(v.backends.len(), 2);
        assert_eq!(v.routes[0].method, Some(http::Method::POST));
        let req = http::Request::post("/vote/doughnut").body(()).unwrap();
        assert!(v.routes[0].matches(&req));
        let req = http::Request::post("/x/vote/doughnut").body(()).unwrap();
        assert!(!v.routes[0].matches(&req), "anchored");
        assert_eq!(
            d.resolve("redis:80").unwrap().borrow().protocol,
            Protocol::Opaque
        );
        assert!(d.resolve("unknown:80").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        for (yaml, needle) in [
            (
                "destinations: [{authority: a, endpoints: [{addr: nope}]}]",
                "give IP:PORT",
            ),
            (
                "destinations: [{authority: a, timeout: soon, endpoints: [{addr: '1.2.3.4:5'}]}]",
                "timeout",
            ),
            ("destinations: [{authority: a}]", "no endpoints"),
            (
                "destinations: [{authority: a, endpoints: [{addr: '1.2.3.4:5', identity: 'x y'}]}]",
                "identity",
            ),
            (
                "destinations: [{authority: a, bogus: 1, endpoints: [{addr: '1.2.3.4:5'}]}]",
                "bogus",
            ),
        ] {
            let e = StaticDiscovery::from_yaml(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} accepted"));
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
    }
}
