//! What each stage of the inbound stack is built for.
//!
//! | target | built | identifies |
//! |---|---|---|
//! | [`Accept`] | per connection | the client's address and the app port it was accepted for |
//! | [`Tls`] | per connection | an [`Accept`] and the client's verified identity, if any |
//! | [`Http`] | per connection | a [`Tls`] and the HTTP version, when known (ALPN, detection) |

use std::net::{IpAddr, SocketAddr};

use mesh_core::detect::Protocol;
use mesh_core::stack::Param;
use mesh_tls::ServiceIdentity;

/// A connection accepted for the app.
#[derive(Clone, Debug)]
pub(crate) struct Accept {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The app's address (its port is the target port policies are about).
    pub(crate) app: SocketAddr,
}

/// A connection whose client is known: meshed (a verified identity), or not.
#[derive(Clone, Debug)]
pub(crate) struct Tls {
    pub(crate) accept: Accept,
    /// The client's identity, proven by its certificate; `None`: plaintext, or TLS without a
    /// client certificate.
    pub(crate) client: Option<ServiceIdentity>,
}

/// An HTTP connection.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    pub(crate) tls: Tls,
    /// HTTP/1 or HTTP/2 when the connection already said which (ALPN from a meshed peer, or the
    /// first bytes of a plaintext one); `None`: the server finds out.
    pub(crate) version: Option<Protocol>,
}

impl Param<Option<ServiceIdentity>> for Tls {
    fn param(&self) -> Option<ServiceIdentity> {
        self.client.clone()
    }
}

impl Param<IpAddr> for Tls {
    fn param(&self) -> IpAddr {
        self.accept.peer.ip()
    }
}
