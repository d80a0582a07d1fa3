//! Automatic mutual TLS for the mesh, as tower layers any Rust service can embed.
//!
//! `mesh-tls` owns:
//! - identity names ([`ServiceIdentity`], [`IdentityDomain`]): the DNS-like
//!   `<sa>.<ns>.serviceaccount.identity.<suffix>` names the mesh issues and the SPIFFE IDs beside
//!   them; any DNS-like name or SPIFFE ID is accepted from peers;
//! - the certificate authority ([`CertificateAuthority`]): trust anchor, issuer, signing CSRs
//!   only for the identity a caller proved, PEM files in and out;
//! - a workload's credentials ([`Credentials`]): a key generated in-process, its CSR, the current
//!   certificate hot-swapped under live traffic, refreshed at 70% of its lifetime
//!   ([`certify::refresh`]), or static PEM files reloaded on change ([`PemFiles`]);
//! - the layers: [`TlsServerLayer`] terminates mTLS and tells the inner service who the client
//!   is; [`TlsClientLayer`] originates mTLS and fails unless the server proves the identity
//!   discovery expects.
//!
//! It does not own where certificates come from: a signer implements [`certify::Certify`] (the
//! in-process CA does; the control-plane client lives in `mesh-proxy`).
//!
//! # Example: a mutual TLS round trip
//!
//! ```
//! use mesh_tls::{CertificateAuthority, Credentials};
//! use mesh_tls::client::{ServerIdentity, TlsClientLayer};
//! use mesh_tls::server::{ServerTlsStream, TlsServerLayer};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let ca = CertificateAuthority::builder().generate()?;
//! let certify = |name: &str| -> Result<Credentials, Box<dyn std::error::Error + Send + Sync>> {
//!     let id = ca.domain().workload(name, "emojivoto")?;
//!     let creds = Credentials::generate(id.clone(), ca.trust_bundle())?;
//!     creds.set_certificate(ca.sign(creds.csr()?, &id)?)?;
//!     Ok(creds)
//! };
//! let (web, voting) = (certify("web")?, certify("voting")?);
//!
//! // The server side: who is calling?
//! let server = TlsServerLayer::new(&voting).layer(service_fn(
//!     |mut conn: ServerTlsStream<DuplexStream>| async move {
//!         let who = conn.client_identity().map(|id| id.to_string());
//!         conn.write_all(b"hello").await?;
//!         conn.shutdown().await?;
//!         Ok::<_, std::io::Error>(who)
//!     },
//! ));
//!
//! // The client side: a connector (here an in-memory pipe) wrapped in TLS.
//! let (client_io, server_io) = tokio::io::duplex(64 * 1024);
//! let mut pipe = Some(client_io);
//! let connector = service_fn(move |_: ServerIdentity| {
//!     let io = pipe.take().ok_or("one connection only");
//!     async move { io }
//! });
//! let client = TlsClientLayer::new(&web).layer(connector);
//!
//! let serving = tokio::spawn(server.oneshot(server_io));
//! let mut conn = client.oneshot(ServerIdentity(voting.identity().clone())).await?;
//! let mut reply = String::new();
//! conn.read_to_string(&mut reply).await?;
//! assert_eq!(reply, "hello");
//! assert_eq!(serving.await??.as_deref(), Some(web.identity().as_str()));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
mod cert;
pub mod certify;
pub mod client;
mod creds;
mod error;
mod files;
pub mod identity;
pub mod server;
mod trust;
mod verify;

pub use self::ca::{CaBuilder, CertificateAuthority, LeafCredentials, UtcTime, Validity};
pub use self::certify::{Certify, IssuedCertificate};
pub use self::client::TlsClientLayer;
pub use self::creds::{Credentials, CredentialsError};
pub use self::error::HandshakeError;
pub use self::files::{PemFiles, PemFilesError};
pub use self::identity::{IdentityDomain, ServiceIdentity};
pub use self::server::TlsServerLayer;
pub use self::trust::{InvalidTrustBundle, TrustBundle};
pub use self::verify::IdentityMismatch;
pub use mesh_core::BoxError;
