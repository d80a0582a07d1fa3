//! The questions `stat`, `edges` and `routes` ask, independent of where the numbers come from.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::QueryError;

/// The window queries look at by default: one minute, as Linkerd's `-t`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// What a row stands for.
///
/// In local mode a workload started by `mesh run` is at once a deployment, its service and
/// its (only) pod, so `deploy`, `svc` and `po` all name workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A workload (`deploy`, `deployment`, `svc`, `service`, `po`, `pod`).
    Deployment,
    /// A namespace (`ns`, `namespace`).
    Namespace,
}

impl ResourceKind {
    /// `deployment` or `namespace`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::Namespace => "namespace",
        }
    }

    /// `deploy` or `ns`.
    pub fn short(&self) -> &'static str {
        match self {
            Self::Deployment => "deploy",
            Self::Namespace => "ns",
        }
    }
}

impl FromStr for ResourceKind {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "deploy" | "deployment" | "deployments" | "svc" | "service" | "services" | "po"
            | "pod" | "pods" | "workload" | "workloads" => Self::Deployment,
            "ns" | "namespace" | "namespaces" => Self::Namespace,
            other => {
                return Err(QueryError::invalid(format!(
                    "unknown resource type {other:?}: use deploy, svc, po or ns"
                )));
            }
        })
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource type and, optionally, a name: `deploy`, `deploy/web`, `ns/emojivoto`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The type.
    pub kind: ResourceKind,
    /// The name; `None` for every resource of the type.
    pub name: Option<String>,
}

impl Resource {
    /// Every resource of a type.
    pub fn all(kind: ResourceKind) -> Self {
        Self { kind, name: None }
    }

    /// One named resource.
    pub fn named(kind: ResourceKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: Some(name.into()),
        }
    }

    /// The workload `deploy/<name>`.
    pub fn deploy(name: impl Into<String>) -> Self {
        Self::named(ResourceKind::Deployment, name)
    }
}

impl FromStr for Resource {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let kind = kind.parse()?;
        match name {
            Some("") => Err(QueryError::invalid(format!(
                "{s:?}: a name is expected after the '/'"
            ))),
            Some(n) if n.contains('/') => Err(QueryError::invalid(format!(
                "{s:?}: write TYPE or TYPE/NAME, e.g. deploy/web"
            ))),
            name => Ok(Self {
                kind,
                name: name.map(str::to_string),
            }),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{n}", self.kind.short()),
            None => f.write_str(self.kind.short()),
        }
    }
}

/// The other end of a `--from`/`--to` filter: a resource, and its namespace (`None`: the
/// query's namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The resource.
    pub resource: Resource,
    /// Its namespace; `None` for the query's namespace (ignored for a namespace resource).
    pub namespace: Option<String>,
}

impl Target {
    /// A target in the query's namespace.
    pub fn new(resource: Resource) -> Self {
        Self {
            resource,
            namespace: None,
        }
    }

    /// A target in `namespace`.
    pub fn in_namespace(mut self, namespace: impl Into<Option<String>>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The namespace the target lives in, given the query's.
    pub(crate) fn ns<'a>(&'a self, query_ns: Option<&'a str>) -> Option<&'a str> {
        match self.resource.kind {
            ResourceKind::Namespace => self.resource.name.as_deref(),
            ResourceKind::Deployment => self.namespace.as_deref().or(query_ns),
        }
    }

    /// The workload name the target names, if any.
    pub(crate) fn workload(&self) -> Option<&str> {
        match self.resource.kind {
            ResourceKind::Namespace => None,
            ResourceKind::Deployment => self.resource.name.as_deref(),
        }
    }
}

/// `mesh stat`: golden metrics per workload or namespace.
///
/// Without `from`/`to`, the numbers are each workload's **inbound** traffic (what it serves),
/// as Linkerd's. A workload that served nothing in the window but sent requests (a load
/// generator) shows its **outbound** numbers instead, and its row says so
/// ([`StatRow::direction`](super::StatRow::direction)); Linkerd would show `-` there.
///
/// With `to`, rows are the sources and the numbers their outbound traffic to the target;
/// with `from`, rows are the destinations and the numbers the source's outbound traffic to
/// each (Linkerd's semantics: both are measured on the client's proxy). Only rows with traffic
/// are listed then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatQuery {
    /// What the rows are.
    pub resource: Resource,
    /// The namespace to look in; `None` for all (`-A`). Ignored by namespace rows.
    pub namespace: Option<String>,
    /// How far back rates, success and latency look. Default is [`DEFAULT_WINDOW`].
    pub window: Duration,
    /// Only traffic from this resource (`--from`).
    pub from: Option<Target>,
    /// Only traffic to this resource (`--to`).
    pub to: Option<Target>,
    /// List workloads whose proxy is not ready too (Linkerd hides them). Default is false.
    pub include_unmeshed: bool,
}

impl StatQuery {
    /// Stats of `resource` in every namespace, over the default window.
    pub fn new(resource: Resource) -> Self {
        Self {
            resource,
            namespace: None,
            window: DEFAULT_WINDOW,
            from: None,
            to: None,
            include_unmeshed: false,
        }
    }

    /// Only in `namespace`.
    pub fn namespace(mut self, namespace: impl Into<Option<String>>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Over `window`.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Only traffic from `from`.
    pub fn from(mut self, from: impl Into<Option<Target>>) -> Self {
        self.from = from.into();
        self
    }

    /// Only traffic to `to`.
    pub fn to(mut self, to: impl Into<Option<Target>>) -> Self {
        self.to = to.into();
        self
    }

    /// Lists unmeshed workloads too.
    pub fn include_unmeshed(mut self, include: bool) -> Self {
        self.include_unmeshed = include;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), QueryError> {
        check_window(self.window)?;
        if self.from.is_some() && self.to.is_some() {
            return Err(QueryError::invalid(
                "--to and --from are mutually exclusive",
            ));
        }
        Ok(())
    }
}

impl StatQuery {
    /// The row `(namespace, name)` a workload belongs to, if the query lists it.
    pub(crate) fn row_of(&self, namespace: &str, name: &str) -> Option<(String, String)> {
        let ns_filter = self.namespace.as_deref();
        let name_filter = self.resource.name.as_deref();
        match self.resource.kind {
            ResourceKind::Deployment => {
                if ns_filter.is_some_and(|f| f != namespace)
                    || name_filter.is_some_and(|f| f != name)
                {
                    return None;
                }
                Some((namespace.to_string(), name.to_string()))
            }
            ResourceKind::Namespace => {
                if name_filter.or(ns_filter).is_some_and(|f| f != namespace) {
                    return None;
                }
                Some((namespace.to_string(), namespace.to_string()))
            }
        }
    }

    /// Whether a finished row is listed: with `--to`/`--from` only rows with traffic (as
    /// Linkerd); otherwise only rows with a meshed workload, unless asked for all.
    pub(crate) fn keeps(&self, row: &super::StatRow) -> bool {
        if (self.to.is_some() || self.from.is_some()) && !row.has_traffic() {
            return false;
        }
        row.meshed.meshed > 0 || self.include_unmeshed || self.from.is_some()
    }
}

/// `mesh edges`: who talks to whom, and whether over mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgesQuery {
    /// Only edges with an end in this namespace; `None` for all.
    pub namespace: Option<String>,
    /// The window of the edges' rates. Default is [`DEFAULT_WINDOW`]. An edge is listed if
    /// any request crossed it since the destination's proxy started, as Linkerd's.
    pub window: Duration,
}

impl EdgesQuery {
    /// Edges with an end in `namespace` (`None`: all).
    pub fn new(namespace: impl Into<Option<String>>) -> Self {
        Self {
            namespace: namespace.into(),
            window: DEFAULT_WINDOW,
        }
    }

    /// Over `window`.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
}

/// `mesh routes`: golden metrics per route of a service.
///
/// Without `to`, the routes the service serves (its inbound traffic); with `to`, the routes
/// of its calls to another service (its outbound traffic), where the `EFFECTIVE_*` columns
/// count what the application saw and `ACTUAL_*` every attempt, retries included. Without
/// `to`, `EFFECTIVE_*`/`ACTUAL_*` are measured on the clients' proxies. Traffic on no route
/// the proxy labels (and all of it, while proxies label no routes) is the `[DEFAULT]` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutesQuery {
    /// The service (a workload, in local mode).
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// Routes of the calls to this service instead.
    pub to: Option<Target>,
    /// The window. Default is [`DEFAULT_WINDOW`].
    pub window: Duration,
}

impl RoutesQuery {
    /// Routes of `service` in `namespace`.
    pub fn new(service: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            namespace: namespace.into(),
            to: None,
            window: DEFAULT_WINDOW,
        }
    }

    /// Routes of the calls to `to`.
    pub fn to(mut self, to: impl Into<Option<Target>>) -> Self {
        self.to = to.into();
        self
    }

    /// Over `window`.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
}

/// The name of the row of traffic on no labelled route.
pub const DEFAULT_ROUTE: &str = "[DEFAULT]";

pub(crate) fn check_window(window: Duration) -> Result<(), QueryError> {
    if window.is_zero() {
        return Err(QueryError::invalid("the window must be longer than 0s"));
    }
    Ok(())
}

/// Parses a window: `30s`, `1m`, `1m30s`, `2h`.
pub fn parse_window(s: &str) -> Result<Duration, QueryError> {
    let window = mesh_core::duration::parse(s)?;
    check_window(window)?;
    Ok(window)
}

/// Formats a window as Prometheus and Linkerd write it: `1m`, `30s`, `1m30s`, `1500ms`.
pub fn format_window(window: Duration) -> String {
    let ms = window.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = window.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_like_linkerd() {
        assert_eq!(
            "deploy".parse().ok(),
            Some(Resource::all(ResourceKind::Deployment))
        );
        assert_eq!("deploy/web".parse().ok(), Some(Resource::deploy("web")));
        assert_eq!("svc/web".parse().ok(), Some(Resource::deploy("web")));
        assert_eq!(
            "ns/emojivoto".parse().ok(),
            Some(Resource::named(ResourceKind::Namespace, "emojivoto"))
        );
        assert!("deploy/".parse::<Resource>().is_err());
        assert!("cronjob/x".parse::<Resource>().is_err());
        assert!("deploy/a/b".parse::<Resource>().is_err());
        assert_eq!(Resource::deploy("web").to_string(), "deploy/web");
    }

    #[test]
    fn windows_round_trip() {
        for (s, d) in [
            ("1m", 60),
            ("30s", 30),
            ("1m30s", 90),
            ("2h", 7200),
            ("1h1s", 3601),
        ] {
            assert_eq!(parse_window(s).ok(), Some(Duration::from_secs(d)));
            assert_eq!(format_window(Duration::from_secs(d)), s);
        }
        assert_eq!(format_window(Duration::from_millis(1500)), "1500ms");
        assert!(parse_window("0s").is_err());
        assert!(parse_window("soon").is_err());
    }
}
