//! Originating mutual TLS to a peer with a known identity: [`TlsClientLayer`].
//!
//! `TlsClient<C>` wraps a connector `C: Service<T>` (usually plain TCP). The target `T` says
//! which identity the server must prove ([`ServerIdentity`], from discovery); the client sends
//! it as SNI, presents the current certificate of the [`Credentials`](crate::Credentials), and
//! fails the connection when the server proves any other identity, with an error that names both.

mod future;
mod layer;
mod service;
mod stream;

pub use self::future::ResponseFuture;
pub use self::layer::TlsClientLayer;
pub use self::service::TlsClient;
pub use self::stream::ClientTlsStream;

use crate::ServiceIdentity;

/// The identity a server must prove; a connection target provides it through
/// [`Param<ServerIdentity>`](mesh_core::stack::Param).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerIdentity(pub ServiceIdentity);
