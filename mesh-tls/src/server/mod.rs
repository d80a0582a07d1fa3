//! Terminating mutual TLS on accepted connections: [`TlsServerLayer`].
//!
//! `TlsServer<S>` is a `Service<IO>` for an accepted connection `IO`: it runs the handshake
//! (presenting the current certificate of the [`Credentials`](crate::Credentials), verifying the
//! client's chain against the current trust bundle), reads the client's identity from the
//! verified leaf, and hands the inner service a [`ServerTlsStream`] that carries it.
//! [`ClientIdentityLayer`] then puts the identity on each HTTP request as a [`ClientIdentity`]
//! extension.

mod future;
mod identity;
mod layer;
mod service;
mod stream;

pub use self::future::ResponseFuture;
pub use self::identity::{ClientIdentity, ClientIdentityLayer, SetClientIdentity};
pub use self::layer::{ClientAuth, TlsServerLayer};
pub use self::service::TlsServer;
pub use self::stream::ServerTlsStream;
