//! `mesh.control.v1.Registration`: proxies register their inbound endpoints in the local catalog.
//!
//! This is the mesh's own small gRPC service, served beside Linkerd's on the same TLS port. Its
//! messages and client are in `mesh_control_client::registration` (hand-written `prost` structs,
//! no `.proto` compilation in the build); the wire format is this protobuf:
//!
//! ```proto
//! syntax = "proto3";
//! package mesh.control.v1;
//! import "google/protobuf/duration.proto";
//!
//! service Registration {
//!   // Adds or renews an endpoint; renew by sending the same request before the lease ends.
//!   rpc Register(RegisterRequest) returns (RegisterResponse);
//!   // Removes an endpoint (a draining proxy).
//!   rpc Deregister(DeregisterRequest) returns (DeregisterResponse);
//! }
//! enum ProtocolHint { AUTO = 0; NONE = 1; H2 = 2; OPAQUE = 3; }
//! enum PortProtocol { UNSPECIFIED = 0; DETECT = 1; HTTP1 = 2; HTTP2 = 3; GRPC = 4; OPAQUE_PORT = 5; }
//! message RegisterRequest {
//!   string service = 1;             // the service name, e.g. "web"
//!   string namespace = 2;           // e.g. "emojivoto"
//!   uint32 port = 3;                // the service port (= the app port)
//!   string address = 4;             // "ip:port" clients connect to: the proxy's inbound listener
//!   string identity = 5;            // optional over mTLS (defaults to the caller's identity)
//!   ProtocolHint protocol_hint = 6;
//!   PortProtocol protocol = 7;      // the port's protocol if mesh.yaml does not declare the port
//!   string workload = 8;            // instance name, default: the service name
//!   map<string, string> labels = 9;
//!   google.protobuf.Duration lease = 10; // requested; default 30 s, clamped to [100 ms, 10 min]
//!   string default_policy = 11;     // the workload's default inbound policy, if any
//! }
//! message RegisterResponse { google.protobuf.Duration lease = 1; } // granted
//! message DeregisterRequest { string service = 1; string namespace = 2; uint32 port = 3; string address = 4; }
//! message DeregisterResponse { bool removed = 1; }
//! ```
//!
//! Why gRPC and not JSON over HTTP: proxies already hold a gRPC channel to the control plane, so
//! registration shares it, its TLS and its status codes; the messages stay typed on both sides.
//!
//! **Who may register what.** Over mutual TLS (the default), the endpoint's identity is the
//! caller's: a request naming another identity is `PERMISSION_DENIED`, one without a client
//! certificate `UNAUTHENTICATED`, and only the same identity may deregister an endpoint. So
//! nobody who merely reaches the control plane can steal a service's traffic. On a plaintext
//! server (tests), requests are trusted as given.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_control_client::registration::{
    DEREGISTER_PATH, DeregisterRequest, DeregisterResponse, REGISTER_PATH, RegisterRequest,
    RegisterResponse, SERVICE_NAME, WirePortProtocol, WireProtocolHint,
};
use mesh_tls::ServiceIdentity;
use mesh_tls::server::ClientIdentity;
use tonic::{Request, Response, Status};

use crate::catalog::{Protocol, ProtocolHint, Registration, Registry, ServiceRef};

// === Server ===

/// The registration service, over a [`Registry`].
#[derive(Clone, Debug)]
pub struct RegistrationService {
    registry: Registry,
    require_client_identity: bool,
}

impl RegistrationService {
    /// Registers into `registry`. With `require_client_identity` (any TLS server), callers must
    /// present a client certificate, and may only register their own identity.
    pub fn new(registry: Registry, require_client_identity: bool) -> Self {
        Self {
            registry,
            require_client_identity,
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> RegistrationServer {
        RegistrationServer {
            inner: Arc::new(self),
        }
    }

    fn caller(&self, peer: Option<&ClientIdentity>) -> Result<Option<ServiceIdentity>, Status> {
        match peer {
            Some(id) => Ok(Some(id.0.clone())),
            None if self.require_client_identity => Err(Status::unauthenticated(
                "registration needs a client certificate: a proxy registers after it is certified, \
                 over mutual TLS",
            )),
            None => Ok(None),
        }
    }

    /// Handles `Register`.
    pub fn register(&self, request: Request<RegisterRequest>) -> Result<RegisterResponse, Status> {
        let caller = self.caller(request.extensions().get::<ClientIdentity>())?;
        let req = request.into_inner();
        let (service, port, addr) = target(&req.service, &req.namespace, req.port, &req.address)?;
        let requested = if req.identity.is_empty() {
            None
        } else {
            Some(
                ServiceIdentity::parse(&req.identity)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            )
        };
        let identity = match (caller, requested) {
            (Some(caller), Some(requested)) if caller != requested => {
                return Err(Status::permission_denied(format!(
                    "the caller is {caller}; it may not register an endpoint for {requested}"
                )));
            }
            (Some(caller), _) => Some(caller),
            (None, requested) => requested,
        };
        let workload = if req.workload.is_empty() {
            None
        } else {
            crate::catalog::file::check_label(&req.workload)
                .map_err(|e| Status::invalid_argument(format!("invalid workload: {e}")))?;
            Some(req.workload)
        };
        let default_policy = match req.default_policy.as_str() {
            "" => None,
            p => Some(p.parse().map_err(|e: String| {
                Status::invalid_argument(format!("invalid default_policy: {e}"))
            })?),
        };
        let lease = match req.lease {
            None => Duration::ZERO,
            Some(d) => Duration::try_from(d)
                .map_err(|_| Status::invalid_argument("the lease must be a positive duration"))?,
        };
        let registration = Registration {
            service,
            port,
            addr,
            identity,
            protocol_hint: match WireProtocolHint::try_from(req.protocol_hint) {
                Ok(WireProtocolHint::Auto) | Err(_) => ProtocolHint::Auto,
                Ok(WireProtocolHint::None) => ProtocolHint::None,
                Ok(WireProtocolHint::H2) => ProtocolHint::H2,
                Ok(WireProtocolHint::Opaque) => ProtocolHint::Opaque,
            },
            protocol: match WirePortProtocol::try_from(req.protocol) {
                Ok(WirePortProtocol::Unspecified) | Err(_) => None,
                Ok(WirePortProtocol::Detect) => Some(Protocol::Detect),
                Ok(WirePortProtocol::Http1) => Some(Protocol::Http1),
                Ok(WirePortProtocol::Http2) => Some(Protocol::Http2),
                Ok(WirePortProtocol::Grpc) => Some(Protocol::Grpc),
                Ok(WirePortProtocol::OpaquePort) => Some(Protocol::Opaque),
            },
            workload,
            labels: req.labels.into_iter().collect::<BTreeMap<_, _>>(),
            default_policy,
        };
        tracing::debug!(service = %registration.service, port, %addr, "register");
        let granted = self.registry.register(registration, lease);
        Ok(RegisterResponse {
            lease: Some(crate::api::convert::duration(granted)),
        })
    }

    /// Handles `Deregister`.
    pub fn deregister(
        &self,
        request: Request<DeregisterRequest>,
    ) -> Result<DeregisterResponse, Status> {
        let caller = self.caller(request.extensions().get::<ClientIdentity>())?;
        let req = request.into_inner();
        let (service, port, addr) = target(&req.service, &req.namespace, req.port, &req.address)?;
        if let Some(caller) = caller
            && let Some(existing) = self.registry.get(&service, port, addr)
            && existing.identity.as_ref() != Some(&caller)
        {
            return Err(Status::permission_denied(format!(
                "the caller is {caller}; the endpoint {addr} of {service}:{port} is not its own"
            )));
        }
        tracing::debug!(%service, port, %addr, "deregister");
        Ok(DeregisterResponse {
            removed: self.registry.deregister(&service, port, addr),
        })
    }
}

fn target(
    service: &str,
    namespace: &str,
    port: u32,
    address: &str,
) -> Result<(ServiceRef, u16, SocketAddr), Status> {
    use crate::catalog::file::check_label;
    check_label(service).map_err(|e| Status::invalid_argument(format!("invalid service: {e}")))?;
    check_label(namespace)
        .map_err(|e| Status::invalid_argument(format!("invalid namespace: {e}")))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument(format!("invalid port {port}")))?;
    let addr: SocketAddr = address.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "invalid address {address:?}: expected ip:port (e.g. 127.0.0.1:4143)"
        ))
    })?;
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(Status::invalid_argument(format!(
            "invalid address {addr}: register the address clients can reach, not a wildcard"
        )));
    }
    Ok((ServiceRef::new(service, namespace), port, addr))
}

/// The tonic service for [`RegistrationService`] (hand-written, as generated code would be).
#[derive(Clone, Debug)]
pub struct RegistrationServer {
    inner: Arc<RegistrationService>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tonic::server::NamedService for RegistrationServer {
    const NAME: &'static str = SERVICE_NAME;
}

struct Unary<F>(Arc<RegistrationService>, F);

impl<Req, Rsp, F> tonic::server::UnaryService<Req> for Unary<F>
where
    F: Fn(&RegistrationService, Request<Req>) -> Result<Rsp, Status> + Clone + Send + 'static,
    Req: Send + 'static,
    Rsp: Send + 'static,
{
    type Response = Rsp;
    type Future = BoxFuture<Result<Response<Rsp>, Status>>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let res = (self.1)(&self.0, request).map(Response::new);
        Box::pin(std::future::ready(res))
    }
}

impl<B> tower::Service<http::Request<B>> for RegistrationServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        match req.uri().path() {
            REGISTER_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc
                    .unary(Unary(inner, RegistrationService::register), req)
                    .await)
            }),
            DEREGISTER_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc
                    .unary(Unary(inner, RegistrationService::deregister), req)
                    .await)
            }),
            _ => Box::pin(async move {
                let (parts, ()) = Status::unimplemented("").into_http::<()>().into_parts();
                Ok(http::Response::from_parts(
                    parts,
                    tonic::body::Body::empty(),
                ))
            }),
        }
    }
}
