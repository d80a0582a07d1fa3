//! The control plane as the proxy's source of destinations, certificates and registration.
//!
//! - [`ControlDiscovery`] implements [`Discover`] over Linkerd's `Destination.Get` (endpoints,
//!   streamed into a live [`EndpointSet`] the balancer follows) and `Destination.GetProfile`
//!   (routes, timeouts, retry budget, and `dst_overrides` as a weighted traffic split).
//! - Streams reconnect with a jittered backoff. While the control plane is away the proxy keeps
//!   serving with the last endpoints and profile it knew; when it returns, the first answer of
//!   each stream replaces what was known (Linkerd's rule: stale state is used only until the first
//!   message after a reconnect).
//! - Certificates come from `Identity.Certify` ([`mesh_control::client::RemoteCertify`]) and the
//!   inbound endpoint is registered with a lease (`--register`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linkerd2_proxy_api::destination as api;
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use mesh_balance::discover::EndpointSet;
use mesh_balance::{Endpoint, ProtocolHint, TlsIdentity};
use mesh_tls::ServiceIdentity;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::discovery::{Backend, Destination, Discover, Protocol, Route, normalize_authority};

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
    /// Resolves over `channel` (see `mesh_control::client::channel`).
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

/// Backoff between reconnections: 100 ms doubling to 5 s, with up to 50% jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(attempt.min(6)))
        .min(Duration::from_secs(5));
    base + base.mul_f64(rand::random::<f64>() * 0.5)
}

async fn watch_endpoints(channel: Channel, authority: String, set: EndpointSet) {
    let mut attempt = 0u32;
    loop {
        let mut client = DestinationClient::new(channel.clone());
        let req = api::GetDestination {
            scheme: "k8s".into(),
            path: authority.clone(),
            ..Default::default()
        };
        match client.get(req).await {
            Ok(rsp) => {
                let mut stream = rsp.into_inner();
                let mut first = true;
                loop {
                    match stream.message().await {
                        Ok(Some(update)) => {
                            attempt = 0;
                            apply(&set, update, first);
                            first = false;
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%authority, %status, "destination stream ended");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::debug!(%authority, %status, "cannot resolve; keeping the last endpoints");
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
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
                set.remove(remove.addrs.iter().filter_map(socket_addr));
            }
        }
        Some(api::update::Update::NoEndpoints(_)) => set.clear(),
        None => {}
    }
}

fn socket_addr(a: &linkerd2_proxy_api::net::TcpAddress) -> Option<SocketAddr> {
    SocketAddr::try_from(*a).ok()
}

fn endpoint(w: api::WeightedAddr) -> Option<Endpoint> {
    let addr = socket_addr(w.addr.as_ref()?)?;
    let identity = w.tls_identity.and_then(|t| match t.strategy? {
        api::tls_identity::Strategy::DnsLikeIdentity(d) => Some(d.name),
        api::tls_identity::Strategy::UriLikeIdentity(u) => Some(u.uri),
    });
    let identity = identity.filter(|i| ServiceIdentity::parse(i).is_ok());
    let mut ep = Endpoint::new(addr).with_identity(identity.map(TlsIdentity::new));
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

async fn watch_profile(
    discovery: Arc<ControlDiscovery>,
    authority: String,
    tx: watch::Sender<Arc<Destination>>,
) {
    let mut attempt = 0u32;
    loop {
        let mut client = DestinationClient::new(discovery.channel.clone());
        let req = api::GetDestination {
            scheme: "k8s".into(),
            path: authority.clone(),
            ..Default::default()
        };
        match client.get_profile(req).await {
            Ok(rsp) => {
                let mut stream = rsp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(profile)) => {
                            attempt = 0;
                            let next = profile_to_destination(&discovery, &authority, profile);
                            tx.send_if_modified(|cur| {
                                if **cur == next {
                                    false
                                } else {
                                    *cur = Arc::new(next);
                                    true
                                }
                            });
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%authority, %status, "profile stream ended");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::debug!(%authority, %status, "cannot get the profile; keeping the last one");
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
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
        retryable: r.is_retryable,
    })
}
