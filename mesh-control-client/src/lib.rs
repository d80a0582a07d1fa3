//! The gRPC clients a mesh proxy needs from its control plane, and nothing else.
//!
//! - [`transport`]: channels to the control plane over mutual TLS (the proxy presents its
//!   certificate once it has one, and expects the control plane's identity);
//! - [`identity`]: `Identity.Certify`, as [`RemoteCertify`], as a [`mesh_tls::certify::Certify`] signer that
//!   [`mesh_tls::certify::refresh`] keeps calling before the certificate expires;
//! - [`destination`]: `Destination.Get` (endpoints) and `GetProfile` (routes, retries, splits);
//! - [`inbound`]: `InboundServerPolicies.WatchPort` (who may call a port, and how);
//! - [`outbound`]: `OutboundPolicies.Watch` (a service's routes' retries and timeouts, failure
//!   accrual);
//! - [`registration`]: the mesh's own `Registration` service (a proxy registering its inbound
//!   endpoint in the local catalog), its messages shared with the server in `mesh-control`.
//!
//! Streams are [`Follow`]ed: called again with a backoff when they fail or end, each new stream's
//! first message marked as replacing what came before. The crate depends on `mesh-core`,
//! `mesh-tls`, tonic and `linkerd2-proxy-api` only: a proxy links the clients, never the control
//! plane.
//!
//! ```no_run
//! use mesh_control_client::{RemoteCertify, destination, transport};
//! use mesh_tls::certify::{RefreshPolicy, refresh};
//! # async fn f(creds: mesh_tls::Credentials, addr: std::net::SocketAddr,
//! #            control: mesh_tls::ServiceIdentity, token: String) {
//! let tls = transport::Tls::new(creds.clone(), control);
//! tokio::spawn(refresh(creds.clone(), RemoteCertify::new(addr, tls.clone(), Some(token)), RefreshPolicy::default()));
//! creds.ready().await;
//! let endpoints = destination::endpoints(transport::channel(addr, tls), "web.emojivoto.svc.cluster.local:8080");
//! # drop(endpoints);
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod destination;
mod follow;
pub mod identity;
pub mod inbound;
pub mod outbound;
pub mod registration;
pub mod transport;

use std::time::Duration;

use mesh_core::backoff::Backoff;

pub use self::follow::{Follow, Update};
pub use self::identity::RemoteCertify;

/// Between attempts to reach the control plane: 100 ms doubling to 5 s, with up to 50% jitter.
pub(crate) fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}
