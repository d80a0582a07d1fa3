//! Stage 4, per connection: may this client call the app? The port's default policy, with
//! Linkerd's names. A refused HTTP connection is still served, each request answered with a 403
//! naming the policy (`l5d-proxy-error`); a refused TCP connection is closed. Either way nothing
//! reaches the app, and the refusal is counted (`authz_deny_total`).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::BoxError;
use mesh_core::stack::Param;
use mesh_tls::ServiceIdentity;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::util::BoxCloneService;

use super::Inbound;
use super::http_server::{HttpStack, NewHttp};
use super::opaque::Opaque;
use super::target::{Http, Tls};
use crate::runtime::Runtime;

/// Which clients may call a port, with Linkerd's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Only meshed clients with a verified identity.
    AllAuthenticated,
    /// Anyone, meshed or not (Linkerd's default).
    #[default]
    AllUnauthenticated,
    /// Meshed clients, and unmeshed ones from loopback or private (cluster) networks.
    ClusterUnauthenticated,
    /// Nobody.
    Deny,
}

/// A policy name that is not one of Linkerd's.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown policy {0:?}; use all-authenticated, all-unauthenticated, cluster-unauthenticated or deny"
)]
pub struct UnknownPolicy(String);

impl std::str::FromStr for DefaultPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "all-authenticated" => Self::AllAuthenticated,
            "all-unauthenticated" => Self::AllUnauthenticated,
            "cluster-unauthenticated" => Self::ClusterUnauthenticated,
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
            Self::Deny => "deny",
        }
    }

    /// Whether a client with `identity` (None: unauthenticated) from `addr` may call.
    pub fn allows(&self, identity: Option<&ServiceIdentity>, addr: IpAddr) -> bool {
        match self {
            Self::Deny => false,
            Self::AllUnauthenticated => true,
            Self::AllAuthenticated => identity.is_some(),
            Self::ClusterUnauthenticated => identity.is_some() || is_cluster_network(addr),
        }
    }
}

fn is_cluster_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Lets authorized connections through to the HTTP server or the opaque forwarder. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub(crate) struct Authorize {
    rt: Runtime,
    policy: DefaultPolicy,
    http: NewHttp,
    opaque: Opaque,
}

impl Inbound<NewHttp> {
    /// Authorization by `policy` in front of the HTTP server and the opaque forwarder.
    pub(crate) fn push_authorize(self, policy: DefaultPolicy) -> Inbound<Authorize> {
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
    /// The policy (stage 3 asks for client certificates only when it needs them).
    pub(crate) fn policy(&self) -> DefaultPolicy {
        self.policy
    }

    fn allows(&self, target: &Tls) -> bool {
        let client: Option<ServiceIdentity> = target.param();
        let addr: IpAddr = target.param();
        self.policy.allows(client.as_ref(), addr)
    }

    /// Serves an HTTP connection: its requests go to the app if the policy allows its client,
    /// and are refused with 403 if not.
    pub(crate) async fn serve_http<IO>(&self, io: IO, target: Http)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.allows(&target.tls) {
            return self.http.serve(io, target).await;
        }
        let denied = self.denied(&target.tls);
        self.http.serve_with(io, target.version, denied).await;
    }

    /// Serves an opaque connection: forwarded to the app if the policy allows its client,
    /// closed if not.
    pub(crate) async fn serve_opaque<IO>(&self, io: IO, target: Tls)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.allows(&target) {
            return self
                .opaque
                .serve(io, &target, self.http.labels(&target))
                .await;
        }
        self.rt
            .metrics
            .authz_deny
            .get_or_create(&self.http.labels(&target))
            .inc();
        tracing::info!(peer = %target.accept.peer, policy = self.policy.as_str(), "TCP connection refused by policy");
    }

    /// Answers every request with a 403 naming the policy.
    fn denied(&self, target: &Tls) -> HttpStack {
        let deny = self
            .rt
            .metrics
            .authz_deny
            .get_or_create(&self.http.labels(target))
            .clone();
        let msg: Arc<str> = format!(
            "unauthorized: the {} policy of this server refuses {} clients",
            self.policy.as_str(),
            if target.client.is_some() {
                "these"
            } else {
                "unauthenticated"
            }
        )
        .into();
        BoxCloneService::new(tower::service_fn(move |_req: http::Request<Incoming>| {
            deny.inc();
            let mut rsp = http::Response::new(
                http_body_util::Full::new(Bytes::from(format!("{msg}\n")))
                    .map_err(BoxError::from)
                    .boxed_unsync(),
            );
            *rsp.status_mut() = http::StatusCode::FORBIDDEN;
            if let Ok(v) = http::HeaderValue::from_str(&msg) {
                rsp.headers_mut()
                    .insert(mesh_core::rescue::L5D_PROXY_ERROR, v);
            }
            std::future::ready(Ok::<_, Infallible>(rsp))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let id: ServiceIdentity = "web.ns.serviceaccount.identity.mesh.cluster.local"
            .parse()
            .unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        use DefaultPolicy::*;
        assert!(AllUnauthenticated.allows(None, public));
        assert!(!AllAuthenticated.allows(None, lo));
        assert!(AllAuthenticated.allows(Some(&id), public));
        assert!(ClusterUnauthenticated.allows(None, private));
        assert!(!ClusterUnauthenticated.allows(None, public));
        assert!(!Deny.allows(Some(&id), lo));
        assert!(
            "nobody"
                .parse::<DefaultPolicy>()
                .unwrap_err()
                .to_string()
                .contains("all-authenticated")
        );
    }
}
