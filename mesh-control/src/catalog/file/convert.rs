//! Checking the schema's values and translating them into a [`Snapshot`]: names, addresses,
//! identities, regexes, durations, duplicate services, ports and endpoints, splits. Every error
//! names the line when known and the field.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use ipnet::IpNet;
use mesh_core::duration;
use mesh_tls::{IdentityDomain, ServiceIdentity};
use serde_saphyr::Spanned;

use super::CatalogError;
use super::schema::*;
use crate::catalog::model::{
    Authorization, Backoff, Clients, DEFAULT_ENDPOINT_WEIGHT, Endpoint, EndpointSource,
    FailureAccrual, InboundCondition, InboundRoute, Network, PathMatch, Port, Profile, Protocol,
    ProtocolHint, ResponseClass, Route, Service, ServiceRef, Snapshot, SplitBackend,
};

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    Some(s.referenced.line())
}

pub(super) fn convert(doc: Doc, domain: &IdentityDomain) -> Result<Snapshot, CatalogError> {
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
    for (i, ns) in doc.namespaces.iter().enumerate() {
        let (line, field) = (line_of(ns), format!("namespaces[{i}]"));
        check_label(&ns.value.name)
            .map_err(|e| CatalogError::invalid(line, format!("{field}.name"), e))?;
        let policy = ns.value.default_policy.parse().map_err(|e: String| {
            CatalogError::invalid(line, format!("{field}.defaultPolicy"), e)
        })?;
        if snapshot
            .namespace_policies
            .insert(ns.value.name.clone(), policy)
            .is_some()
        {
            let twice = format!("namespace {} is listed twice", ns.value.name);
            return Err(CatalogError::invalid(line, field, twice));
        }
    }
    for (i, w) in doc.workloads.iter().enumerate() {
        let (line, field) = (line_of(w), format!("workloads[{i}]"));
        let namespace = w
            .value
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        for (part, value) in [("name", &w.value.name), ("namespace", &namespace)] {
            check_label(value)
                .map_err(|e| CatalogError::invalid(line, format!("{field}.{part}"), e))?;
        }
        let policy = w.value.default_policy.parse().map_err(|e: String| {
            CatalogError::invalid(line, format!("{field}.defaultPolicy"), e)
        })?;
        let key = (namespace, w.value.name.clone());
        if snapshot
            .workload_policies
            .insert(key.clone(), policy)
            .is_some()
        {
            let twice = format!("workload {}.{} is listed twice", key.1, key.0);
            return Err(CatalogError::invalid(line, field, twice));
        }
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
    let authorization = doc
        .authorization
        .map(|a| {
            let line = line_of(&a);
            convert_authorization(
                &format!("{field}.authorization"),
                line,
                a.value,
                service,
                domain,
            )
        })
        .transpose()?;
    let mut routes = Vec::new();
    for (i, r) in doc.routes.into_iter().enumerate() {
        let line = line_of(&r);
        let field = format!("{field}.routes[{i}]");
        let route = convert_inbound_route(&field, line, r.value, protocol, service, domain)?;
        if routes
            .iter()
            .any(|other: &InboundRoute| other.name == route.name)
        {
            let twice = format!("route {:?} is listed twice", route.name);
            return Err(CatalogError::invalid(line, field, twice));
        }
        routes.push(route);
    }
    Ok(Port {
        port: doc.port,
        target_port: doc.target_port.unwrap_or(doc.port),
        protocol,
        authorization,
        routes,
    })
}

fn convert_inbound_route(
    field: &str,
    line: Option<u64>,
    doc: InboundRouteDoc,
    protocol: Protocol,
    service: &ServiceRef,
    domain: &IdentityDomain,
) -> Result<InboundRoute, CatalogError> {
    if doc.name.trim().is_empty() {
        return Err(CatalogError::invalid(
            line,
            format!("{field}.name"),
            "a route needs a name",
        ));
    }
    let c = doc.condition;
    let at = |part: &str| format!("{field}.condition.{part}");
    let grpc_port = protocol == Protocol::Grpc;
    let http_parts =
        c.method.is_some() || c.path.is_some() || c.path_prefix.is_some() || c.path_regex.is_some();
    if grpc_port && http_parts {
        return Err(CatalogError::invalid(
            line,
            format!("{field}.condition"),
            "a gRPC port's routes match `grpcService` (and `grpcMethod`), not methods or paths",
        ));
    }
    if !grpc_port && (c.grpc_service.is_some() || c.grpc_method.is_some()) {
        return Err(CatalogError::invalid(
            line,
            format!("{field}.condition"),
            "`grpcService`/`grpcMethod` match only on ports with `protocol: grpc`",
        ));
    }
    let method = c
        .method
        .as_deref()
        .map(|m| http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
        .transpose()
        .map_err(|e| CatalogError::invalid(line, at("method"), e.to_string()))?;
    let path = match (c.path, c.path_prefix, c.path_regex) {
        (None, None, None) => None,
        (Some(p), None, None) => Some(PathMatch::Exact(
            checked_path(&p).map_err(|e| CatalogError::invalid(line, at("path"), e))?,
        )),
        (None, Some(p), None) => {
            Some(PathMatch::Prefix(checked_path(&p).map_err(|e| {
                CatalogError::invalid(line, at("pathPrefix"), e)
            })?))
        }
        (None, None, Some(r)) => {
            regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                CatalogError::invalid(line, at("pathRegex"), format!("invalid regex: {e}"))
            })?;
            Some(PathMatch::Regex(r))
        }
        _ => {
            return Err(CatalogError::invalid(
                line,
                format!("{field}.condition"),
                "give one of `path`, `pathPrefix` and `pathRegex`",
            ));
        }
    };
    let grpc = match (c.grpc_service, c.grpc_method) {
        (Some(s), m) => Some((s, m)),
        (None, Some(_)) => {
            return Err(CatalogError::invalid(
                line,
                at("grpcMethod"),
                "a method needs its `grpcService`",
            ));
        }
        (None, None) => None,
    };
    let authorization = doc
        .authorization
        .map(|a| {
            let line = line_of(&a);
            convert_authorization(
                &format!("{field}.authorization"),
                line,
                a.value,
                service,
                domain,
            )
        })
        .transpose()?;
    Ok(InboundRoute {
        name: doc.name,
        condition: InboundCondition { method, path, grpc },
        authorization,
    })
}

fn checked_path(p: &str) -> Result<String, String> {
    if p.starts_with('/') {
        Ok(p.to_owned())
    } else {
        Err(format!("{p:?} is not a path; it starts with '/'"))
    }
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
    for n in &doc.networks {
        let (cidr, except) = match n {
            NetworkDoc::Cidr(c) => (c, &[][..]),
            NetworkDoc::WithExcept { cidr, except } => (cidr, &except[..]),
        };
        let bad = |e| CatalogError::invalid(line, format!("{field}.networks"), e);
        let net = parse_network(cidr).map_err(bad)?;
        let except = except
            .iter()
            .map(|e| parse_network(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        if let Some(outside) = except.iter().find(|e| !net.contains(*e)) {
            return Err(bad(format!(
                "{outside} is excepted from {net} but is not inside it"
            )));
        }
        clients.networks.push(Network { net, except });
    }
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
    let mut route = Route {
        name: doc.name,
        method,
        path_regex: doc.condition.path_regex,
        is_retryable: doc.is_retryable,
        max_retries: doc.max_retries.unwrap_or(3),
        timeout,
        response_classes,
        retry_timeout: None,
        retry_statuses: Vec::new(),
        retry_grpc: Vec::new(),
    };
    if let Some(retry) = doc.retry {
        // `retry` is Linkerd 2.16's form of `isRetryable` + `maxRetries`, with conditions.
        let at = |part: &str| format!("{field}.retry.{part}");
        route.is_retryable = true;
        route.max_retries = retry.limit.or(doc.max_retries).unwrap_or(3);
        route.retry_timeout = retry
            .timeout
            .as_deref()
            .map(duration::parse)
            .transpose()
            .map_err(|e| CatalogError::invalid(line, at("timeout"), e.to_string()))?;
        for s in &retry.http {
            let range = mesh_core::retry::status_range(s)
                .map_err(|e| CatalogError::invalid(line, at("http"), e.to_string()))?;
            route.retry_statuses.push(range);
        }
        for g in &retry.grpc {
            let code = mesh_core::retry::grpc_code(g)
                .map_err(|e| CatalogError::invalid(line, at("grpc"), e.to_string()))?;
            // The outbound policy API carries these five.
            if ![1, 4, 8, 13, 14].contains(&code) {
                return Err(CatalogError::invalid(
                    line,
                    at("grpc"),
                    format!(
                        "{g:?} cannot be retried; use cancelled, deadline-exceeded, \
                         resource-exhausted, internal or unavailable"
                    ),
                ));
            }
            route.retry_grpc.push(code);
        }
    }
    Ok(route)
}

fn parse_networks(nets: &[String]) -> Result<Vec<IpNet>, String> {
    nets.iter().map(|n| parse_network(n)).collect()
}

fn parse_network(n: &str) -> Result<IpNet, String> {
    n.parse::<IpNet>()
        .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{n:?} is not a network (e.g. 10.0.0.0/8)"))
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
