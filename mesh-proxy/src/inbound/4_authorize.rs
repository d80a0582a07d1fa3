//! Stage 4: may this client call the app? The port's [policy](super::policy), with Linkerd's
//! semantics:
//!
//! - an **opaque** connection is checked once, against the port's authorizations: refused, it is
//!   closed before a byte reaches the app;
//! - an **HTTP** connection is served, and each request is checked against its route's
//!   authorizations ([`AuthorizeLayer`], the innermost layer of stage 5, so a refusal is counted
//!   by the request metrics and seen by tap): refused, it gets a 403 (gRPC: `PERMISSION_DENIED`)
//!   naming the reason in `l5d-proxy-error`; a request that matches no route gets a 404 (gRPC:
//!   `NOT_FOUND`). Nothing reaches the app either way.
//!
//! Every decision is counted under Linkerd's names: `inbound_http_authz_allow_total`,
//! `inbound_http_authz_deny_total`, `inbound_tcp_authz_allow_total`,
//! `inbound_tcp_authz_deny_total`, labelled with the server, route and authorization that
//! decided (`srv_*`, `route_*`, `authz_*`), `target_addr`, `tls` and `client_id`.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use http_body_util::Full;
use ipnet::IpNet;
use mesh_core::metrics::Labels;
use mesh_tls::ServiceIdentity;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_layer::Layer;
use tower_service::Service;

use super::Inbound;
use super::http_server::NewHttp;
use super::opaque::Opaque;
use super::policy::{Meta, PolicyHandle, ServerPolicy, default_policy};
use super::target::{Http, Tls};
use crate::runtime::Runtime;

/// Which clients may call a port, with Linkerd's names: the policy a proxy applies on its own,
/// without a control plane (with one, the control plane's answer for the port applies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Meshed clients (any verified identity) from anywhere.
    AllAuthenticated,
    /// Anyone, meshed or not, from anywhere (Linkerd's default).
    #[default]
    AllUnauthenticated,
    /// Anyone from the cluster networks (private ranges and loopback).
    ClusterUnauthenticated,
    /// Meshed clients from the cluster networks.
    ClusterAuthenticated,
    /// Nobody.
    Deny,
}

/// A policy name that is not one of Linkerd's.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown policy {0:?}; use all-authenticated, all-unauthenticated, cluster-authenticated, \
     cluster-unauthenticated or deny"
)]
pub struct UnknownPolicy(String);

impl std::str::FromStr for DefaultPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "all-authenticated" => Self::AllAuthenticated,
            "all-unauthenticated" => Self::AllUnauthenticated,
            "cluster-unauthenticated" => Self::ClusterUnauthenticated,
            "cluster-authenticated" => Self::ClusterAuthenticated,
            "deny" => Self::Deny,
            other => return Err(UnknownPolicy(other.to_owned())),
        })
    }
}

impl DefaultPolicy {
    /// The policy's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AllAuthenticated => "all-authenticated",
            Self::AllUnauthenticated => "all-unauthenticated",
            Self::ClusterUnauthenticated => "cluster-unauthenticated",
            Self::ClusterAuthenticated => "cluster-authenticated",
            Self::Deny => "deny",
        }
    }

    /// The port policy this default stands for.
    pub(crate) fn to_policy(self) -> ServerPolicy {
        let all: Vec<IpNet> = ["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let cluster = cluster_networks();
        let (unauthenticated, nets) = match self {
            Self::AllUnauthenticated => (true, all),
            Self::AllAuthenticated => (false, all),
            Self::ClusterUnauthenticated => (true, cluster),
            Self::ClusterAuthenticated => (false, cluster),
            Self::Deny => (false, Vec::new()),
        };
        default_policy(self.as_str(), unauthenticated, &nets)
    }
}

/// Linkerd's default cluster networks, and loopback (local mode runs on 127.0.0.1).
fn cluster_networks() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fd00::/8",
        "127.0.0.0/8",
        "::1/128",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

/// Lets authorized connections through to the HTTP server or the opaque forwarder. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub(crate) struct Authorize {
    rt: Runtime,
    policy: PolicyHandle,
    http: NewHttp,
    opaque: Opaque,
}

impl Inbound<NewHttp> {
    /// Authorization by the port's `policy` in front of the HTTP server and the opaque
    /// forwarder.
    pub(crate) fn push_authorize(self, policy: PolicyHandle) -> Inbound<Authorize> {
        let rt = self.rt.clone();
        self.map_stack(|http| Authorize {
            opaque: Opaque::new(rt.clone(), http.app().clone()),
            rt,
            policy,
            http,
        })
    }
}

impl Authorize {
    /// The port's policy (stage 3 asks it whether a client certificate is required).
    pub(crate) fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// Serves an HTTP connection; each request is authorized on its route.
    pub(crate) async fn serve_http<IO>(&self, io: IO, target: Http)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let authorize = AuthorizeLayer {
            policy: self.policy.clone(),
            client: target.tls.client.clone(),
            ip: target.tls.accept.peer.ip(),
            counters: Arc::new(AuthzCounters::new(&self.rt, &self.http.labels(&target.tls))),
        };
        self.http.serve(io, target, authorize).await;
    }

    /// Serves an opaque connection: forwarded to the app if the port's policy admits its
    /// client, closed if not.
    pub(crate) async fn serve_opaque<IO>(&self, io: IO, target: Tls)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let labels = self.http.labels(&target);
        let policy = self.policy.load();
        let m = &self.rt.metrics;
        match policy.authorize_connection(target.client.as_ref(), target.accept.peer.ip()) {
            Some(authz) => {
                let allow = labels
                    .clone()
                    .with_meta("srv", &policy.meta)
                    .with_meta("authz", &authz.meta);
                m.tcp_authz_allow.get_or_create(&allow).inc();
                self.opaque.serve(io, &target, labels).await;
            }
            None => {
                let deny = labels.with_meta("srv", &policy.meta);
                m.tcp_authz_deny.get_or_create(&deny).inc();
                tracing::info!(
                    peer = %target.accept.peer,
                    client = ?target.client,
                    server = %policy.meta.name,
                    "TCP connection refused by policy"
                );
            }
        }
    }
}

// === per request ===

/// Authorizes each request of a connection on its route. See the [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct AuthorizeLayer {
    policy: PolicyHandle,
    client: Option<ServiceIdentity>,
    ip: IpAddr,
    counters: Arc<AuthzCounters>,
}

/// [`AuthorizeLayer`]'s service.
#[derive(Clone, Debug)]
pub(crate) struct AuthorizeRequest<S> {
    layer: AuthorizeLayer,
    inner: S,
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = AuthorizeRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthorizeRequest {
            layer: self.clone(),
            inner,
        }
    }
}

/// Why a request was refused.
enum Refusal {
    NoRoute,
    Unauthorized(Arc<str>),
}

impl<S, B, RB> Service<http::Request<B>> for AuthorizeRequest<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    RB: http_body::Body<Data = Bytes>,
{
    type Response = http::Response<AuthorizedBody<RB>>;
    type Error = S::Error;
    type Future = Either<
        futures_util::future::MapOk<
            S::Future,
            fn(http::Response<RB>) -> http::Response<AuthorizedBody<RB>>,
        >,
        std::future::Ready<Result<http::Response<AuthorizedBody<RB>>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        match self.layer.check(&req) {
            Ok(()) => Either::Left(
                self.inner
                    .call(req)
                    .map_ok(|rsp| rsp.map(|inner| AuthorizedBody::Inner { inner })),
            ),
            Err(refusal) => Either::Right(std::future::ready(Ok(
                refused(&req, refusal).map(|refusal| AuthorizedBody::Refused { refusal })
            ))),
        }
    }
}

impl AuthorizeLayer {
    fn check<B>(&self, req: &http::Request<B>) -> Result<(), Refusal> {
        let generation = self.policy.generation();
        let policy = self.policy.load();
        let Some(r) = policy.route_of(req) else {
            self.counters.get(generation, &policy, None, None).inc();
            return Err(Refusal::NoRoute);
        };
        let route = &policy.routes[r];
        let authz = route
            .authorizations
            .iter()
            .position(|a| a.admits(self.client.as_ref(), self.ip));
        self.counters.get(generation, &policy, Some(r), authz).inc();
        match authz {
            Some(_) => Ok(()),
            None => Err(Refusal::Unauthorized(
                format!(
                    "unauthorized: route {} of server {} admits no {} client from {}",
                    route.meta.name,
                    policy.meta.name,
                    match &self.client {
                        Some(id) => format!("meshed {id}"),
                        None => "unauthenticated".to_owned(),
                    },
                    self.ip
                )
                .into(),
            )),
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's response body, or a refusal's text.
    #[project = AuthorizedBodyProj]
    pub(crate) enum AuthorizedBody<B> {
        Inner { #[pin] inner: B },
        Refused { #[pin] refusal: Full<Bytes> },
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for AuthorizedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        match self.project() {
            AuthorizedBodyProj::Inner { inner } => inner.poll_frame(cx),
            AuthorizedBodyProj::Refused { refusal } => refusal
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|e: Infallible| match e {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Inner { inner } => inner.is_end_stream(),
            Self::Refused { refusal } => refusal.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Inner { inner } => inner.size_hint(),
            Self::Refused { refusal } => refusal.size_hint(),
        }
    }
}

/// 403 (gRPC: `PERMISSION_DENIED`), or 404 (gRPC: `NOT_FOUND`) for a request with no route.
fn refused<B>(req: &http::Request<B>, refusal: Refusal) -> http::Response<Full<Bytes>> {
    let (status, grpc_status, message): (_, u16, Arc<str>) = match refusal {
        Refusal::Unauthorized(msg) => (http::StatusCode::FORBIDDEN, 7, msg),
        Refusal::NoRoute => (
            http::StatusCode::NOT_FOUND,
            5,
            "no route of this server matches the request".into(),
        ),
    };
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let body = if grpc {
        Bytes::new()
    } else {
        Bytes::from(format!("{message}\n"))
    };
    let mut rsp = http::Response::new(Full::new(body));
    let header = http::HeaderValue::from_str(&message)
        .unwrap_or_else(|_| http::HeaderValue::from_static("unauthorized"));
    if grpc {
        let h = rsp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", http::HeaderValue::from(grpc_status));
        h.insert("grpc-message", header.clone());
    } else {
        *rsp.status_mut() = status;
        rsp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    rsp.headers_mut()
        .insert(mesh_core::rescue::L5D_PROXY_ERROR, header);
    rsp
}

/// A connection's authorization counters, resolved once per (policy version, route,
/// authorization) rather than per request.
#[derive(Debug)]
struct AuthzCounters {
    rt: Runtime,
    base: Labels,
    cache: Mutex<Vec<(CounterKey, Counter)>>,
}

/// (policy generation, route, authorization: `None` denied).
type CounterKey = (u64, Option<usize>, Option<usize>);

impl AuthzCounters {
    fn new(rt: &Runtime, base: &Labels) -> Self {
        Self {
            rt: rt.clone(),
            base: base.clone(),
            cache: Mutex::default(),
        }
    }

    fn get(
        &self,
        generation: u64,
        policy: &ServerPolicy,
        route: Option<usize>,
        authz: Option<usize>,
    ) -> Counter {
        let key = (generation, route, authz);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = cache.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        // A new policy version makes the old entries useless.
        cache.retain(|((g, _, _), _)| *g == generation);
        let mut labels = self.base.clone().with_meta("srv", &policy.meta);
        let route = route.map(|r| &policy.routes[r]);
        let no_route = Meta::new("", "default", "");
        labels = labels.with_meta("route", route.map_or(&no_route, |r| &r.meta));
        let m = &self.rt.metrics;
        let counter = match (route, authz) {
            (Some(route), Some(a)) => {
                let labels = labels.with_meta("authz", &route.authorizations[a].meta);
                m.http_authz_allow.get_or_create(&labels).clone()
            }
            _ => m.http_authz_deny.get_or_create(&labels).clone(),
        };
        cache.push((key, counter.clone()));
        counter
    }
}

trait WithMeta {
    fn with_meta(self, prefix: &str, meta: &Meta) -> Self;
}

impl WithMeta for Labels {
    fn with_meta(self, prefix: &str, meta: &Meta) -> Self {
        self.with(format!("{prefix}_group"), &*meta.group)
            .with(format!("{prefix}_kind"), &*meta.kind)
            .with(format!("{prefix}_name"), &*meta.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policies() {
        let id: ServiceIdentity = "web.ns.serviceaccount.identity.mesh.cluster.local"
            .parse()
            .unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        use DefaultPolicy::*;
        let allows = |p: DefaultPolicy, id: Option<&ServiceIdentity>, ip| {
            p.to_policy().authorize_connection(id, ip).is_some()
        };
        assert!(allows(AllUnauthenticated, None, public));
        assert!(!allows(AllAuthenticated, None, lo));
        assert!(allows(AllAuthenticated, Some(&id), public));
        assert!(allows(ClusterUnauthenticated, None, private));
        assert!(!allows(ClusterUnauthenticated, None, public));
        assert!(allows(ClusterAuthenticated, Some(&id), private));
        assert!(!allows(ClusterAuthenticated, None, private));
        assert!(!allows(ClusterAuthenticated, Some(&id), public));
        assert!(!allows(Deny, Some(&id), lo));
        assert!(
            "nobody"
                .parse::<DefaultPolicy>()
                .unwrap_err()
                .to_string()
                .contains("all-authenticated")
        );
    }
}
