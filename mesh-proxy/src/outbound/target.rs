//! What each stage of the outbound stack is built for, and the parameters its layers ask for.
//!
//! | target | built | identifies |
//! |---|---|---|
//! | [`Accept`] | per connection | the app's connection and how its destination is named |
//! | [`Logical`] | per destination | the authority the app called (cache key) |
//! | [`Profiled`] | per profile change | a destination with what discovery says of it now |
//! | [`Concrete`] | per backend | one set of endpoints behind one balancer (cache key) |
//! | [`Endpoint`] | per endpoint | where to connect and whom to expect |

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_balance::discover::EndpointSet;
use mesh_core::metrics::Labels;
use mesh_core::stack::Param;
use mesh_core::tap::TapMeta;
use mesh_tls::ServiceIdentity;
use mesh_tls::client::ServerIdentity;

use crate::discovery::{Destination, EndpointAddr};

/// An accepted connection from the app.
#[derive(Clone, Debug)]
pub(crate) struct Accept {
    /// The app's address.
    pub(crate) peer: SocketAddr,
    /// How the connection names its destination.
    pub(crate) dst: AcceptDst,
}

/// How an accepted connection names its destination.
#[derive(Clone, Debug)]
pub(crate) enum AcceptDst {
    /// Each request by its authority (`Host`, or an absolute URI): the authority-routed listener.
    Routed,
    /// Every request goes to this authority: a per-upstream listener, or an original destination
    /// discovery knows.
    Fixed(Arc<str>),
}

/// A destination the app named: what the logical stack (routes, timeouts, retries, split) is
/// built for, and the key of the logical cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Logical {
    /// The authority, normalized (`host:port`, lower case).
    pub(crate) authority: Arc<str>,
}

/// A [`Logical`] destination as discovery describes it now. The logical stack is rebuilt from a
/// new one whenever discovery changes the destination.
#[derive(Clone, Debug)]
pub(crate) struct Profiled {
    pub(crate) logical: Logical,
    pub(crate) dest: Arc<Destination>,
    /// What every stage below labels its metrics and tap events with.
    pub(crate) meta: Arc<DestinationMeta>,
}

/// The labels of a destination, resolved once per profile for the stages below it.
#[derive(Debug)]
pub(crate) struct DestinationMeta {
    /// Linkerd's outbound labels: `direction`, `authority`, `dst_service`, `dst_namespace`, `tls`.
    pub(crate) labels: Labels,
    /// Tap metadata shared by the destination's endpoints (each adds its address and identity).
    pub(crate) tap: TapMeta,
}

/// One backend of a destination: the set of endpoints one balancer spreads requests over, and
/// the key of the balancer cache (its endpoint set is not part of the key: the same backend
/// keeps its balancer, and the balancer follows the set).
#[derive(Clone, Debug)]
pub(crate) struct Concrete {
    pub(crate) logical: Logical,
    pub(crate) backend: Backend,
    pub(crate) endpoints: EndpointSet,
    pub(crate) meta: Arc<DestinationMeta>,
    /// When to eject an endpoint (part of the key: a new policy builds a new balancer).
    pub(crate) accrual: Option<mesh_balance::FailureAccrual>,
}

/// Which backend of a destination a [`Concrete`] is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Backend {
    /// A live set that discovery keeps current, named by its authority.
    Discovered(Arc<str>),
    /// A fixed list of endpoints (the static destinations file), by its place in the split.
    Fixed(usize, Arc<[EndpointAddr]>),
}

/// An endpoint a balancer picked.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// The identity the endpoint must prove; `None`: unmeshed, plaintext.
    pub(crate) identity: Option<ServiceIdentity>,
    pub(crate) meta: Arc<DestinationMeta>,
}

// === impl Concrete ===

impl Concrete {
    /// The balancer's name, in its metrics and errors: `<authority>/<backend>`.
    pub(crate) fn name(&self) -> String {
        match &self.backend {
            Backend::Discovered(a) if **a == *self.logical.authority => a.to_string(),
            Backend::Discovered(a) => format!("{}/{a}", self.logical.authority),
            Backend::Fixed(i, _) => format!("{}/backend-{i}", self.logical.authority),
        }
    }
}

impl PartialEq for Concrete {
    fn eq(&self, other: &Self) -> bool {
        self.logical == other.logical
            && self.backend == other.backend
            && self.accrual == other.accrual
    }
}

impl Eq for Concrete {}

impl Hash for Concrete {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.logical.hash(state);
        self.backend.hash(state);
        if let Some(a) = &self.accrual {
            let b = a.backoff();
            (a.max_failures(), b.min(), b.max(), b.jitter().to_bits()).hash(state);
        }
    }
}

// === impl Endpoint ===

impl Param<SocketAddr> for Endpoint {
    fn param(&self) -> SocketAddr {
        self.addr
    }
}

impl Param<Option<ServerIdentity>> for Endpoint {
    fn param(&self) -> Option<ServerIdentity> {
        self.identity.clone().map(ServerIdentity)
    }
}

impl Param<TapMeta> for Endpoint {
    fn param(&self) -> TapMeta {
        let mut meta = self.meta.tap.clone().with_destination_addr(self.addr);
        if let Some(id) = &self.identity {
            meta = meta.with_destination_identity(id.as_str().to_owned());
        }
        meta
    }
}
