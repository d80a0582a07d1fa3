use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which way a proxy carries a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a peer (usually another proxy) to the local application.
    Inbound,
    /// From the local application to a service.
    Outbound,
}

impl Direction {
    /// The label value Linkerd uses: `inbound` or `outbound`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a target's stack knows about the requests it carries, resolved once when the stack is
/// built: direction, addresses, identities, TLS and the destination's labels.
///
/// Every event of every request tapped through a [`TapLayer`](super::TapLayer) shares one
/// `Arc` of it. What only the connection knows (the client's address and identity on an
/// inbound listener that serves many clients) comes per request in a [`TapPeer`] extension.
///
/// ```
/// use mesh_core::tap::{Direction, TapMeta};
///
/// let meta = TapMeta::outbound()
///     .with_destination_addr("10.1.2.3:8080".parse::<std::net::SocketAddr>()?)
///     .with_destination_identity("voting.emojivoto.serviceaccount.identity.mesh.cluster.local")
///     .with_tls(true)
///     .with_destination_label("namespace", "emojivoto")
///     .with_destination_label("deployment", "voting");
/// assert_eq!(meta.direction(), Direction::Outbound);
/// assert_eq!(meta.destination_labels().get("deployment").map(String::as_str), Some("voting"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapMeta {
    direction: Direction,
    source_addr: Option<SocketAddr>,
    source_identity: Option<Arc<str>>,
    destination_addr: Option<SocketAddr>,
    destination_identity: Option<Arc<str>>,
    tls: bool,
    destination_labels: Arc<BTreeMap<String, String>>,
    route_labels: Arc<BTreeMap<String, String>>,
}

// === impl TapMeta ===

impl TapMeta {
    /// Metadata for a target of the `direction` stack, with nothing else known.
    pub fn new(direction: Direction) -> Self {
        Self {
            direction,
            source_addr: None,
            source_identity: None,
            destination_addr: None,
            destination_identity: None,
            tls: false,
            destination_labels: Arc::default(),
            route_labels: Arc::default(),
        }
    }

    /// Metadata for a target of the inbound stack.
    pub fn inbound() -> Self {
        Self::new(Direction::Inbound)
    }

    /// Metadata for a target of the outbound stack.
    pub fn outbound() -> Self {
        Self::new(Direction::Outbound)
    }

    /// The address requests come from. Default is unknown (`None`); a [`TapPeer`] on a request
    /// overrides it.
    pub fn with_source_addr(mut self, addr: impl Into<Option<SocketAddr>>) -> Self {
        self.source_addr = addr.into();
        self
    }

    /// The verified identity of the client. Default is none; a [`TapPeer`] on a request that
    /// carries an identity overrides it.
    pub fn with_source_identity(mut self, identity: impl Into<IdentityName>) -> Self {
        self.source_identity = identity.into().0;
        self
    }

    /// The address requests go to (the endpoint outbound, the application inbound). Default is
    /// unknown (`None`).
    pub fn with_destination_addr(mut self, addr: impl Into<Option<SocketAddr>>) -> Self {
        self.destination_addr = addr.into();
        self
    }

    /// The identity the destination proved (outbound: the server identity expected of the
    /// endpoint). Default is none.
    pub fn with_destination_identity(mut self, identity: impl Into<IdentityName>) -> Self {
        self.destination_identity = identity.into().0;
        self
    }

    /// Whether the meshed side of this hop is mutual TLS: the client connection inbound, the
    /// endpoint connection outbound. Default is `false`; a [`TapPeer`] may override it.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Adds a label describing the destination (`namespace`, `service`, `deployment`, `pod`,
    /// ..., as in Linkerd's `dst_*` metric labels and its tap `destination_meta`). Default is
    /// no labels.
    pub fn with_destination_label(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        Arc::make_mut(&mut self.destination_labels).insert(key.into(), value.into());
        self
    }

    /// Adds a label describing the route (from a service profile or an HTTPRoute). Default is
    /// no labels.
    pub fn with_route_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.route_labels).insert(key.into(), value.into());
        self
    }

    /// The direction of the stack.
    pub const fn direction(&self) -> Direction {
        self.direction
    }

    /// The source address, if known.
    pub const fn source_addr(&self) -> Option<SocketAddr> {
        self.source_addr
    }

    /// The source's identity, if known.
    pub fn source_identity(&self) -> Option<&str> {
        self.source_identity.as_deref()
    }

    /// The destination address, if known.
    pub const fn destination_addr(&self) -> Option<SocketAddr> {
        self.destination_addr
    }

    /// The destination's identity, if known.
    pub fn destination_identity(&self) -> Option<&str> {
        self.destination_identity.as_deref()
    }

    /// Whether the meshed side of the hop is mutual TLS.
    pub const fn tls(&self) -> bool {
        self.tls
    }

    /// The destination's labels.
    pub fn destination_labels(&self) -> &BTreeMap<String, String> {
        &self.destination_labels
    }

    /// The route's labels.
    pub fn route_labels(&self) -> &BTreeMap<String, String> {
        &self.route_labels
    }
}

/// An identity name for [`TapMeta`] and [`TapPeer`]: a `&str`, a `String`, an `Arc<str>`, or
/// an `Option` of one (`None` for no identity).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityName(Option<Arc<str>>);

impl From<&str> for IdentityName {
    fn from(s: &str) -> Self {
        Self(Some(Arc::from(s)))
    }
}

impl From<String> for IdentityName {
    fn from(s: String) -> Self {
        Self(Some(Arc::from(s)))
    }
}

impl From<Arc<str>> for IdentityName {
    fn from(s: Arc<str>) -> Self {
        Self(Some(s))
    }
}

impl<T: Into<IdentityName>> From<Option<T>> for IdentityName {
    fn from(s: Option<T>) -> Self {
        s.map(Into::into).unwrap_or_default()
    }
}

/// The client of one connection, as an HTTP request extension that overrides the source
/// address, identity and TLS of a target's [`TapMeta`].
///
/// A server that shares one stack across connections (the inbound listener serves every
/// client of a port) inserts it on each request; the tap layer reads it only for requests that
/// a subscriber might see. Fields left unset keep the target's values.
///
/// ```
/// use mesh_core::tap::TapPeer;
///
/// let mut req = http::Request::new(());
/// let peer = TapPeer::new("10.0.0.7:41234".parse()?)
///     .with_identity("web.emojivoto.serviceaccount.identity.mesh.cluster.local")
///     .with_tls(true);
/// req.extensions_mut().insert(peer);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapPeer {
    addr: SocketAddr,
    identity: Option<Arc<str>>,
    tls: Option<bool>,
}

// === impl TapPeer ===

impl TapPeer {
    /// A client at `addr`, with no identity and the target's TLS.
    pub const fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            identity: None,
            tls: None,
        }
    }

    /// The client's verified identity. Default is none (the target's source identity stays).
    pub fn with_identity(mut self, identity: impl Into<IdentityName>) -> Self {
        self.identity = identity.into().0;
        self
    }

    /// Whether the client connection is mutual TLS. Default is unset (the target's
    /// [`TapMeta::with_tls`] stays).
    pub fn with_tls(mut self, tls: impl Into<Option<bool>>) -> Self {
        self.tls = tls.into();
        self
    }

    /// The client's address.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client's identity, if set.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The client connection's TLS, if set.
    pub const fn tls(&self) -> Option<bool> {
        self.tls
    }
}
