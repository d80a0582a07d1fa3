//! The mesh control plane: the catalog, and Linkerd's proxy API served from it.
//!
//! `mesh-control` owns:
//! - the **catalog** ([`catalog`]): services, ports, endpoints, service profiles, traffic splits
//!   and authorization policy, published as immutable snapshots on a watch channel. The local
//!   backend reads a `mesh.yaml` ([schema](catalog::file)), re-reads it when edited (a broken
//!   edit is logged and the previous catalog kept), and takes registrations from proxies, each
//!   held by a lease ([`catalog::Registry`]). A Kubernetes backend plugs in beside it through the
//!   [`catalog::Catalog`] trait;
//! - the **servers** for Linkerd's proxy API ([`api`]): `Destination.Get`/`GetProfile`,
//!   `Identity.Certify` (checking a one-use [bootstrap token](token) or the caller's mutual-TLS
//!   identity), `InboundServerPolicies` and `OutboundPolicies`, plus the mesh's own
//!   `Registration` service; all on one port, over TLS with the control plane's own identity;
//! - the **state directory** ([`state`]): the CA (trust anchor and issuer, generated once, reused
//!   on every restart), the listen address and identity for CLIs, bootstrap tokens.
//!
//! It does not own data-plane code: proxies (`mesh-proxy`) consume these APIs through the
//! clients in `mesh-control-client`, never linking this crate; observability (metrics, tap, the dashboard) is `mesh-viz`'s. The
//! Kubernetes backend is still to come.
//!
//! # Example
//!
//! Start a control plane, register an endpoint the way a proxy does, and watch it arrive through
//! `Destination.Get`, all over real gRPC and TLS on loopback:
//!
//! ```
//! use std::time::Duration;
//! use linkerd2_proxy_api::destination::{destination_client::DestinationClient, GetDestination};
//! use linkerd2_proxy_api::destination::update::Update;
//! use mesh_control::{Config, ControlPlane};
//! use mesh_control_client::transport as client;
//! use mesh_control::catalog::{Registration, ServiceRef};
//! use mesh_tls::Credentials;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let cp = ControlPlane::start(Config::new(dir.path()).listen("127.0.0.1:0".parse()?)).await?;
//!
//! // A client that trusts the mesh's anchors and expects the control plane's identity. It has
//! // no certificate yet, which the control plane allows (a new proxy must be able to certify).
//! let web = cp.ca().domain().workload("web", "emojivoto")?;
//! let creds = Credentials::generate(web, cp.trust_bundle())?;
//! let channel = client::channel(cp.addr(), client::Tls::new(creds, cp.identity().clone()));
//!
//! let registry = cp.local_catalog().unwrap().registry();
//! let svc = ServiceRef::new("web", "emojivoto");
//! registry.register(Registration::new(svc, 8080, "127.0.0.1:4143".parse()?), Duration::from_secs(30));
//!
//! let mut updates = DestinationClient::new(channel)
//!     .get(GetDestination { path: "web.emojivoto.svc.cluster.local:8080".into(), ..Default::default() })
//!     .await?
//!     .into_inner();
//! let first = tokio::time::timeout(Duration::from_secs(5), updates.message()).await??;
//! let Some(Update::Add(set)) = first.and_then(|u| u.update) else { panic!("expected an add") };
//! assert_eq!(set.addrs.len(), 1);
//! cp.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The `mesh control` command is a thin call: build a [`Config`] from the flags, then
//! [`ControlPlane::start`], start `mesh-viz` beside it, and shut both down on a signal.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod catalog;
mod config;
pub mod name;
mod server;
pub mod state;
pub mod token;

pub use self::config::Config;
pub use self::server::{CONTROLLER, ControlPlane, DEFAULT_LISTEN, StartError};
