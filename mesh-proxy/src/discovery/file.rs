//! Destinations from a static file: enough for a pair of proxies with no control plane.
//!
//! The file is JSON (the sidecar links no YAML parser; `mesh.yaml` is the control plane's):
//!
//! ```json
//! {"destinations": [{
//!   "authority": "voting.emojivoto:8080",
//!   "protocol": "http",
//!   "timeout": "2s",
//!   "retry_budget": {"ratio": 0.2, "min_per_second": 10, "ttl": "10s"},
//!   "routes": [{"name": "vote", "method": "POST",
//!               "path_regex": "/emojivoto.v1.VotingService/Vote.*",
//!               "timeout": "2s",
//!               "retry": {"limit": 2, "timeout": "300ms", "http": ["5xx"],
//!                         "grpc": ["unavailable"]}}],
//!   "failure_accrual": {"consecutive_failures": 5,
//!                       "backoff": {"min": "1s", "max": "60s", "jitter": 0.5}},
//!   "backends": [{"weight": 100, "endpoints": [
//!     {"addr": "127.0.0.1:4143",
//!      "identity": "voting.emojivoto.serviceaccount.identity.mesh.cluster.local"}]}]
//! }]}
//! ```
//!
//! - `authority`: what the app calls (`Host` / `:authority`); `:80` when no port is given.
//! - `protocol`: `http` (default) or `opaque`.
//! - `timeout`, `retry_budget`, `routes`, `failure_accrual`: optional. Routes match in order,
//!   the first wins; a path pattern is anchored at both ends. A route's `retry` (Linkerd 2.16's
//!   HTTPRoute retries) retries its requests whatever their method: on the `http` statuses
//!   (`5xx`, `429`, `500-504`) and `grpc` codes given (else what the classifier calls a
//!   failure), on connection errors, and on attempts that exceed the per-try `timeout`, at most
//!   `limit` times, within the retry budget; `"retryable": true` is the same without
//!   conditions. `failure_accrual` ejects an endpoint after consecutive failures and probes it
//!   again after the backoff.
//! - `backends`: one, or several for a weighted split; `endpoints` is shorthand for one backend.
//!   An endpoint without an `identity` is unmeshed and gets plaintext.
//!
//! Durations are written as everywhere in the mesh (`250ms`, `2s`, `1m30s`). Every error names
//! the destination and the field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mesh_core::BoxError;
use mesh_core::metrics::RouteLabel;
use mesh_core::retry::RetryableRoute;
use mesh_tls::ServiceIdentity;
use serde::Deserialize;
use tokio::sync::watch;

use super::{Backend, Destination, Discover, EndpointAddr, Protocol, Route, normalize_authority};

/// Destinations from a JSON file (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct StaticDiscovery {
    destinations: HashMap<String, watch::Sender<Arc<Destination>>>,
}

/// The destinations file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DestinationsError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The text is not a destinations document.
    #[error(
        "{}not a destinations file: {source}; see `mesh-proxy --help` for the format (JSON)",
        path_prefix(path)
    )]
    Syntax {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The JSON error (with line and column).
        source: serde_json::Error,
    },
    /// A field is wrong.
    #[error("{}destination {authority:?}: {field}: {source}", path_prefix(path))]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The destination's authority.
        authority: String,
        /// The field.
        field: String,
        /// What is wrong with it.
        source: BoxError,
    },
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl DestinationsError {
    fn in_file(mut self, file: &Path) -> Self {
        match &mut self {
            Self::Syntax { path, .. } | Self::Invalid { path, .. } => *path = Some(file.to_owned()),
            Self::Read { .. } => {}
        }
        self
    }
}

/// A field's value is not acceptable; the text says what is expected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unacceptable(&'static str);

impl StaticDiscovery {
    /// Reads the file.
    pub fn load(path: &Path) -> Result<Self, DestinationsError> {
        let text = std::fs::read_to_string(path).map_err(|source| DestinationsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| e.in_file(path))
    }

    /// Parses the JSON text.
    pub fn from_json(text: &str) -> Result<Self, DestinationsError> {
        let file: FileConfig = serde_json::from_str(text)
            .map_err(|source| DestinationsError::Syntax { path: None, source })?;
        let mut destinations = HashMap::new();
        for d in file.destinations {
            let dest = d.validate()?;
            let key = normalize_authority(&dest.authority);
            if destinations.contains_key(&key) {
                return Err(DestinationsError::Invalid {
                    path: None,
                    authority: dest.authority,
                    field: "authority".into(),
                    source: Box::new(Unacceptable("listed twice")),
                });
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
    failure_accrual: Option<AccrualConfig>,
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
    retry: Option<RetryConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryConfig {
    limit: Option<u32>,
    timeout: Option<String>,
    #[serde(default)]
    http: Vec<String>,
    #[serde(default)]
    grpc: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccrualConfig {
    consecutive_failures: u32,
    backoff: Option<AccrualBackoff>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccrualBackoff {
    min: String,
    max: String,
    #[serde(default = "default_jitter")]
    jitter: f64,
}

fn default_jitter() -> f64 {
    0.5
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
    fn validate(self) -> Result<Destination, DestinationsError> {
        let authority = self.authority.trim().to_owned();
        let invalid = |field: String, source: BoxError| DestinationsError::Invalid {
            path: None,
            authority: authority.clone(),
            field,
            source,
        };
        if authority.is_empty() {
            return Err(invalid(
                "authority".into(),
                Box::new(Unacceptable(
                    "empty; give the name the app calls, host:port",
                )),
            ));
        }
        let duration = |field: String, text: &Option<String>| {
            text.as_deref()
                .map(mesh_core::duration::parse)
                .transpose()
                .map_err(|e| invalid(field, Box::new(e)))
        };
        let timeout = duration("timeout".into(), &self.timeout)?;
        let retry_budget = match &self.retry_budget {
            None => None,
            Some(b) => {
                let ttl = mesh_core::duration::parse(&b.ttl)
                    .map_err(|e| invalid("retry_budget.ttl".into(), Box::new(e)))?;
                mesh_core::retry::RetryBudget::new(b.ratio, b.min_per_second, ttl)
                    .map_err(|e| invalid("retry_budget".into(), Box::new(e)))?;
                Some((b.ratio, b.min_per_second, ttl))
            }
        };
        let mut routes = Vec::new();
        for r in &self.routes {
            let at = |field: &str| format!("routes[{}].{field}", r.name);
            let method = r
                .method
                .as_deref()
                .map(|m| http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                .transpose()
                .map_err(|e| invalid(at("method"), Box::new(e)))?;
            let path = r
                .path_regex
                .as_deref()
                .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
                .transpose()
                .map_err(|e| invalid(at("path_regex"), Box::new(e)))?;
            let (retry, attempt_timeout) = match &r.retry {
                None => (r.retryable.then(RetryableRoute::new), None),
                Some(c) => {
                    let mut retry = RetryableRoute::new();
                    if let Some(limit) = c.limit {
                        retry = retry.limit(limit);
                    }
                    let statuses = c
                        .http
                        .iter()
                        .map(|s| mesh_core::retry::status_range(s))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| invalid(at("retry.http"), Box::new(e)))?;
                    let codes = c
                        .grpc
                        .iter()
                        .map(|s| mesh_core::retry::grpc_code(s))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| invalid(at("retry.grpc"), Box::new(e)))?;
                    retry = retry.on_statuses(statuses).on_grpc(codes);
                    (Some(retry), duration(at("retry.timeout"), &c.timeout)?)
                }
            };
            routes.push(Route {
                name: RouteLabel::new(r.name.as_str()),
                method,
                path,
                timeout: duration(at("timeout"), &r.timeout)?,
                retry,
                attempt_timeout,
            });
        }
        let endpoints = |eps: &[EndpointConfig]| -> Result<Vec<EndpointAddr>, DestinationsError> {
            eps.iter()
                .map(|e| {
                    let addr = e.addr.parse().map_err(|_| {
                        invalid(
                            format!("endpoint {:?}", e.addr),
                            Box::new(Unacceptable("not an address; give IP:PORT")),
                        )
                    })?;
                    let identity = e
                        .identity
                        .as_deref()
                        .map(ServiceIdentity::parse)
                        .transpose()
                        .map_err(|err| {
                            invalid(format!("endpoint {:?} identity", e.addr), Box::new(err))
                        })?;
                    Ok(EndpointAddr { addr, identity })
                })
                .collect()
        };
        let mut backends = Vec::new();
        if !self.endpoints.is_empty() {
            backends.push(Backend::fixed(1, endpoints(&self.endpoints)?));
        }
        for b in &self.backends {
            backends.push(Backend::fixed(b.weight, endpoints(&b.endpoints)?));
        }
        if backends.is_empty() {
            return Err(invalid(
                "endpoints".into(),
                Box::new(Unacceptable("no endpoints or backends")),
            ));
        }
        let failure_accrual = match &self.failure_accrual {
            None => None,
            Some(a) => {
                let mut accrual = mesh_balance::FailureAccrual::consecutive(a.consecutive_failures);
                if let Some(b) = &a.backoff {
                    let min = mesh_core::duration::parse(&b.min)
                        .map_err(|e| invalid("failure_accrual.backoff.min".into(), Box::new(e)))?;
                    let max = mesh_core::duration::parse(&b.max)
                        .map_err(|e| invalid("failure_accrual.backoff.max".into(), Box::new(e)))?;
                    accrual = accrual.with_backoff(
                        mesh_core::backoff::Backoff::new(min, max).with_jitter(b.jitter),
                    );
                }
                Some(accrual)
            }
        };
        Ok(Destination {
            authority,
            protocol: self.protocol,
            timeout,
            retry_budget,
            failure_accrual,
            routes,
            backends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_a_full_file() {
        let d = StaticDiscovery::from_json(
            r#"{"destinations": [
  {"authority": "voting.emojivoto:8080",
   "timeout": "2s",
   "retry_budget": {"ratio": 0.2, "min_per_second": 10, "ttl": "10s"},
   "routes": [{"name": "vote", "method": "post", "path_regex": "/vote/.*",
               "timeout": "500ms", "retryable": true},
              {"name": "list", "retry": {"limit": 2, "timeout": "100ms", "http": ["5xx", "429"]}}],
   "failure_accrual": {"consecutive_failures": 3, "backoff": {"min": "1s", "max": "5s"}},
   "backends": [
     {"weight": 90, "endpoints": [{"addr": "127.0.0.1:4143",
        "identity": "voting.emojivoto.serviceaccount.identity.mesh.cluster.local"}]},
     {"weight": 10, "endpoints": [{"addr": "127.0.0.1:4144"}]}]},
  {"authority": "redis", "protocol": "opaque", "endpoints": [{"addr": "127.0.0.1:6379"}]}
]}"#,
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
        assert_eq!(v.routes[0].retry, Some(RetryableRoute::new()));
        let list = &v.routes[1];
        let retry = list.retry.as_ref().expect("list retries");
        assert_eq!(retry.max_retries(), Some(2));
        assert!(retry.retries_status(http::StatusCode::TOO_MANY_REQUESTS, None));
        assert_eq!(list.attempt_timeout, Some(Duration::from_millis(100)));
        assert_eq!(v.failure_accrual.map(|a| a.max_failures()), Some(3));
        assert_eq!(
            d.resolve("redis:80").unwrap().borrow().protocol,
            Protocol::Opaque
        );
        assert!(d.resolve("unknown:80").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        for (json, needle) in [
            (
                r#"{"destinations": [{"authority": "a", "endpoints": [{"addr": "nope"}]}]}"#,
                "give IP:PORT",
            ),
            (
                r#"{"destinations": [{"authority": "a", "timeout": "soon", "endpoints": [{"addr": "1.2.3.4:5"}]}]}"#,
                "timeout: invalid duration",
            ),
            (r#"{"destinations": [{"authority": "a"}]}"#, "no endpoints"),
            (
                r#"{"destinations": [{"authority": "a", "endpoints": [{"addr": "1.2.3.4:5", "identity": "x y"}]}]}"#,
                "identity",
            ),
            (
                r#"{"destinations": [{"authority": "a", "bogus": 1, "endpoints": [{"addr": "1.2.3.4:5"}]}]}"#,
                "bogus",
            ),
            (
                "destinations:\n  - authority: a\n",
                "not a destinations file",
            ),
        ] {
            let e = StaticDiscovery::from_json(json)
                .err()
                .unwrap_or_else(|| panic!("{json} accepted"))
                .to_string();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn a_file_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dst.json");
        std::fs::write(&path, r#"{"destinations": [{"authority": "a"}]}"#).unwrap();
        let e = StaticDiscovery::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        let e = StaticDiscovery::load(&dir.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
