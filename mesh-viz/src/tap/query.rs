//! What to tap ([`TapQuery`]), and how it becomes the workloads to ask and the
//! `ObserveRequest` to send them.

use std::net::SocketAddr;

use linkerd2_proxy_api::http_types::HttpMethod;
use linkerd2_proxy_api::net::TcpAddress;
use linkerd2_proxy_api::tap::ObserveRequest;
use linkerd2_proxy_api::tap::observe_request::Match;
use linkerd2_proxy_api::tap::observe_request::r#match::{self as pb, http::string_match, tcp};
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};

use super::workload::Workload;
use crate::QueryError;
use mesh_control::catalog::{ServiceRef, Snapshot};

/// The requests rate `tap` and `top` default to, as Linkerd's `--max-rps`.
pub const DEFAULT_MAX_RPS: f64 = 100.0;

/// What to tap: the query string of `GET /api/tap`, and what `mesh tap`/`mesh top` build from
/// their flags.
///
/// ```
/// use mesh_viz::tap::TapQuery;
///
/// let q = TapQuery::new("emojivoto", "deploy/web").path("/api/vote").method("POST").limit(10);
/// assert_eq!(
///     q.to_query_string(),
///     "namespace=emojivoto&resource=deploy%2Fweb&path=%2Fapi%2Fvote&method=POST&limit=10"
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TapQuery {
    /// The namespace of `resource` (and of `to`, unless `to_namespace` is given).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// What to tap: `deploy/NAME` (also `deployment/`, `workload/`, `po/`, `pod/`): one
    /// workload; `deploy`: every workload of the namespace; `ns/NAME`: every workload of
    /// namespace NAME.
    pub resource: String,
    /// Only requests to this: `deploy/NAME` (the services the workload serves), `svc/NAME`, or
    /// `ns/NAME` (every service of the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The namespace of `to`. Default is `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_namespace: Option<String>,
    /// Only requests whose path starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only requests with this method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Only requests with exactly this `:authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// At most this many requests per second, over all the tapped proxies; the rest are
    /// skipped. Default is [`DEFAULT_MAX_RPS`] (Linkerd's); 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rps: Option<f64>,
    /// End the stream after this many requests (each a `req`, `rsp` and `end` event), once
    /// they have ended. Default is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// A parsed resource: `TYPE[/NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    /// One workload, or every workload of the namespace.
    Workload(Option<String>),
    /// Every workload of a namespace.
    Namespace(String),
    /// A service (only as a `to`).
    Service(String),
}

fn default_namespace() -> String {
    "default".to_owned()
}

// === impl TapQuery ===

impl TapQuery {
    /// Taps `resource` in `namespace`, with no filter and the default rate limit.
    pub fn new(namespace: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            resource: resource.into(),
            ..Self::default()
        }
    }

    /// Only requests to `resource` (`deploy/NAME`, `svc/NAME`, `ns/NAME`).
    pub fn to(mut self, resource: impl Into<String>) -> Self {
        self.to = Some(resource.into());
        self
    }

    /// Only requests whose path starts with `prefix`.
    pub fn path(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(prefix.into());
        self
    }

    /// Only requests with `method`.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Only requests with exactly this `:authority`.
    pub fn authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// At most `rps` requests per second (0: no limit).
    pub fn max_rps(mut self, rps: f64) -> Self {
        self.max_rps = Some(rps);
        self
    }

    /// End after `n` requests.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// The query string of `GET /api/tap` for this query (unset fields left out).
    pub fn to_query_string(&self) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("namespace", self.namespace.clone()),
            ("resource", self.resource.clone()),
        ];
        let optional = [
            ("to", self.to.clone()),
            ("to_namespace", self.to_namespace.clone()),
            ("path", self.path.clone()),
            ("method", self.method.clone()),
            ("authority", self.authority.clone()),
            ("max_rps", self.max_rps.map(|r| r.to_string())),
            ("limit", self.limit.map(|n| n.to_string())),
        ];
        pairs.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, crate::URL_COMPONENT)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The workloads this query taps, out of `all`.
    pub(crate) fn select<'a>(&self, all: &'a [Workload]) -> Result<Vec<&'a Workload>, QueryError> {
        let resource = Resource::parse(&self.resource)?;
        let (namespace, name) = match &resource {
            Resource::Workload(name) => (self.namespace.as_str(), name.as_deref()),
            Resource::Namespace(ns) => (ns.as_str(), None),
            Resource::Service(_) => {
                return Err(QueryError::invalid(format!(
                    "cannot tap {}: services are only supported as a `to` resource; tap the \
                     workloads that serve it (deploy/NAME)",
                    self.resource
                )));
            }
        };
        let selected: Vec<&Workload> = all
            .iter()
            .filter(|w| w.namespace == namespace && name.is_none_or(|n| w.name == n))
            .collect();
        if selected.is_empty() {
            return Err(QueryError::not_found(match name {
                Some(name) => format!(
                    "no running workload {name} in namespace {namespace} (start it with `mesh run --name {name} --namespace {namespace}`)"
                ),
                None => format!("no running workloads in namespace {namespace}"),
            }));
        }
        Ok(selected)
    }

    /// The request limit, rate limit and `ObserveRequest` for this query. `snapshot` (the
    /// catalog) tells which services a `to` workload serves; `workloads` tell where it listens.
    pub(crate) fn observe_request(
        &self,
        snapshot: Option<&Snapshot>,
        workloads: &[Workload],
    ) -> Result<ObserveRequest, QueryError> {
        let mut all = Vec::new();
        if let Some(to) = &self.to {
            all.push(self.to_match(to, snapshot, workloads)?);
        }
        if let Some(path) = &self.path {
            all.push(http_match(pb::http::Match::Path(prefix(path))));
        }
        if let Some(method) = &self.method {
            let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| QueryError::invalid(format!("invalid method {method:?}")))?;
            all.push(http_match(pb::http::Match::Method(HttpMethod::from(
                method,
            ))));
        }
        if let Some(authority) = &self.authority {
            all.push(http_match(pb::http::Match::Authority(exact(authority))));
        }
        if let Some(rps) = self.max_rps
            && !(rps.is_finite() && rps >= 0.0)
        {
            return Err(QueryError::invalid(format!(
                "max_rps must be a number of requests per second, not {rps}"
            )));
        }
        Ok(ObserveRequest {
            limit: self
                .limit
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            r#match: (!all.is_empty()).then_some(Match {
                r#match: Some(pb::Match::All(pb::Seq { matches: all })),
            }),
            extract: None,
        })
    }

    /// The rate limit in requests per second, if any.
    pub(crate) fn rate_limit(&self) -> Option<f64> {
        match self.max_rps.unwrap_or(DEFAULT_MAX_RPS) {
            r if r > 0.0 => Some(r),
            _ => None,
        }
    }

    /// Requests to `to`: to the services it names, or to where its workloads listen.
    fn to_match(
        &self,
        to: &str,
        snapshot: Option<&Snapshot>,
        workloads: &[Workload],
    ) -> Result<Match, QueryError> {
        let to_ns = self.to_namespace.as_deref().unwrap_or(&self.namespace);
        let mut services: Vec<ServiceRef> = Vec::new();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        match Resource::parse(to)? {
            Resource::Service(name) => services.push(ServiceRef::new(name, to_ns)),
            Resource::Workload(None) => {
                return Err(QueryError::invalid(format!(
                    "`to` needs a name: deploy/NAME, svc/NAME or ns/NAME, not {to:?}"
                )));
            }
            Resource::Workload(Some(name)) => {
                if let Some(snapshot) = snapshot {
                    services.extend(
                        snapshot
                            .services
                            .values()
                            .filter(|s| s.name.namespace == to_ns && s.selects(&name))
                            .map(|s| s.name.clone()),
                    );
                }
                if services.is_empty() {
                    // Nothing in the catalog says which services it serves: its own name.
                    services.push(ServiceRef::new(name.clone(), to_ns));
                }
                addrs.extend(
                    workloads
                        .iter()
                        .filter(|w| w.namespace == to_ns && w.name == name)
                        .filter_map(|w| w.inbound),
                );
            }
            Resource::Namespace(ns) => {
                if let Some(snapshot) = snapshot {
                    services.extend(
                        snapshot
                            .services
                            .keys()
                            .filter(|s| s.namespace == ns)
                            .cloned(),
                    );
                }
                for w in workloads.iter().filter(|w| w.namespace == ns) {
                    services.push(ServiceRef::new(w.name.clone(), ns.clone()));
                    addrs.extend(w.inbound);
                }
                if services.is_empty() {
                    return Err(QueryError::invalid(format!(
                        "no services or workloads known in namespace {ns}"
                    )));
                }
            }
        }
        services.sort();
        services.dedup();
        let mut any = Vec::new();
        for svc in &services {
            // `name.ns`, `name.ns:port`, `name.ns.svc.<domain>[:port]`; and the short forms
            // `name`, `name:port` from clients in the same namespace.
            let full = format!("{}.{}", svc.name, svc.namespace);
            any.push(http_match(pb::http::Match::Authority(exact(&full))));
            any.push(http_match(pb::http::Match::Authority(prefix(&format!(
                "{full}:"
            )))));
            any.push(http_match(pb::http::Match::Authority(prefix(&format!(
                "{full}."
            )))));
            if svc.namespace == self.namespace {
                any.push(http_match(pb::http::Match::Authority(exact(&svc.name))));
                any.push(http_match(pb::http::Match::Authority(prefix(&format!(
                    "{}:",
                    svc.name
                )))));
            }
        }
        for addr in addrs {
            any.push(Match {
                r#match: Some(pb::Match::All(pb::Seq {
                    matches: vec![
                        destination(tcp::Match::Netmask(tcp::Netmask {
                            ip: TcpAddress::from(addr).ip,
                            mask: if addr.is_ipv4() { 32 } else { 128 },
                        })),
                        destination(tcp::Match::Ports(tcp::PortRange {
                            min: u32::from(addr.port()),
                            max: u32::from(addr.port()),
                        })),
                    ],
                })),
            });
        }
        Ok(Match {
            r#match: Some(pb::Match::Any(pb::Seq { matches: any })),
        })
    }
}

fn http_match(m: pb::http::Match) -> Match {
    Match {
        r#match: Some(pb::Match::Http(pb::Http { r#match: Some(m) })),
    }
}

fn destination(m: tcp::Match) -> Match {
    Match {
        r#match: Some(pb::Match::Destination(pb::Tcp { r#match: Some(m) })),
    }
}

fn prefix(s: &str) -> pb::http::StringMatch {
    pb::http::StringMatch {
        r#match: Some(string_match::Match::Prefix(s.to_owned())),
    }
}

fn exact(s: &str) -> pb::http::StringMatch {
    pb::http::StringMatch {
        r#match: Some(string_match::Match::Exact(s.to_owned())),
    }
}

// === impl Resource ===

impl Resource {
    pub(crate) fn parse(s: &str) -> Result<Self, QueryError> {
        let (kind, name) = match s.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (s, None),
        };
        let name = match name {
            Some("") => {
                return Err(QueryError::invalid(format!(
                    "{s:?} has an empty name; use TYPE or TYPE/NAME"
                )));
            }
            Some(n) if n.contains('/') => {
                return Err(QueryError::invalid(format!(
                    "{s:?} is not TYPE or TYPE/NAME"
                )));
            }
            other => other.map(str::to_owned),
        };
        match kind {
            "deploy" | "deployment" | "deployments" | "workload" | "workloads" | "po" | "pod"
            | "pods" => Ok(Resource::Workload(name)),
            "ns" | "namespace" | "namespaces" => name
                .map(Resource::Namespace)
                .ok_or_else(|| QueryError::invalid("ns needs a name: ns/NAME")),
            "svc" | "service" | "services" => name
                .map(Resource::Service)
                .ok_or_else(|| QueryError::invalid("svc needs a name: svc/NAME")),
            other => Err(QueryError::invalid(format!(
                "unknown resource type {other:?} in {s:?}: use deploy, deploy/NAME, ns/NAME or (for `to`) svc/NAME"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_as_linkerd_spells_them() {
        assert_eq!(
            Resource::parse("deploy/web").ok(),
            Some(Resource::Workload(Some("web".into())))
        );
        assert_eq!(
            Resource::parse("deploy").ok(),
            Some(Resource::Workload(None))
        );
        assert_eq!(
            Resource::parse("ns/emojivoto").ok(),
            Some(Resource::Namespace("emojivoto".into()))
        );
        assert_eq!(
            Resource::parse("svc/voting-svc").ok(),
            Some(Resource::Service("voting-svc".into()))
        );
        for bad in ["deploy/", "ns", "cronjob/x", "deploy/a/b"] {
            assert!(Resource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_strings_are_encoded_and_decoded_back() {
        let q = TapQuery::new("emojivoto", "deploy/web")
            .to("deploy/voting")
            .path("/api/vote?x=1&y")
            .max_rps(2.5);
        let s = q.to_query_string();
        assert_eq!(
            s,
            "namespace=emojivoto&resource=deploy%2Fweb&to=deploy%2Fvoting&path=%2Fapi%2Fvote%3Fx%3D1%26y&max_rps=2.5"
        );
    }

    #[test]
    fn rate_limits_default_to_linkerds_and_zero_means_none() {
        let q = TapQuery::new("ns", "deploy");
        assert_eq!(q.rate_limit(), Some(DEFAULT_MAX_RPS));
        assert_eq!(q.clone().max_rps(0.0).rate_limit(), None);
        assert_eq!(q.max_rps(3.0).rate_limit(), Some(3.0));
    }
}
