//! The outbound stack: from the app to the peer proxy that serves the destination.
//!
//! Per request, outermost first (each layer sits where it does for a reason):
//!
//! 1. **route** — match the destination's profile routes, put the route's timeout and
//!    retryability in the request's extensions, rewrite the request for the peer (HTTP/2 with
//!    `l5d-orig-proto`, hop-by-hop and mesh headers removed). First, so every layer below sees
//!    the final request.
//! 2. **rescue** — turn every error below into a response naming the cause (502/503/504 with
//!    `l5d-proxy-error`). Above metrics' error counting, so a failure is both counted and
//!    answered.
//! 3. **metrics** (effective: one per request) — Linkerd's labels for the target.
//! 4. **timeout** — the route's or destination's request timeout; above retries, so it bounds
//!    the whole exchange.
//! 5. **retry** — with the destination's budget; below it, **actual** metrics count attempts.
//! 6. **split** — weighted backends (a traffic split); one **balancer** per backend: P2C over
//!    peak-EWMA with failure accrual and a failfast queue (`mesh-balance`).
//! 7. **tap** and **endpoint** — tap per endpoint, as Linkerd's, so each event names the
//!    endpoint picked (address and identity) and each retry is an attempt of its own; one
//!    multiplexed HTTP/2 connection per endpoint over mutual TLS, expecting the endpoint's
//!    identity ([`EndpointClient`]).
//!
//! A stack is built once per destination and cached; it is rebuilt when discovery changes the
//! destination.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesh_balance::{Builder, Endpoint, Split, TlsIdentity, discover};
use mesh_core::BoxError;
use mesh_core::metrics::Labels;
use mesh_core::rescue::{RescueLayer, Unavailable};
use mesh_core::retry::{RetryBudget, RetryLayer, RetryableRoute};
use mesh_core::tap::{TapLayer, TapMeta, TapPeer};
use mesh_core::timeout::{RouteTimeout, TimeoutLayer};
use mesh_tls::ServiceIdentity;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::discovery::{Destination, Discover, Protocol, Route, normalize_authority};
use crate::endpoint::{ALPN_OPAQUE, Connector, EndpointClient};
use crate::runtime::Runtime;
use crate::{headers, serve};

/// The response body every stack answers with.
pub type RspBody = UnsyncBoxBody<Bytes, BoxError>;

type Logical = BoxCloneService<http::Request<Incoming>, http::Response<RspBody>, Infallible>;

/// The outbound side of a proxy.
pub struct Outbound {
    rt: Runtime,
    discovery: Arc<dyn Discover>,
    connector: Connector,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

struct Cached {
    svc: Logical,
    dest: watch::Receiver<Arc<Destination>>,
}

impl Outbound {
    /// The outbound side, resolving destinations with `discovery`.
    pub fn new(rt: Runtime, discovery: Arc<dyn Discover>) -> Arc<Self> {
        let connector = Connector::new(rt.creds.clone(), rt.config.connect_timeout);
        Arc::new(Self {
            rt,
            discovery,
            connector,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Serves HTTP on `listener`: requests go to the destination named by their authority, or
    /// to `fixed` for a per-upstream listener.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener, fixed: Option<String>) {
        let fixed: Option<Arc<str>> = fixed.map(|f| normalize_authority(&f).into());
        let rt = self.rt.clone();
        serve::accept_loop(listener, rt.clone(), "outbound", move |tcp, peer| {
            let this = self.clone();
            let fixed = fixed.clone();
            async move {
                let rt = this.rt.clone();
                let svc = hyper::service::service_fn(move |req| {
                    this.clone().handle(req, peer, fixed.clone())
                });
                serve::http_auto(tcp, svc, &rt, "outbound").await;
            }
        })
        .await;
    }

    /// Serves opaque TCP on `listener`, forwarded byte for byte to an endpoint of `authority`.
    pub async fn serve_opaque(self: Arc<Self>, listener: TcpListener, authority: String) {
        let authority = normalize_authority(&authority);
        let rt = self.rt.clone();
        serve::accept_loop(listener, rt, "outbound", move |tcp, _peer| {
            let this = self.clone();
            let authority = authority.clone();
            async move {
                if let Err(error) = this.forward_opaque(tcp, &authority).await {
                    tracing::info!(%error, %authority, "opaque connection failed");
                    this.rt.metrics.conn_error("outbound", "opaque_connect");
                }
            }
        })
        .await;
    }

    /// Serves connections redirected to `listener` by iptables (Kubernetes-style transparent
    /// proxying): the original destination (`SO_ORIGINAL_DST`) picks the destination. Known
    /// destinations are proxied (HTTP, or opaque for opaque destinations and server-speaks-first
    /// ports); unknown ones are forwarded to the original address as they are.
    pub async fn serve_orig_dst(self: Arc<Self>, listener: TcpListener) {
        let local = listener.local_addr().ok();
        let rt = self.rt.clone();
        serve::accept_loop(listener, rt, "outbound", move |tcp, peer| {
            let this = self.clone();
            async move {
                let orig = match crate::orig_dst::original_dst(&tcp) {
                    Ok(orig) if Some(orig) != local => orig,
                    Ok(_) => {
                        tracing::info!(%peer, "connection was not redirected: no original destination; is the iptables REDIRECT rule in place?");
                        this.rt.metrics.conn_error("outbound", "no_original_dst");
                        return;
                    }
                    Err(error) => {
                        tracing::info!(%error, %peer, "cannot read the original destination");
                        this.rt.metrics.conn_error("outbound", "no_original_dst");
                        return;
                    }
                };
                let authority = orig.to_string();
                let known = this.discovery.resolve(&authority);
                let opaque_port = this.rt.config.opaque_ports.contains(&orig.port());
                match known {
                    Some(d) if d.borrow().protocol == Protocol::Opaque || opaque_port => {
                        if let Err(error) = this.forward_opaque(tcp, &authority).await {
                            tracing::info!(%error, %authority, "opaque connection failed");
                            this.rt.metrics.conn_error("outbound", "opaque_connect");
                        }
                    }
                    Some(_) => {
                        let rt = this.rt.clone();
                        let fixed: Option<Arc<str>> = Some(authority.into());
                        let svc = hyper::service::service_fn(move |req| {
                            this.clone().handle(req, peer, fixed.clone())
                        });
                        serve::http_auto(tcp, svc, &rt, "outbound").await;
                    }
                    None => {
                        // Not part of the mesh: pass the bytes through to where they were going.
                        let labels = Labels::new()
                            .with("direction", "outbound")
                            .with("authority", authority.as_str())
                            .with("tls", "no_identity");
                        let mut client = this.rt.metrics.tcp.sensor(&labels).wrap(tcp);
                        match tokio::time::timeout(
                            this.rt.config.connect_timeout,
                            TcpStream::connect(orig),
                        )
                        .await
                        {
                            Ok(Ok(mut server)) => {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                            _ => this.rt.metrics.conn_error("outbound", "passthrough_connect"),
                        }
                    }
                }
            }
        })
        .await;
    }

    async fn forward_opaque(&self, tcp: TcpStream, authority: &str) -> Result<(), BoxError> {
        let dest = self
            .discovery
            .resolve(authority)
            .ok_or_else(|| unknown(authority))?;
        let endpoints = dest.borrow().all_endpoints();
        let labels = Labels::new()
            .with("direction", "outbound")
            .with("authority", authority);
        let mut client = self.rt.metrics.tcp.sensor(&labels).wrap(tcp);
        // Try endpoints in a random order until one connects.
        let start = rand::random_range(0..endpoints.len().max(1));
        let mut last = None;
        for i in 0..endpoints.len() {
            let ep = &endpoints[(start + i) % endpoints.len()];
            match self
                .connector
                .connect(ep.addr, ep.identity.as_ref(), ALPN_OPAQUE)
                .await
            {
                Ok(mut peer) => {
                    tokio::io::copy_bidirectional(&mut client, &mut peer).await?;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => Box::new(e),
            None => Box::new(mesh_balance_unavailable(authority)),
        })
    }

    async fn handle(
        self: Arc<Self>,
        mut req: http::Request<Incoming>,
        peer: SocketAddr,
        fixed: Option<Arc<str>>,
    ) -> Result<http::Response<RspBody>, Infallible> {
        let authority = match fixed.as_deref() {
            Some(a) => a.to_string(),
            None => match headers::authority_of(&req) {
                Some(a) => normalize_authority(&a),
                None => {
                    return Ok(error_response(
                        &Unavailable::new(
                            "the request names no authority (no Host header or absolute URI)",
                        ),
                        false,
                    ));
                }
            },
        };
        req.extensions_mut().insert(TapPeer::new(peer));
        if headers::is_upgrade(&req) {
            return Ok(self.upgrade(req, &authority).await);
        }
        let svc = match self.logical(&authority) {
            Ok(svc) => svc,
            Err(e) => return Ok(error_response(&*e, is_grpc(&req))),
        };
        svc.oneshot(req).await
    }

    /// The cached stack for `authority`, rebuilt if its destination changed.
    fn logical(&self, authority: &str) -> Result<Logical, BoxError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(authority)
            && !c.dest.has_changed().unwrap_or(true)
        {
            return Ok(c.svc.clone());
        }
        let mut dest = self
            .discovery
            .resolve(authority)
            .ok_or_else(|| unknown(authority))?;
        let current = dest.borrow_and_update().clone();
        if current.protocol == Protocol::Opaque {
            return Err(format!(
                "{authority} is an opaque (TCP) destination; send it TCP through a per-upstream listener"
            )
            .into());
        }
        let svc = self.build(authority, &current)?;
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(
            authority.to_string(),
            Cached {
                svc: svc.clone(),
                dest,
            },
        );
        Ok(svc)
    }

    fn build(&self, authority: &str, dest: &Destination) -> Result<Logical, BoxError> {
        let peer_authority: http::uri::Authority = authority
            .parse()
            .map_err(|e| format!("invalid authority {authority:?}: {e}"))?;
        let rt = &self.rt;
        let mut labels = Labels::new()
            .with("direction", "outbound")
            .with("authority", authority);
        if let Some((svc, ns)) = service_and_namespace(authority) {
            labels = labels.with("dst_service", svc).with("dst_namespace", ns);
        }
        let meshed = dest.all_endpoints().iter().all(|e| e.identity.is_some());
        let labels = labels.with("tls", if meshed { "true" } else { "no_identity" });

        // Tap sits at the endpoint, as in Linkerd: each event names the endpoint the balancer
        // picked (its address and identity), and each retry is an attempt of its own.
        let tap_meta = TapMeta::outbound()
            .with_source_identity(rt.creds.identity().as_str().to_string())
            .with_tls(meshed)
            .with_destination_label("authority", authority);
        let backends = dest.backends.iter().enumerate().map(|(i, b)| {
            // One kind of discovery stream for both: a live set (from the control plane), or a
            // set holding the fixed endpoints of a static destination.
            let set = match &b.live {
                Some((_, set)) => set.clone(),
                None => {
                    let set = discover::EndpointSet::new();
                    set.reset(b.endpoints.iter().map(|e| {
                        Endpoint::new(e.addr).with_identity(
                            e.identity
                                .as_ref()
                                .map(|id| TlsIdentity::new(id.as_str().to_string())),
                        )
                    }));
                    set
                }
            };
            let connector = self.connector.clone();
            let (tap, tap_meta) = (rt.tap.clone(), tap_meta.clone());
            let new_endpoint = move |ep: Endpoint| {
                let identity = ep
                    .identity()
                    .and_then(|i| ServiceIdentity::parse(i.as_str()).ok());
                let mut meta = tap_meta.clone().with_destination_addr(ep.addr());
                if let Some(id) = &identity {
                    meta = meta.with_destination_identity(id.as_str().to_string());
                }
                TapLayer::new(tap.clone(), meta).layer(EndpointClient::new(
                    ep.addr(),
                    identity,
                    connector.clone(),
                ))
            };
            let balancer = Builder::new(format!("{authority}/backend-{i}"))
                .failfast_timeout(rt.config.failfast_timeout)
                // Failure accrual is opt-in, as Linkerd's is: a destination's policy turns it on.
                .failure_accrual(None)
                .metrics(&rt.metrics.balance)
                .build(set.subscribe(), new_endpoint);
            (format!("backend-{i}"), b.weight, balancer)
        });
        let (split, _weights) = Split::new(authority.to_string(), backends);

        let budget = match dest.retry_budget {
            Some((ratio, min, ttl)) => RetryBudget::new(ratio, min, ttl)?,
            None => RetryBudget::default(),
        };
        let routes: Arc<[Route]> = dest.routes.clone().into();
        let default_timeout = dest.timeout;
        let svc = ServiceBuilder::new()
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
            .service(split)
            .map_response(|rsp: http::Response<_>| {
                let (mut parts, body) = rsp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                http::Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            });
        Ok(BoxCloneService::new(svc))
    }

    /// WebSocket and `CONNECT`: a dedicated HTTP/1.1 connection to one endpoint, then the two
    /// upgraded streams are spliced.
    async fn upgrade(
        &self,
        mut req: http::Request<Incoming>,
        authority: &str,
    ) -> http::Response<RspBody> {
        let grpc = false;
        let Some(dest) = self.discovery.resolve(authority) else {
            return error_response(&*unknown(authority), grpc);
        };
        let ep = {
            let d = dest.borrow();
            let eps: Vec<_> = d
                .backends
                .iter()
                .flat_map(|b| b.endpoints.clone())
                .collect();
            if eps.is_empty() {
                return error_response(&mesh_balance_unavailable(authority), grpc);
            }
            eps[rand::random_range(0..eps.len())].clone()
        };
        let client_upgrade = hyper::upgrade::on(&mut req);
        req.headers_mut().remove(headers::L5D_CLIENT_ID);
        let client = EndpointClient::new(ep.addr, ep.identity.clone(), self.connector.clone());
        let mut rsp = match client.upgrade(req).await {
            Ok(rsp) => rsp,
            Err(e) => return error_response(&*e, grpc),
        };
        if rsp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let peer_upgrade = hyper::upgrade::on(&mut rsp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, peer_upgrade) {
                    Ok((a, b)) => {
                        let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                        if let Err(error) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                            tracing::debug!(%error, "upgraded stream ended");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            });
        }
        rsp.map(|b| b.map_err(BoxError::from).boxed_unsync())
    }
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
        if r.retryable {
            req.extensions_mut().insert(RetryableRoute);
        }
        req.extensions_mut().insert(r.name.clone());
    }
}

fn unknown(authority: &str) -> BoxError {
    Box::new(Unavailable::new(format!(
        "no destination named {authority} is known to this proxy; check the name the app calls, \
         or add it to the destinations file / the control plane's catalog"
    )))
}

fn mesh_balance_unavailable(authority: &str) -> Unavailable {
    Unavailable::new(format!("{authority} has no endpoints"))
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

fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A synthesized error response with the stack's body type.
pub(crate) fn error_response(
    error: &(dyn std::error::Error + 'static),
    grpc: bool,
) -> http::Response<RspBody> {
    mesh_core::rescue::error_response::<RspBody>(error, grpc)
        .map(|b| b.map_err(BoxError::from).boxed_unsync())
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
