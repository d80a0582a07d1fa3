use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::uri::Scheme;
use http::{HeaderMap, Method, Uri};

use super::{TapMeta, TapPeer};

/// Which requests a [`Subscription`](super::Subscription) sees: Linkerd's
/// `ObserveRequest.Match`, as a tree.
///
/// Leaves test one thing about a request or its target; [`Filter::All`], [`Filter::Any`] and
/// [`Filter::Not`] (also `!filter`) combine them. A filter is evaluated on the request path, for
/// each request, only while somebody subscribes; it allocates nothing.
///
/// ```
/// use mesh_core::tap::{Filter, TapMeta};
///
/// // GET requests under /api that are not health checks.
/// let filter = Filter::all([
///     Filter::method(http::Method::GET),
///     Filter::path_prefix("/api"),
///     !Filter::path("/api/health"),
/// ]);
/// let meta = TapMeta::inbound();
/// let req = |path: &str| http::Request::get(path).body(()).unwrap();
/// assert!(filter.matches(&req("/api/users"), &meta));
/// assert!(!filter.matches(&req("/api/health"), &meta));
/// assert!(!filter.matches(&req("/static/app.js"), &meta));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every filter matches (an empty list matches every request).
    All(Vec<Filter>),
    /// At least one filter matches (an empty list matches no request).
    Any(Vec<Filter>),
    /// The filter does not match.
    Not(Box<Filter>),
    /// The source address (a [`TapPeer`] on the request, else the target's) matches.
    Source(AddrMatch),
    /// The destination address of the target matches.
    Destination(AddrMatch),
    /// The request's URI scheme (`http` when the URI has none, as in HTTP/1 origin-form) is this.
    Scheme(Scheme),
    /// The request's method is this.
    Method(Method),
    /// The request's authority (the URI's, else the `Host` header) matches.
    Authority(StringMatch),
    /// The request's path (without the query) matches.
    Path(StringMatch),
    /// The target's destination labels map `key` to `value`.
    DestinationLabel {
        /// The label's name.
        key: String,
        /// Its value.
        value: String,
    },
    /// The target's route labels map `key` to `value`.
    RouteLabel {
        /// The label's name.
        key: String,
        /// Its value.
        value: String,
    },
}

/// How a string of the request is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    /// Equal to this.
    Exact(String),
    /// Starts with this.
    Prefix(String),
}

/// How a socket address is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrMatch {
    /// The IP address is in this network.
    Net(Netmask),
    /// The port is in `min..=max`.
    Ports {
        /// The lowest matching port.
        min: u16,
        /// The highest matching port.
        max: u16,
    },
}

/// An IP network: an address and a prefix length (`10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Netmask {
    addr: IpAddr,
    prefix_len: u8,
}

/// A filter that cannot be built: a prefix longer than its address, or an `ObserveRequest`
/// match that is empty or malformed. The message says which; nobody should parse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidFilter {
    message: Cow<'static, str>,
}

/// The parts of a request (and its target) that filters and events read, borrowed.
pub(super) struct RequestView<'a> {
    pub(super) method: &'a Method,
    pub(super) uri: &'a Uri,
    pub(super) headers: &'a HeaderMap,
    pub(super) meta: &'a TapMeta,
    pub(super) peer: Option<&'a TapPeer>,
}

// === impl Filter ===

impl Filter {
    /// Matches every request.
    pub const fn all_requests() -> Self {
        Filter::All(Vec::new())
    }

    /// Matches when every one of `filters` matches.
    pub fn all(filters: impl IntoIterator<Item = Filter>) -> Self {
        Filter::All(filters.into_iter().collect())
    }

    /// Matches when any one of `filters` matches.
    pub fn any(filters: impl IntoIterator<Item = Filter>) -> Self {
        Filter::Any(filters.into_iter().collect())
    }

    /// Requests for exactly this authority (`web.emojivoto.svc.cluster.local:8080`).
    pub fn authority(authority: impl Into<String>) -> Self {
        Filter::Authority(StringMatch::Exact(authority.into()))
    }

    /// Requests whose authority starts with `prefix`.
    pub fn authority_prefix(prefix: impl Into<String>) -> Self {
        Filter::Authority(StringMatch::Prefix(prefix.into()))
    }

    /// Requests for exactly this path.
    pub fn path(path: impl Into<String>) -> Self {
        Filter::Path(StringMatch::Exact(path.into()))
    }

    /// Requests whose path starts with `prefix` (`/emojivoto.v1.VotingService/`).
    pub fn path_prefix(prefix: impl Into<String>) -> Self {
        Filter::Path(StringMatch::Prefix(prefix.into()))
    }

    /// Requests with this method.
    pub const fn method(method: Method) -> Self {
        Filter::Method(method)
    }

    /// Requests from exactly this socket address.
    pub fn source_addr(addr: SocketAddr) -> Self {
        Filter::All(vec![
            Filter::Source(AddrMatch::Net(Netmask::host(addr.ip()))),
            Filter::Source(AddrMatch::port(addr.port())),
        ])
    }

    /// Requests to exactly this socket address.
    pub fn destination_addr(addr: SocketAddr) -> Self {
        Filter::All(vec![
            Filter::Destination(AddrMatch::Net(Netmask::host(addr.ip()))),
            Filter::Destination(AddrMatch::port(addr.port())),
        ])
    }

    /// Requests whose target has this destination label.
    pub fn destination_label(key: impl Into<String>, value: impl Into<String>) -> Self {
        Filter::DestinationLabel {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Requests whose target has this route label.
    pub fn route_label(key: impl Into<String>, value: impl Into<String>) -> Self {
        Filter::RouteLabel {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Whether `req`, carried by a stack whose target is described by `meta`, matches, exactly
    /// as the tap layer decides (a [`TapPeer`] extension on `req` overrides `meta`'s source).
    pub fn matches<B>(&self, req: &http::Request<B>, meta: &TapMeta) -> bool {
        self.matches_view(&RequestView::new(req, meta))
    }

    pub(super) fn matches_view(&self, req: &RequestView<'_>) -> bool {
        match self {
            Filter::All(fs) => fs.iter().all(|f| f.matches_view(req)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches_view(req)),
            Filter::Not(f) => !f.matches_view(req),
            Filter::Source(m) => req.source_addr().is_some_and(|a| m.matches(a)),
            Filter::Destination(m) => req.meta.destination_addr().is_some_and(|a| m.matches(a)),
            Filter::Scheme(s) => req.uri.scheme().unwrap_or(&Scheme::HTTP) == s,
            Filter::Method(m) => req.method == m,
            Filter::Authority(m) => req.authority().is_some_and(|a| m.matches(a)),
            Filter::Path(m) => m.matches(req.uri.path()),
            Filter::DestinationLabel { key, value } => {
                req.meta.destination_labels().get(key) == Some(value)
            }
            Filter::RouteLabel { key, value } => req.meta.route_labels().get(key) == Some(value),
        }
    }
}

impl std::ops::Not for Filter {
    type Output = Filter;

    /// Matches what `self` does not.
    fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }
}

// === impl StringMatch ===

impl StringMatch {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

// === impl AddrMatch ===

impl AddrMatch {
    /// Exactly this port.
    pub const fn port(port: u16) -> Self {
        AddrMatch::Ports {
            min: port,
            max: port,
        }
    }

    /// Whether `addr` matches.
    pub fn matches(&self, addr: SocketAddr) -> bool {
        match *self {
            AddrMatch::Net(net) => net.contains(addr.ip()),
            AddrMatch::Ports { min, max } => (min..=max).contains(&addr.port()),
        }
    }
}

// === impl Netmask ===

impl Netmask {
    /// The network of `addr` with the first `prefix_len` bits significant; fails when
    /// `prefix_len` is longer than the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, InvalidFilter> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(InvalidFilter::new(format!(
                "prefix length {prefix_len} is longer than {max} bits of {addr}"
            )));
        }
        Ok(Self { addr, prefix_len })
    }

    /// The network holding only `addr` (`/32` or `/128`).
    pub const fn host(addr: IpAddr) -> Self {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix_len }
    }

    /// The network's address.
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The number of significant leading bits.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a
    /// dual-stack listener reports IPv4 clients) is compared as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let shift = |bits: u32| bits.saturating_sub(u32::from(self.prefix_len));
        match (self.addr.to_canonical(), ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(shift(32)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(shift(128)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

// === impl InvalidFilter ===

impl InvalidFilter {
    pub(super) fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid tap filter: {}", self.message)
    }
}

impl StdError for InvalidFilter {}

// === impl RequestView ===

impl<'a> RequestView<'a> {
    pub(super) fn new<B>(req: &'a http::Request<B>, meta: &'a TapMeta) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            meta,
            peer: req.extensions().get::<TapPeer>(),
        }
    }

    pub(super) fn source_addr(&self) -> Option<SocketAddr> {
        match self.peer {
            Some(peer) => Some(peer.addr()),
            None => self.meta.source_addr(),
        }
    }

    /// The URI's authority, else the `Host` header's.
    pub(super) fn authority(&self) -> Option<&'a str> {
        match self.uri.authority() {
            Some(a) => Some(a.as_str()),
            None => self
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok()),
        }
    }
}
