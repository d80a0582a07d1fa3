//! The control plane as the proxy's source of destinations, certificates and registration.
//!
//! - [`ControlDiscovery`] implements [`Discover`] over Linkerd's `Destination.Get` (endpoints,
//!   streamed into a live [`EndpointSet`] the balancer follows) and `Destination.GetProfile`
//!   (routes, timeouts, retry budget, and `dst_overrides` as a weighted traffic split).
//! - Streams are followed by `mesh_control_client` (reconnecting with a jittered backoff). While
//!   the control plane is away the proxy keeps serving with the last endpoints and profile it
//!   knew; when it returns, the first answer of each stream replaces what was known (Linkerd's
//!   rule: stale state is used only until the first message after a reconnect).
//! - Certificates come from `Identity.Certify` ([`mesh_control_client::RemoteCertify`]) and the
//!   inbound endpoint is registered with a lease (`--register`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use linkerd2_proxy_api::destination as api;
use linkerd2_proxy_api::outbound as outbound_api;
use mesh_balance::FailureAccrual;
use mesh_balance::discover::EndpointSet;
use mesh_balance::{Endpoint, ProtocolHint, TlsIdentity};
use mesh_control_client::{Update, destination};
use mesh_core::retry::RetryableRoute;
use mesh_tls::ServiceIdentity;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::{Backend, Destination, Discover, Protocol, Route, normalize_authority};

/// Destinations from the control plane's Destination API.
pub struct ControlDiscovery {
    channel: Channel,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    destinations: HashMap<String, watch::Sender<Arc<Destination>>>,
    sets: HashMap<String, EndpointSet>,
}

impl ControlDiscovery {
    /// Resolves over `channel` (see `mesh_control_client::transport::channel`).
    pub fn new(channel: Channel) -> Arc<Self> {
        Arc::new(Self {
            channel,
            state: Mutex::new(State::default()),
        })
    }

    /// The live endpoint set of `authority`, watched from `Destination.Get`.
    fn endpoint_set(self: &Arc<Self>, state: &mut State, authority: &str) -> EndpointSet {
        if let Some(set) = state.sets.get(authority) {
            return set.clone();
        }
        let set = EndpointSet::new();
        state.sets.insert(authority.to_string(), set.clone());
        tokio::spawn(watch_endpoints(
            self.channel.clone(),
            authority.to_string(),
            set.clone(),
        ));
        set
    }
}

impl Discover for Arc<ControlDiscovery> {
    fn resolve(&self, authority: &str) -> Option<watch::Receiver<Arc<Destination>>> {
        let authority = normalize_authority(authority);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = state.destinations.get(&authority) {
            return Some(tx.subscribe());
        }
        let set = self.endpoint_set(&mut state, &authority);
        let dest = Destination {
            authority: authority.clone(),
            protocol: Protocol::Http,
            timeout: None,
            retry_budget: None,
            failure_accrual: None,
            routes: Vec::new(),
            backends: vec![Backend::live(1, &authority, set)],
        };
        let (tx, rx) = watch::channel(Arc::new(dest));
        state.destinations.insert(authority.clone(), tx.clone());
        drop(state);
        tokio::spawn(watch_profile(self.clone(), authority, tx));
        Some(rx)
    }
}

impl std::fmt::Debug for ControlDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlDiscovery").finish_non_exhaustive()
    }
}

async fn watch_endpoints(channel: Channel, authority: String, set: EndpointSet) {
    let mut updates = destination::endpoints(channel, authority.clone());
    while let Some(update) = updates.next().await {
        match update {
            Update::Reset(u) => apply(&set, u, true),
            Update::Next(u) => apply(&set, u, false),
            Update::Lost(status) => {
                tracing::debug!(%authority, %status, "destination stream lost; keeping the last endpoints");
            }
        }
    }
}

/// Applies one `Destination.Get` update to the live set. The first message of a (re)connected
/// stream replaces whatever was known.
fn apply(set: &EndpointSet, update: api::Update, first: bool) {
    match update.update {
        Some(api::update::Update::Add(add)) => {
            let eps: Vec<Endpoint> = add.addrs.into_iter().filter_map(endpoint).collect();
            if first {
                set.reset(eps);
            } else {
                set.add(eps);
            }
        }
        Some(api::update::Update::Remove(remove)) => {
            if first {
                set.clear();
            } else {
                set.remove(remove.addrs.iter().filter_map(destination::socket_addr));
            }
        }
        Some(api::update::Update::NoEndpoints(_)) => set.clear(),
        None => {}
    }
}

fn endpoint(w: api::WeightedAddr) -> Option<Endpoint> {
    let addr = destination::socket_addr(w.addr.as_ref()?)?;
    let identity = destination::tls_identity(&w)
        .filter(|i| ServiceIdentity::parse(i).is_ok())
        .map(|i| TlsIdentity::new(i.to_owned()));
    let mut ep = Endpoint::new(addr).with_identity(identity);
    if let Some(hint) = w.protocol_hint.and_then(|h| h.protocol) {
        match hint {
            api::protocol_hint::Protocol::H2(_) => ep = ep.with_protocol(ProtocolHint::Http2),
            api::protocol_hint::Protocol::Opaque(_) => ep = ep.with_protocol(ProtocolHint::Opaque),
        }
    }
    for (k, v) in w.metric_labels {
        ep = ep.with_label(k, v);
    }
    Some(ep)
}

/// Follows the destination's profile (`GetProfile`: routes, retry budget, splits) and its
/// outbound policy (`OutboundPolicies`: each route's retry conditions, limit and per-try
/// timeout, failure accrual), and publishes their merge whenever either changes.
async fn watch_profile(
    discovery: Arc<ControlDiscovery>,
    authority: String,
    tx: watch::Sender<Arc<Destination>>,
) {
    let mut profiles = destination::profiles(discovery.channel.clone(), authority.clone());
    let mut policies =
        mesh_control_client::outbound::watch(discovery.channel.clone(), authority.clone());
    let mut profile = None;
    let mut policy = PolicyExtras::default();
    loop {
        tokio::select! {
            update = profiles.next() => match update {
                Some(Update::Reset(p) | Update::Next(p)) => profile = Some(p),
                Some(Update::Lost(status)) => {
                    tracing::debug!(%authority, %status, "profile stream lost; keeping the last profile");
                    continue;
                }
                None => return,
            },
            update = policies.next() => match update {
                Some(Update::Reset(p) | Update::Next(p)) => policy = PolicyExtras::from(p),
                Some(Update::Lost(status)) => {
                    // NOT_FOUND: not a service the control plane routes (an address, an
                    // unknown name); the profile alone applies.
                    if status.code() == tonic::Code::NotFound && policy != PolicyExtras::default() {
                        policy = PolicyExtras::default();
                    } else {
                        tracing::trace!(%authority, %status, "outbound policy stream lost");
                        continue;
                    }
                }
                None => return,
            },
        }
        let Some(p) = profile.clone() else {
            continue;
        };
        let next = policy.apply(profile_to_destination(&discovery, &authority, p));
        tx.send_if_modified(|cur| {
            if **cur == next {
                false
            } else {
                *cur = Arc::new(next);
                true
            }
        });
    }
}

/// What the outbound policy adds to a profile: per route (by name), when and how often to
/// retry and each attempt's timeout; and failure accrual.
#[derive(Clone, Debug, Default, PartialEq)]
struct PolicyExtras {
    retries: Vec<(String, RetryableRoute, Option<Duration>)>,
    accrual: Option<FailureAccrual>,
}

impl PolicyExtras {
    fn apply(&self, mut dest: Destination) -> Destination {
        dest.failure_accrual = self.accrual;
        for route in &mut dest.routes {
            if let Some((_, retry, timeout)) = self
                .retries
                .iter()
                .find(|(name, _, _)| route.name.as_str() == name)
            {
                route.retry = Some(retry.clone());
                route.attempt_timeout = *timeout;
            }
        }
        dest
    }
}

impl From<outbound_api::OutboundPolicy> for PolicyExtras {
    fn from(p: outbound_api::OutboundPolicy) -> Self {
        use outbound_api::proxy_protocol::Kind;
        let mut extras = Self::default();
        let mut http = |routes: Vec<outbound_api::HttpRoute>,
                        fa: Option<outbound_api::FailureAccrual>| {
            extras.accrual = extras.accrual.or_else(|| fa.and_then(accrual));
            for r in routes {
                let Some(name) = resource_name(r.metadata.as_ref()) else {
                    continue;
                };
                let Some(retry) = r.rules.into_iter().find_map(|rule| rule.retry) else {
                    continue;
                };
                let statuses = retry
                    .conditions
                    .map(|c| c.status_ranges)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| {
                        Some(u16::try_from(s.start).ok()?..=u16::try_from(s.end).ok()?)
                    });
                let route = RetryableRoute::new()
                    .limit(retry.max_retries)
                    .on_statuses(statuses);
                let timeout = retry.timeout.and_then(|t| Duration::try_from(t).ok());
                extras.retries.push((name, route, timeout));
            }
        };
        match p.protocol.and_then(|p| p.kind) {
            Some(Kind::Http1(h)) => http(h.routes, h.failure_accrual),
            Some(Kind::Http2(h)) => http(h.routes, h.failure_accrual),
            Some(Kind::Detect(d)) => {
                if let Some(h) = d.http1 {
                    http(h.routes, h.failure_accrual);
                }
                if let Some(h) = d.http2 {
                    http(h.routes, h.failure_accrual);
                }
            }
            Some(Kind::Grpc(g)) => {
                extras.accrual = g.failure_accrual.and_then(accrual);
                for r in g.routes {
                    let Some(name) = resource_name(r.metadata.as_ref()) else {
                        continue;
                    };
                    let Some(retry) = r.rules.into_iter().find_map(|rule| rule.retry) else {
                        continue;
                    };
                    let c = retry.conditions.unwrap_or_default();
                    let codes = [
                        (c.cancelled, 1),
                        (c.deadine_exceeded, 4),
                        (c.resource_exhausted, 8),
                        (c.internal, 13),
                        (c.unavailable, 14),
                    ];
                    let route = RetryableRoute::new()
                        .limit(retry.max_retries)
                        .on_grpc(codes.iter().filter(|(on, _)| *on).map(|(_, code)| *code));
                    let timeout = retry.timeout.and_then(|t| Duration::try_from(t).ok());
                    extras.retries.push((name, route, timeout));
                }
            }
            _ => {}
        }
        extras
    }
}

/// The name of a route the control plane configured (a resource, not a default).
fn resource_name(m: Option<&linkerd2_proxy_api::meta::Metadata>) -> Option<String> {
    match m?.kind.as_ref()? {
        linkerd2_proxy_api::meta::metadata::Kind::Resource(r) => Some(r.name.clone()),
        linkerd2_proxy_api::meta::metadata::Kind::Default(_) => None,
    }
}

fn accrual(fa: outbound_api::FailureAccrual) -> Option<FailureAccrual> {
    use outbound_api::failure_accrual::Kind;
    match fa.kind? {
        Kind::ConsecutiveFailures(c) => {
            let mut accrual = FailureAccrual::consecutive(c.max_failures);
            if let Some(b) = c.backoff {
                let d = |t: Option<_>| t.and_then(|t| Duration::try_from(t).ok());
                if let (Some(min), Some(max)) = (d(b.min_backoff), d(b.max_backoff)) {
                    accrual = accrual.with_backoff(
                        mesh_core::backoff::Backoff::new(min, max)
                            .with_jitter(f64::from(b.jitter_ratio)),
                    );
                }
            }
            Some(accrual)
        }
        _ => None,
    }
}

fn profile_to_destination(
    discovery: &Arc<ControlDiscovery>,
    authority: &str,
    p: api::DestinationProfile,
) -> Destination {
    let routes = p.routes.iter().filter_map(route).collect();
    let retry_budget = p.retry_budget.as_ref().and_then(|b| {
        let ttl = Duration::try_from(b.ttl?).ok()?;
        Some((b.retry_ratio, b.min_retries_per_second, ttl))
    });
    let mut state = discovery.state.lock().unwrap_or_else(|pe| pe.into_inner());
    let backends = if p.dst_overrides.is_empty() {
        vec![Backend::live(
            1,
            authority,
            discovery.endpoint_set(&mut state, authority),
        )]
    } else {
        p.dst_overrides
            .iter()
            .map(|o| {
                let a = normalize_authority(&o.authority);
                let set = discovery.endpoint_set(&mut state, &a);
                Backend::live(o.weight, &a, set)
            })
            .collect()
    };
    Destination {
        authority: authority.to_string(),
        protocol: if p.opaque_protocol {
            Protocol::Opaque
        } else {
            Protocol::Http
        },
        timeout: None,
        retry_budget,
        failure_accrual: None,
        routes,
        backends,
    }
}

/// A profile route, if its condition is one the proxy matches (method and anchored path
/// regex, alone or combined with `all`).
fn route(r: &api::Route) -> Option<Route> {
    let mut method = None;
    let mut path = None;
    fn walk(
        m: &api::RequestMatch,
        method: &mut Option<http::Method>,
        path: &mut Option<regex::Regex>,
    ) -> Option<()> {
        match m.r#match.as_ref()? {
            api::request_match::Match::All(all) => {
                for m in &all.matches {
                    walk(m, method, path)?;
                }
                Some(())
            }
            api::request_match::Match::Path(p) => {
                *path = Some(regex::Regex::new(&format!("^(?:{})$", p.regex)).ok()?);
                Some(())
            }
            api::request_match::Match::Method(m) => {
                *method = http::Method::try_from(m.clone()).ok();
                Some(())
            }
            _ => None,
        }
    }
    walk(r.condition.as_ref()?, &mut method, &mut path)?;
    let name = r.metrics_labels.get("route").cloned().unwrap_or_else(|| {
        path.as_ref()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default()
    });
    Some(Route {
        name: mesh_core::metrics::RouteLabel::new(name),
        method,
        path,
        timeout: r.timeout.and_then(|t| Duration::try_from(t).ok()),
        retry: r.is_retryable.then(RetryableRoute::new),
        attempt_timeout: None,
    })
}
