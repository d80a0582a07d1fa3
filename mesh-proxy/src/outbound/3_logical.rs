//! Stage 3, per destination: what the destination's profile says of each request, and the
//! layers that act on it. Outermost first, each where it is for a reason:
//!
//! 1. **route** — match the profile's routes (first match wins), put the route's name, timeout
//!    and retryability in the request's extensions, and rewrite the request for the peer
//!    (HTTP/2 with `l5d-orig-proto`, hop-by-hop and mesh headers removed). First, so every layer
//!    below sees the final request.
//! 2. **rescue** — turn every error below into a response naming the cause (502/503/504 with
//!    `l5d-proxy-error`). Above the metrics, so a failure is both counted and answered.
//! 3. **metrics** (effective: one per request) — Linkerd's labels for the destination.
//! 4. **timeout** — the route's or the destination's request timeout; above retries, so it
//!    bounds the whole exchange.
//! 5. **retry** — what the route says (Linkerd 2.16's retry conditions: statuses, gRPC codes;
//!    a limit), within the destination's budget; below it, **actual** metrics count attempts,
//!    and the route's **per-try timeout** bounds each attempt (a timed-out attempt is retried).
//!    Each attempt's response arrives classified from stage 5 (failure accrual judges it once;
//!    the metrics and the retry policy read that judgment).
//!
//! Under them, stage 4's split. The stack is built once per destination and kept in a cache
//! (evicted when idle); when discovery changes the destination, the next request finds it
//! rebuilt over the same balancers ([`LogicalStack`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::BoxError;
use mesh_core::error::{Reason, Unavailable};
use mesh_core::metrics::Labels;
use mesh_core::rescue::RescueLayer;
use mesh_core::retry::{RetryBudget, RetryLayer};
use mesh_core::stack::NewService;
use mesh_core::stack::cache::{Cache, Cached};
use mesh_core::tap::TapMeta;
use mesh_core::timeout::{AttemptTimeout, RouteTimeout, TimeoutLayer};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_service::Service;

use super::split::NewSplit;
use super::target::{DestinationMeta, Logical, Profiled};
use super::{Outbound, RspBody, error_response};
use crate::discovery::{Destination, Discover, Protocol, Route};
use crate::headers;
use crate::runtime::Runtime;

/// A destination's stack as built from one profile.
type ProfileStack =
    BoxCloneSyncService<http::Request<Incoming>, http::Response<RspBody>, Infallible>;

/// A destination's stack, from the logical cache.
pub(crate) type LogicalStack = Cached<ProfileSwitch>;

/// Hands out each destination's stack, building it on first use. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NewLogical {
    cache: Cache<Logical, NewProfileSwitch>,
}

/// Builds a destination's [`ProfileSwitch`].
#[derive(Clone)]
pub(crate) struct NewProfileSwitch {
    rt: Runtime,
    discovery: Arc<dyn Discover>,
    split: NewSplit,
}

/// The stack of one destination, rebuilt from the current profile when discovery changes it.
/// Cheap to clone; the clones share the current stack.
#[derive(Clone)]
pub(crate) struct ProfileSwitch {
    shared: Arc<Switched>,
}

struct Switched {
    current: ArcSwap<ProfileStack>,
    /// Stops the task that follows the profile when the last clone goes.
    _follow: DropGuard,
}

impl Outbound<NewSplit> {
    /// The logical stack over each destination's split, cached per destination.
    pub(crate) fn push_logical(self) -> Outbound<NewLogical> {
        let rt = self.rt.clone();
        let discovery = self.discovery.clone();
        let idle = self.rt.config.idle_timeout;
        self.map_stack(|split| NewLogical {
            cache: Cache::new(
                NewProfileSwitch {
                    rt,
                    discovery,
                    split,
                },
                idle,
            ),
        })
    }
}

impl NewService<Logical> for NewLogical {
    type Service = LogicalStack;

    fn new_service(&self, target: Logical) -> LogicalStack {
        self.cache.get(target)
    }
}

// === impl NewProfileSwitch ===

impl NewService<Logical> for NewProfileSwitch {
    type Service = ProfileSwitch;

    fn new_service(&self, logical: Logical) -> ProfileSwitch {
        let Some(mut profiles) = self.discovery.resolve(&logical.authority) else {
            let unknown = Unavailable::new(logical.authority.clone(), Reason::UnknownDestination);
            return ProfileSwitch::fixed(failing(unknown));
        };
        let first = profiles.borrow_and_update().clone();
        let stop = CancellationToken::new();
        let shared = Arc::new(Switched {
            current: ArcSwap::from_pointee(self.build(&logical, first)),
            _follow: stop.clone().drop_guard(),
        });
        tokio::spawn(follow(
            Arc::downgrade(&shared),
            profiles,
            stop,
            self.clone(),
            logical,
        ));
        ProfileSwitch { shared }
    }
}

/// Rebuilds the switch's stack each time discovery changes the destination, until the switch is
/// dropped (evicted from the cache) or discovery forgets the destination.
async fn follow(
    switch: std::sync::Weak<Switched>,
    mut profiles: watch::Receiver<Arc<Destination>>,
    stop: CancellationToken,
    new: NewProfileSwitch,
    logical: Logical,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = profiles.changed() => if changed.is_err() { return },
        }
        let dest = profiles.borrow_and_update().clone();
        let Some(switch) = switch.upgrade() else {
            return;
        };
        tracing::debug!(authority = %logical.authority, "the destination changed; rebuilding its stack");
        switch.current.store(Arc::new(new.build(&logical, dest)));
    }
}

impl NewProfileSwitch {
    /// The stack of `logical` as `dest` describes it.
    fn build(&self, logical: &Logical, dest: Arc<Destination>) -> ProfileStack {
        let authority = &logical.authority;
        if dest.protocol == Protocol::Opaque {
            return failing(Unavailable::new(
                authority.clone(),
                Reason::OpaqueDestination,
            ));
        }
        let peer_authority: http::uri::Authority = match authority.parse() {
            Ok(a) => a,
            Err(_) => {
                return failing(Unavailable::new(
                    authority.clone(),
                    Reason::UnknownDestination,
                ));
            }
        };
        let rt = &self.rt;
        let meta = Arc::new(self.meta(authority, &dest));
        let labels = meta.labels.clone();
        let split = self.split.new_service(Profiled {
            logical: logical.clone(),
            dest: dest.clone(),
            meta,
        });
        let budget = match dest.retry_budget {
            Some((ratio, min, ttl)) => RetryBudget::new(ratio, min, ttl).unwrap_or_else(|error| {
                tracing::warn!(%authority, %error, "invalid retry budget; using the default");
                RetryBudget::default()
            }),
            None => RetryBudget::default(),
        };
        let routes: Arc<[Route]> = dest.routes.clone().into();
        let default_timeout = dest.timeout;
        let stack = ServiceBuilder::new()
            .map_request(move |mut req: http::Request<Incoming>| {
                route(&mut req, &routes, default_timeout);
                if let Err(error) = headers::to_peer(&mut req, &peer_authority) {
                    tracing::debug!(%error, "cannot rewrite the request for the peer");
                }
                req
            })
            .layer(RescueLayer::new())
            .layer(rt.metrics.http.layer(labels.clone()))
            .layer(TimeoutLayer::per_route())
            // As Linkerd: only routes a profile marks retryable are retried.
            .layer(
                RetryLayer::new(budget)
                    .only_marked_routes(true)
                    .counters(rt.metrics.retries.counters(&labels)),
            )
            .layer(rt.metrics.http_actual.layer(labels))
            // Under the retries: a route's per-try timeout, so a timed-out attempt is retried
            // while the request's own timeout (above) has room.
            .layer(TimeoutLayer::per_route().per_attempt())
            .service(split)
            .map_response(|rsp: http::Response<_>| {
                let (mut parts, body) = rsp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                http::Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            });
        BoxCloneSyncService::new(stack)
    }

    /// The labels of a destination's metrics and tap events.
    fn meta(&self, authority: &str, dest: &Destination) -> DestinationMeta {
        let mut labels = Labels::new()
            .with("direction", "outbound")
            .with("authority", authority);
        if let Some((svc, ns)) = service_and_namespace(authority) {
            labels = labels.with("dst_service", svc).with("dst_namespace", ns);
        }
        let meshed = dest.all_endpoints().iter().all(|e| e.identity.is_some());
        let labels = labels.with("tls", if meshed { "true" } else { "no_identity" });
        let tap = TapMeta::outbound()
            .with_source_identity(self.rt.creds.identity().as_str().to_owned())
            .with_tls(meshed)
            .with_destination_label("authority", authority);
        DestinationMeta { labels, tap }
    }
}

impl std::fmt::Debug for NewProfileSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewProfileSwitch").finish_non_exhaustive()
    }
}

// === impl ProfileSwitch ===

impl ProfileSwitch {
    /// A switch that never changes.
    fn fixed(stack: ProfileStack) -> Self {
        Self {
            shared: Arc::new(Switched {
                current: ArcSwap::from_pointee(stack),
                _follow: CancellationToken::new().drop_guard(),
            }),
        }
    }
}

impl Service<http::Request<Incoming>> for ProfileSwitch {
    type Response = http::Response<RspBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<RspBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The stack answers every request (errors become responses), so it is always ready;
        // readiness is awaited per request on the current stack.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        let stack = ProfileStack::clone(&self.shared.current.load());
        Box::pin(stack.oneshot(req))
    }
}

impl std::fmt::Debug for ProfileSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileSwitch").finish_non_exhaustive()
    }
}

/// A stack that answers every request with `error`.
fn failing(error: Unavailable) -> ProfileStack {
    BoxCloneSyncService::new(tower::service_fn(move |req: http::Request<Incoming>| {
        let rsp = error_response(&error, super::is_grpc(&req));
        std::future::ready(Ok::<_, Infallible>(rsp))
    }))
}

/// Matches `req` against the profile's routes (first match wins) and marks it with what the
/// route says: its name for the metrics, its timeout, whether it may be retried.
fn route(req: &mut http::Request<Incoming>, routes: &[Route], default: Option<Duration>) {
    let matched = routes.iter().find(|r| r.matches(req));
    let timeout = matched.and_then(|r| r.timeout).or(default);
    if let Some(t) = timeout {
        req.extensions_mut().insert(RouteTimeout(t));
    }
    if let Some(r) = matched {
        if let Some(retry) = &r.retry {
            req.extensions_mut().insert(retry.clone());
            if let Some(t) = r.attempt_timeout {
                req.extensions_mut().insert(AttemptTimeout(t));
            }
        }
        req.extensions_mut().insert(r.name.clone());
    }
}

/// `svc.ns[.svc.cluster.local]:port` -> (svc, ns).
fn service_and_namespace(authority: &str) -> Option<(&str, &str)> {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let mut parts = host.split('.');
    let svc = parts.next()?;
    let ns = parts.next()?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some((svc, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_services() {
        assert_eq!(
            service_and_namespace("voting.emojivoto:8080"),
            Some(("voting", "emojivoto"))
        );
        assert_eq!(
            service_and_namespace("voting.emojivoto.svc.cluster.local:8080"),
            Some(("voting", "emojivoto"))
        );
        assert_eq!(service_and_namespace("127.0.0.1:80"), None);
        assert_eq!(service_and_namespace("localhost:80"), None);
    }
}
