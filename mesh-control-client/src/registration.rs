//! `mesh.control.v1.Registration`: a proxy registers its inbound endpoint in the local catalog.
//!
//! This is the mesh's own small gRPC service, served beside Linkerd's on the same TLS port. Its
//! messages are hand-written `prost` structs (no `.proto` compilation in the build); the wire
//! format is this protobuf:
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
//! The server (in `mesh-control`) decides who may register what; the messages and the client are
//! here, shared by both sides.
//!
//! [`keep_registered`] is the client loop a proxy runs: register, renew at a third of the lease,
//! retry with backoff on errors, deregister when told to drain.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "mesh.control.v1.Registration";
/// The path of `Register`.
pub const REGISTER_PATH: &str = "/mesh.control.v1.Registration/Register";
/// The path of `Deregister`.
pub const DEREGISTER_PATH: &str = "/mesh.control.v1.Registration/Deregister";

// === Messages ===

/// Adds or renews an endpoint.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterRequest {
    /// The service name.
    #[prost(string, tag = "1")]
    pub service: String,
    /// The service's namespace.
    #[prost(string, tag = "2")]
    pub namespace: String,
    /// The service port served (also the application port).
    #[prost(uint32, tag = "3")]
    pub port: u32,
    /// `ip:port` clients connect to: the proxy's inbound listener.
    #[prost(string, tag = "4")]
    pub address: String,
    /// The endpoint's identity; over mutual TLS it must be (and defaults to) the caller's.
    #[prost(string, tag = "5")]
    pub identity: String,
    /// What the endpoint speaks ([`WireProtocolHint`]).
    #[prost(enumeration = "WireProtocolHint", tag = "6")]
    pub protocol_hint: i32,
    /// The port's protocol if the catalog file does not declare the port ([`WirePortProtocol`]).
    #[prost(enumeration = "WirePortProtocol", tag = "7")]
    pub protocol: i32,
    /// The workload (instance) name; default is the service name.
    #[prost(string, tag = "8")]
    pub workload: String,
    /// Metric labels.
    #[prost(map = "string, string", tag = "9")]
    pub labels: HashMap<String, String>,
    /// The lease asked for; default 30 s.
    #[prost(message, optional, tag = "10")]
    pub lease: Option<prost_types::Duration>,
    /// The workload's default inbound policy (`all-authenticated`, `deny`, ...: Linkerd's pod
    /// annotation), for its ports no service configures; empty leaves the namespace's or the
    /// catalog's.
    #[prost(string, tag = "11")]
    pub default_policy: String,
}

/// The lease granted.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterResponse {
    /// Renew before this runs out (a third of it is a good interval).
    #[prost(message, optional, tag = "1")]
    pub lease: Option<prost_types::Duration>,
}

/// Removes an endpoint.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeregisterRequest {
    /// The service name.
    #[prost(string, tag = "1")]
    pub service: String,
    /// The service's namespace.
    #[prost(string, tag = "2")]
    pub namespace: String,
    /// The service port.
    #[prost(uint32, tag = "3")]
    pub port: u32,
    /// The registered address.
    #[prost(string, tag = "4")]
    pub address: String,
}

/// Whether there was such an endpoint.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeregisterResponse {
    /// Whether an endpoint was removed.
    #[prost(bool, tag = "1")]
    pub removed: bool,
}

/// The protocol hint on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WireProtocolHint {
    /// Derived from the port and the identity.
    Auto = 0,
    /// No hint.
    None = 1,
    /// HTTP/2 between proxies.
    H2 = 2,
    /// Opaque TCP.
    Opaque = 3,
}

/// The port protocol on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WirePortProtocol {
    /// Not said: detect.
    Unspecified = 0,
    /// Detect HTTP.
    Detect = 1,
    /// HTTP/1.
    Http1 = 2,
    /// HTTP/2.
    Http2 = 3,
    /// gRPC.
    Grpc = 4,
    /// Opaque TCP.
    OpaquePort = 5,
}

// === Client ===

/// A client of the registration service over any tonic transport (usually a
/// [`Channel`](tonic::transport::Channel) from [`crate::transport`]).
#[derive(Clone, Debug)]
pub struct RegistrationClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> RegistrationClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    /// A client over `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(transport),
        }
    }

    async fn unary<Req, Rsp>(&mut self, req: Req, path: &'static str) -> Result<Rsp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Rsp: prost::Message + Default + Send + Sync + 'static,
    {
        self.inner.ready().await.map_err(|e| {
            Status::unavailable(format!("the control plane is not ready: {}", e.into()))
        })?;
        let codec = tonic_prost::ProstCodec::<Req, Rsp>::default();
        let path = http::uri::PathAndQuery::from_static(path);
        self.inner
            .unary(Request::new(req), path, codec)
            .await
            .map(Response::into_inner)
    }

    /// Registers or renews an endpoint; returns the lease granted.
    pub async fn register(&mut self, req: RegisterRequest) -> Result<Duration, Status> {
        let rsp: RegisterResponse = self.unary(req, REGISTER_PATH).await?;
        rsp.lease
            .and_then(|d| Duration::try_from(d).ok())
            .ok_or_else(|| Status::internal("the control plane granted no lease"))
    }

    /// Removes an endpoint; returns whether there was one.
    pub async fn deregister(&mut self, req: DeregisterRequest) -> Result<bool, Status> {
        let rsp: DeregisterResponse = self.unary(req, DEREGISTER_PATH).await?;
        Ok(rsp.removed)
    }
}

/// Keeps an endpoint registered until `drain` is cancelled, then deregisters it.
///
/// Renews at a third of the granted lease; on an error it retries after a backoff from 100 ms
/// doubling to 5 s, with jitter (so an endpoint survives a control-plane restart shorter than its lease, and is
/// re-registered as soon as the control plane is back). Returns the last error if deregistration
/// fails.
pub async fn keep_registered<T>(
    mut client: RegistrationClient<T>,
    request: RegisterRequest,
    drain: CancellationToken,
) -> Result<(), Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let backoff = crate::reconnect_backoff();
    let mut failures = 0;
    loop {
        let wait = match client.register(request.clone()).await {
            Ok(lease) => {
                failures = 0;
                lease / 3
            }
            Err(status) => {
                let wait = backoff.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(%status, retry_in = ?wait, "registration failed");
                wait
            }
        };
        tokio::select! {
            _ = drain.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    client
        .deregister(DeregisterRequest {
            service: request.service,
            namespace: request.namespace,
            port: request.port,
            address: request.address,
        })
        .await
        .map(|_| ())
}
