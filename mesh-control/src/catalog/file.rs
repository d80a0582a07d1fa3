//! The `mesh.yaml` catalog file: its schema, and its translation into a [`Snapshot`].
//!
//! The file is read with serde-saphyr into the schema types below (unknown keys are errors, so a
//! typo never silently does nothing), then checked: names, addresses, identities, regexes,
//! durations, duplicate services/ports/endpoints, splits. Every error names the file, the line
//! when known, and the field, e.g.
//!
//! ```text
//! mesh.yaml:14: services[0] (web.emojivoto).profile.routes[1].condition.pathRegex: invalid regex: ...
//! ```
//!
//! # Schema
//!
//! The annotated example below is the reference (it is `mesh.example.yaml` in the crate and is
//! checked by the tests):
//!
//! ```yaml
#![doc = include_str!("../../mesh.example.yaml")]
//! ```
//!
//! Notes:
//! - A service is `<name>.<namespace>`; clients address it as
//!   `<name>.<namespace>.svc.<cluster-domain>:<port>` (see [`crate::name`]).
//! - Route conditions match the method and a regex over the **whole** path (as ServiceProfiles
//!   do); `all`/`any`/`not` conditions are not supported yet. Response classes match a status
//!   range (`{min, max}`; one bound alone is a single status).
//! - `timeout` bounds the whole request including retries. `maxRetries` (default 3) is what the
//!   outbound policy API sends; the profile API sends `isRetryable` and the retry budget.
//! - A `split` sends a service's clients to its backends by weight (SMI TrafficSplit, served as
//!   the profile's `dstOverrides` and as weighted backends in outbound policy). Backends are
//!   services in the same namespace unless `namespace` is given; `port` defaults to the port the
//!   client addressed.
//! - Endpoint identity: `serviceAccount: sa` expands to
//!   `sa.<namespace>.serviceaccount.identity.<identity-suffix>`; `identity:` takes any DNS-like
//!   name or SPIFFE ID; neither means an unmeshed endpoint (no TLS). `protocolHint` is `h2`,
//!   `opaque` or `none`; unset, meshed endpoints get `h2` (or `opaque` on opaque ports).
//! - Authorization is either `policy: <default policy>` or explicit clients: `identities`,
//!   `serviceAccounts`, `suffixes` (an empty suffix admits every meshed client),
//!   `unauthenticated: true`, and `networks` restricting all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mesh_tls::{IdentityDomain, ServiceIdentity};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::model::{
    Authorization, Backoff, Clients, DEFAULT_ENDPOINT_WEIGHT, Endpoint, EndpointSource,
    FailureAccrual, Port, Profile, Protocol, ProtocolHint, ResponseClass, Route, Service,
    ServiceRef, Snapshot, SplitBackend,
};
use mesh_core::duration;

/// The example catalog shown in the schema docs.
pub const EXAMPLE: &str = include_str!("../../mesh.example.yaml");

/// Why a catalog file could not be used.
///
/// Its `Display` names the file, the line when known, the field and the problem.
#[derive(Debug)]
pub struct CatalogError {
    file: Option<PathBuf>,
    line: Option<u64>,
    column: Option<u64>,
    field: Option<String>,
    message: String,
    io: Option<std::io::Error>,
}

impl CatalogError {
    fn invalid(line: Option<u64>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: line.filter(|l| *l > 0),
            column: None,
            field: Some(field.into()),
            message: message.into(),
            io: None,
        }
    }

    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self {
            file: Some(path.to_owned()),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read the catalog file: {error}"),
            io: Some(error),
        }
    }

    fn in_file(mut self, file: Option<&Path>) -> Self {
        if self.file.is_none() {
            self.file = file.map(Path::to_owned);
        }
        self
    }

    /// The file, if the catalog came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The line (from 1), when known.
    pub fn line(&self) -> Option<u64> {
        self.line
    }

    /// The offending field, e.g. `services[0] (web.emojivoto).ports[1].protocol`.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Whether the file could not be read at all.
    pub fn is_io(&self) -> bool {
        self.io.is_some()
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("catalog")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CatalogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

/// Reads and checks a catalog file.
pub fn load(path: &Path, domain: &IdentityDomain) -> Result<Snapshot, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|e| CatalogError::io(path, e))?;
    parse(&text, Some(path), domain)
}

/// Parses and checks catalog text; `file` names it in errors.
///
/// ```
/// use mesh_control::catalog::{file, ServiceRef};
/// use mesh_tls::IdentityDomain;
///
/// let snapshot = file::parse(file::EXAMPLE, None, &IdentityDomain::default())?;
/// let web = snapshot.service(&ServiceRef::new("web", "emojivoto")).unwrap();
/// assert_eq!(web.profile.routes[0].name, "list");
///
/// let err = file::parse("services: [{name: web, ports: [{port: 80, protocol: htp1}]}]", None,
///     &IdentityDomain::default()).unwrap_err();
/// assert!(err.to_string().contains("protocol"), "{err}");
/// # Ok::<(), mesh_control::catalog::CatalogError>(())
/// ```
pub fn parse(
    text: &str,
    file: Option<&Path>,
    domain: &IdentityDomain,
) -> Result<Snapshot, CatalogError> {
    let doc: Doc = if text.trim().is_empty() {
        Doc::default()
    } else {
        serde_saphyr::from_str(text)
            .map_err(|e| syntax_error(text, &e))
            .map_err(|e| e.in_file(file))?
    };
    convert(doc, domain).map_err(|e| e.in_file(file))
}

fn syntax_error(text: &str, e: &serde_saphyr::Error) -> CatalogError {
    let location = e.location().filter(|l| l.line() > 0);
    let line = location.map(|l| l.line());
    // The rendered message carries a snippet; the first line is the message itself, which ends
    // with the position we report in front instead.
    let rendered = e.without_snippet().to_string();
    let mut message = rendered
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_owned();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // serde does not say which field failed to parse; the source line does: the last `key:`
    // before the error's column, else the line's first key.
    let raw = line.and_then(|l| text.lines().nth(usize::try_from(l).ok()?.checked_sub(1)?));
    let source = raw.map(str::trim).filter(|l| !l.is_empty());
    let column = location.map(|l| l.column()).filter(|c| *c > 0);
    let field = raw.and_then(|raw| {
        let upto: String = match column {
            Some(c) => raw
                .chars()
                .take(usize::try_from(c).unwrap_or(usize::MAX))
                .collect(),
            None => raw.to_owned(),
        };
        last_key(&upto)
            .or_else(|| last_key(raw.split(':').next().map(|k| format!("{k}:")).as_deref()?))
    });
    if let Some(src) = source {
        message = format!("{message} (in `{src}`)");
    }
    CatalogError {
        file: None,
        line,
        column,
        field,
        message,
        io: None,
    }
}

/// The last `key:` in `s`, if any.
fn last_key(s: &str) -> Option<String> {
    let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let colon = s.rfind(':')?;
    let head = &s[..colon];
    let start = head.rfind(|c: char| !is_key(c)).map_or(0, |i| i + 1);
    let key = &head[start..];
    (!key.is_empty()).then(|| key.to_owned())
}

// === The schema ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Doc {
    #[serde(default)]
    default_policy: Option<Spanned<String>>,
    #[serde(default)]
    cluster_networks: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    services: Vec<Spanned<ServiceDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceDoc {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    ports: Vec<Spanned<PortDoc>>,
    #[serde(default)]
    workloads: Option<Vec<String>>,
    #[serde(default)]
    endpoints: Vec<Spanned<EndpointDoc>>,
    #[serde(default)]
    profile: Option<ProfileDoc>,
    #[serde(default)]
    split: Vec<Spanned<SplitDoc>>,
    #[serde(default)]
    failure_accrual: Option<Spanned<FailureAccrualDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PortDoc {
    port: u16,
    #[serde(default)]
    target_port: Option<u16>,
    #[serde(default)]
    protocol: Option<ProtocolDoc>,
    #[serde(default)]
    authorization: Option<Spanned<AuthorizationDoc>>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ProtocolDoc {
    Detect,
    Http1,
    Http2,
    Grpc,
    Opaque,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthorizationDoc {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    identities: Vec<String>,
    #[serde(default)]
    service_accounts: Vec<String>,
    #[serde(default)]
    suffixes: Vec<String>,
    #[serde(default)]
    unauthenticated: bool,
    #[serde(default)]
    networks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EndpointDoc {
    address: String,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    protocol_hint: Option<HintDoc>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    workload: Option<String>,
    #[serde(default)]
    ports: Option<Vec<u16>>,
    #[serde(default)]
    weight: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HintDoc {
    H2,
    Opaque,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProfileDoc {
    #[serde(default)]
    routes: Vec<Spanned<RouteDoc>>,
    #[serde(default)]
    retry_budget: Option<Spanned<RetryBudgetDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RouteDoc {
    name: String,
    #[serde(default)]
    condition: ConditionDoc,
    #[serde(default)]
    is_retryable: bool,
    #[serde(default)]
    max_retries: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    response_classes: Vec<ResponseClassDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConditionDoc {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path_regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResponseClassDoc {
    condition: ResponseConditionDoc,
    #[serde(default)]
    is_failure: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResponseConditionDoc {
    status: StatusRangeDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StatusRangeDoc {
    #[serde(default)]
    min: Option<u16>,
    #[serde(default)]
    max: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetryBudgetDoc {
    #[serde(default)]
    retry_ratio: Option<f32>,
    #[serde(default)]
    min_retries_per_second: Option<u32>,
    #[serde(default)]
    ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SplitDoc {
    service: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FailureAccrualDoc {
    consecutive_failures: u32,
    #[serde(default)]
    backoff: Option<BackoffDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackoffDoc {
    #[serde(default)]
    min: Option<String>,
    #[serde(default)]
    max: Option<String>,
    #[serde(default)]
    jitter_ratio: Option<f32>,
}

// === Checking and translating ===

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    Some(s.referenced.line())
}

fn convert(doc: Doc, domain: &IdentityDomain) -> Result<Snapshot, CatalogError> {
    let mut snapshot = Snapshot::default();
    if let Some(p) = &doc.default_policy {
        snapshot.default_policy = p
            .value
            .parse()
            .map_err(|e: String| CatalogError::invalid(line_of(p), "defaultPolicy", e))?;
    }
    if let Some(nets) = &doc.cluster_networks {
        snapshot.cluster_networks = parse_networks(&nets.value)
            .map_err(|e| CatalogError::invalid(line_of(nets), "clusterNetworks", e))?;
    }
    for (i, spanned) in doc.services.into_iter().enumerate() {
        let line = line_of(&spanned);
        let svc = spanned.value;
        let label = format!("services[{i}]");
        let service = convert_service(&label, line, svc, domain)?;
        let key = service.name.clone();
        if snapshot.services.contains_key(&key) {
            return Err(CatalogError::invalid(
                line,
                label,
                format!("service {key} is listed twice"),
            ));
        }
        snapshot.services.insert(key, service);
    }
    for svc in snapshot.services.values() {
        for backend in &svc.split {
            if !snapshot.services.contains_key(&backend.service) {
                // It may be a service that only registers at run time (`mesh run`).
                tracing::info!(
                    service = %svc.name,
                    backend = %backend.service,
                    "split backend is not in the catalog file; it gets traffic once it registers"
                );
            }
        }
    }
    Ok(snapshot)
}

fn convert_service(
    label: &str,
    line: Option<u64>,
    doc: ServiceDoc,
    domain: &IdentityDomain,
) -> Result<Service, CatalogError> {
    check_label(&doc.name).map_err(|e| CatalogError::invalid(line, format!("{label}.name"), e))?;
    let namespace = doc.namespace.unwrap_or_else(|| "default".to_owned());
    check_label(&namespace)
        .map_err(|e| CatalogError::invalid(line, format!("{label}.namespace"), e))?;
    let name = ServiceRef::new(doc.name, namespace);
    let label = format!("{label} ({name})");
    let mut service = Service::new(name.clone());

    for (i, p) in doc.ports.into_iter().enumerate() {
        let line = line_of(&p);
        let field = format!("{label}.ports[{i}]");
        let port = convert_port(&field, line, p.value, &name, domain)?;
        if service.ports.insert(port.port, port).is_some() {
            return Err(CatalogError::invalid(
                line,
                field,
                "the port is listed twice".to_owned(),
            ));
        }
    }

    if let Some(workloads) = doc.workloads {
        for w in &workloads {
            check_label(w)
                .map_err(|e| CatalogError::invalid(line, format!("{label}.workloads"), e))?;
        }
        service.workloads = workloads.into_iter().collect();
    }

    for (i, e) in doc.endpoints.into_iter().enumerate() {
        let line = line_of(&e);
        let field = format!("{label}.endpoints[{i}]");
        let endpoint = convert_endpoint(&field, line, e.value, &service, domain)?;
        if service.endpoints.iter().any(|x| x.addr == endpoint.addr) {
            return Err(CatalogError::invalid(
                line,
                format!("{field}.address"),
                format!("{} is listed twice", endpoint.addr),
            ));
        }
        service.endpoints.push(endpoint);
    }
    service.endpoints.sort_by_key(|e| e.addr);

    if let Some(profile) = doc.profile {
        service.profile = convert_profile(&format!("{label}.profile"), profile)?;
    }

    for (i, s) in doc.split.into_iter().enumerate() {
        let line = line_of(&s);
        let field = format!("{label}.split[{i}]");
        let s = s.value;
        check_label(&s.service)
            .map_err(|e| CatalogError::invalid(line, format!("{field}.service"), e))?;
        let ns = s.namespace.unwrap_or_else(|| name.namespace.clone());
        check_label(&ns)
            .map_err(|e| CatalogError::invalid(line, format!("{field}.namespace"), e))?;
        if s.port == Some(0) {
            return Err(CatalogError::invalid(
                line,
                format!("{field}.port"),
                "port 0",
            ));
        }
        service.split.push(SplitBackend {
            service: ServiceRef::new(s.service, ns),
            port: s.port,
            weight: s.weight,
        });
    }
    if !service.split.is_empty() && service.split.iter().all(|b| b.weight == 0) {
        return Err(CatalogError::invalid(
            line,
            format!("{label}.split"),
            "every backend has weight 0, so the split would send traffic nowhere",
        ));
    }

    if let Some(fa) = doc.failure_accrual {
        let line = line_of(&fa);
        let field = format!("{label}.failureAccrual");
        let fa = fa.value;
        if fa.consecutive_failures == 0 {
            return Err(CatalogError::invalid(
                line,
                format!("{field}.consecutiveFailures"),
                "must be at least 1 (omit failureAccrual to disable it)",
            ));
        }
        let mut backoff = Backoff::default();
        if let Some(b) = fa.backoff {
            if let Some(min) = &b.min {
                backoff.min = duration::parse(min).map_err(|e| {
                    CatalogError::invalid(line, format!("{field}.backoff.min"), e.to_string())
                })?;
            }
            if let Some(max) = &b.max {
                backoff.max = duration::parse(max).map_err(|e| {
                    CatalogError::invalid(line, format!("{field}.backoff.max"), e.to_string())
                })?;
            }
            if let Some(j) = b.jitter_ratio {
                if !(0.0..=100.0).contains(&j) {
                    return Err(CatalogError::invalid(
                        line,
                        format!("{field}.backoff.jitterRatio"),
                        "must be 0 or more",
                    ));
                }
                backoff.jitter_ratio = j;
            }
            if backoff.max < backoff.min {
                return Err(CatalogError::invalid(
                    line,
                    format!("{field}.backoff"),
                    "max is smaller than min",
                ));
            }
        }
        service.failure_accrual = Some(FailureAccrual {
            consecutive_failures: fa.consecutive_failures,
            backoff,
        });
    }
    Ok(service)
}

fn convert_port(
    field: &str,
    line: Option<u64>,
    doc: PortDoc,
    service: &ServiceRef,
    domain: &IdentityDomain,
) -> Result<Port, CatalogError> {
    if doc.port == 0 {
        return Err(CatalogError::invalid(
            line,
            format!("{field}.port"),
            "port 0 is not a port",
        ));
    }
    if doc.target_port == Some(0) {
        return Err(CatalogError::invalid(
            line,
            format!("{field}.targetPort"),
            "port 0 is not a port",
        ));
    }
    let protocol = match doc.protocol {
        None | Some(ProtocolDoc::Detect) => Protocol::Detect,
        Some(ProtocolDoc::Http1) => Protocol::Http1,
        Some(ProtocolDoc::Http2) => Protocol::Http2,
        Some(ProtocolDoc::Grpc) => Protocol::Grpc,
        Some(ProtocolDoc::Opaque) => Protocol::Opaque,
    };
    let authorization = match doc.authorization {
        None => None,
        Some(a) => {
            let line = line_of(&a);
            Some(convert_authorization(
                &format!("{field}.authorization"),
                line,
                a.value,
                service,
                domain,
            )?)
        }
    };
    Ok(Port {
        port: doc.port,
        target_port: doc.target_port.unwrap_or(doc.port),
        protocol,
        authorization,
    })
}

fn convert_authorization(
    field: &str,
    line: Option<u64>,
    doc: AuthorizationDoc,
    service: &ServiceRef,
    domain: &IdentityDomain,
) -> Result<Authorization, CatalogError> {
    let has_clients = !doc.identities.is_empty()
        || !doc.service_accounts.is_empty()
        || !doc.suffixes.is_empty()
        || doc.unauthenticated;
    if let Some(policy) = &doc.policy {
        if has_clients || !doc.networks.is_empty() {
            return Err(CatalogError::invalid(
                line,
                field,
                "give either `policy` or clients (identities, serviceAccounts, suffixes, unauthenticated, networks), not both",
            ));
        }
        let policy = policy
            .parse()
            .map_err(|e: String| CatalogError::invalid(line, format!("{field}.policy"), e))?;
        return Ok(Authorization::Policy(policy));
    }
    if !has_clients {
        return Err(CatalogError::invalid(
            line,
            field,
            "names no clients; give `policy: deny` to refuse everyone, or list identities, serviceAccounts, suffixes or `unauthenticated: true`",
        ));
    }
    let mut clients = Clients {
        unauthenticated: doc.unauthenticated,
        ..Clients::default()
    };
    for id in &doc.identities {
        let id = ServiceIdentity::parse(id).map_err(|e| {
            CatalogError::invalid(line, format!("{field}.identities"), e.to_string())
        })?;
        clients.identities.push(id);
    }
    for sa in &doc.service_accounts {
        let (sa_name, ns) = sa.split_once('.').unwrap_or((sa, &service.namespace));
        let id = domain.workload(sa_name, ns).map_err(|e| {
            CatalogError::invalid(
                line,
                format!("{field}.serviceAccounts"),
                format!("{sa:?}: {e}; write `name` or `name.namespace`"),
            )
        })?;
        clients.identities.push(id);
    }
    for s in &doc.suffixes {
        let s = s.trim_matches('.').to_ascii_lowercase();
        if !s.is_empty() && ServiceIdentity::parse(&s).is_err() {
            return Err(CatalogError::invalid(
                line,
                format!("{field}.suffixes"),
                format!("{s:?} is not a DNS-like suffix"),
            ));
        }
        clients.suffixes.push(s);
    }
    clients.networks = parse_networks(&doc.networks)
        .map_err(|e| CatalogError::invalid(line, format!("{field}.networks"), e))?;
    Ok(Authorization::Clients(clients))
}

fn convert_endpoint(
    field: &str,
    line: Option<u64>,
    doc: EndpointDoc,
    service: &Service,
    domain: &IdentityDomain,
) -> Result<Endpoint, CatalogError> {
    let addr: SocketAddr = doc.address.parse().map_err(|_| {
        CatalogError::invalid(
            line,
            format!("{field}.address"),
            format!(
                "{:?} is not an ip:port address (e.g. 127.0.0.1:4143)",
                doc.address
            ),
        )
    })?;
    let identity = match (&doc.identity, &doc.service_account) {
        (Some(_), Some(_)) => {
            return Err(CatalogError::invalid(
                line,
                field,
                "give `identity` or `serviceAccount`, not both",
            ));
        }
        (Some(id), None) => Some(ServiceIdentity::parse(id).map_err(|e| {
            CatalogError::invalid(line, format!("{field}.identity"), e.to_string())
        })?),
        (None, Some(sa)) => Some(domain.workload(sa, &service.name.namespace).map_err(|e| {
            CatalogError::invalid(line, format!("{field}.serviceAccount"), e.to_string())
        })?),
        (None, None) => None,
    };
    let ports = match doc.ports {
        None => None,
        Some(ports) => {
            for p in &ports {
                if !service.ports.contains_key(p) {
                    return Err(CatalogError::invalid(
                        line,
                        format!("{field}.ports"),
                        format!("port {p} is not one of the service's ports"),
                    ));
                }
            }
            Some(ports.into_iter().collect::<BTreeSet<_>>())
        }
    };
    if let Some(w) = &doc.workload {
        check_label(w).map_err(|e| CatalogError::invalid(line, format!("{field}.workload"), e))?;
    }
    Ok(Endpoint {
        addr,
        identity,
        protocol_hint: match doc.protocol_hint {
            None => ProtocolHint::Auto,
            Some(HintDoc::H2) => ProtocolHint::H2,
            Some(HintDoc::Opaque) => ProtocolHint::Opaque,
            Some(HintDoc::None) => ProtocolHint::None,
        },
        labels: doc.labels,
        workload: doc.workload,
        ports,
        weight: doc.weight.unwrap_or(DEFAULT_ENDPOINT_WEIGHT),
        source: EndpointSource::Static,
    })
}

fn convert_profile(field: &str, doc: ProfileDoc) -> Result<Profile, CatalogError> {
    let mut profile = Profile::default();
    if let Some(b) = doc.retry_budget {
        let line = line_of(&b);
        let b = b.value;
        let f = format!("{field}.retryBudget");
        if let Some(r) = b.retry_ratio {
            if !(r.is_finite() && r >= 0.0) {
                return Err(CatalogError::invalid(
                    line,
                    format!("{f}.retryRatio"),
                    "must be 0 or more",
                ));
            }
            profile.retry_budget.retry_ratio = r;
        }
        if let Some(m) = b.min_retries_per_second {
            profile.retry_budget.min_retries_per_second = m;
        }
        if let Some(ttl) = &b.ttl {
            profile.retry_budget.ttl = duration::parse(ttl)
                .map_err(|e| CatalogError::invalid(line, format!("{f}.ttl"), e.to_string()))?;
        }
    }
    let mut names = BTreeSet::new();
    for (i, r) in doc.routes.into_iter().enumerate() {
        let line = line_of(&r);
        let f = format!("{field}.routes[{i}]");
        let route = convert_route(&f, line, r.value)?;
        if !names.insert(route.name.clone()) {
            return Err(CatalogError::invalid(
                line,
                format!("{f}.name"),
                format!("route name {:?} is used twice", route.name),
            ));
        }
        profile.routes.push(route);
    }
    Ok(profile)
}

fn convert_route(field: &str, line: Option<u64>, doc: RouteDoc) -> Result<Route, CatalogError> {
    if doc.name.trim().is_empty() {
        return Err(CatalogError::invalid(
            line,
            format!("{field}.name"),
            "a route needs a name",
        ));
    }
    let method = match &doc.condition.method {
        None => None,
        Some(m) => Some(
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                CatalogError::invalid(
                    line,
                    format!("{field}.condition.method"),
                    format!("{m:?} is not an HTTP method"),
                )
            })?,
        ),
    };
    if let Some(re) = &doc.condition.path_regex {
        let invalid = |e: regex::Error| {
            let text = e.to_string();
            let msg: Vec<&str> = text.lines().map(str::trim).collect();
            CatalogError::invalid(
                line,
                format!("{field}.condition.pathRegex"),
                format!("invalid regex {re:?}: {}", msg.join(" ")),
            )
        };
        regex::Regex::new(re).map_err(invalid)?;
        regex::Regex::new(&format!("^(?:{re})$")).map_err(invalid)?;
    }
    let timeout = match &doc.timeout {
        None => None,
        Some(t) => {
            let d = duration::parse(t).map_err(|e| {
                CatalogError::invalid(line, format!("{field}.timeout"), e.to_string())
            })?;
            (!d.is_zero()).then_some(d)
        }
    };
    let mut response_classes = Vec::new();
    for (i, rc) in doc.response_classes.into_iter().enumerate() {
        let f = format!("{field}.responseClasses[{i}].condition.status");
        let s = rc.condition.status;
        let (min, max) = match (s.min, s.max) {
            (Some(a), Some(b)) => (a, b),
            (Some(a), None) | (None, Some(a)) => (a, a),
            (None, None) => {
                return Err(CatalogError::invalid(line, f, "give min, max or both"));
            }
        };
        if !(100..=599).contains(&min) || !(100..=599).contains(&max) || min > max {
            return Err(CatalogError::invalid(
                line,
                f,
                format!("{min}..{max} is not a range of HTTP statuses (100 to 599, min <= max)"),
            ));
        }
        response_classes.push(ResponseClass {
            status: min..=max,
            is_failure: rc.is_failure,
        });
    }
    Ok(Route {
        name: doc.name,
        method,
        path_regex: doc.condition.path_regex,
        is_retryable: doc.is_retryable,
        max_retries: doc.max_retries.unwrap_or(3),
        timeout,
        response_classes,
    })
}

fn parse_networks(nets: &[String]) -> Result<Vec<IpNet>, String> {
    nets.iter()
        .map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{n:?} is not a network (e.g. 10.0.0.0/8)"))
        })
        .collect()
}

/// A Kubernetes-style DNS label: lower-case letters, digits and `-`, at most 63.
pub(crate) fn check_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (lower-case letters, digits and '-', at most 63)"
        ))
    }
}

#[cfg(test)]
mod tests;
