use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Method, StatusCode, Uri};

use super::filter::RequestView;
use super::{Direction, TapMeta, TapPeer};
use crate::classify::ErrorReason;

/// Names one tapped request, as Linkerd's `StreamId`: the [`Tap`](super::Tap)'s `base` and a
/// `stream` number that grows by one for each tapped request. Displayed as `base:stream`, as
/// `linkerd viz tap` prints `id=7:8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TapId {
    base: u32,
    stream: u64,
}

/// Something that happened to a tapped request, sent to each subscriber whose filter it
/// matched: [`TapEventKind::RequestInit`], then [`TapEventKind::ResponseInit`] (unless it failed
/// without a response), then [`TapEventKind::ResponseEnd`].
///
/// Cheap to clone: the events of one request share one [`TapRequest`].
#[derive(Clone, Debug)]
pub struct TapEvent {
    request: Arc<TapRequest>,
    kind: TapEventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapEventKind {
    /// The request arrived (its head: see [`TapEvent::request`]).
    RequestInit,
    /// The response head arrived.
    ResponseInit(ResponseInit),
    /// The response ended: its body completed, failed or was dropped, or the request failed
    /// without a response.
    ResponseEnd(ResponseEnd),
}

/// A response head.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseInit {
    /// The response status.
    pub status: StatusCode,
    /// From the request's arrival to the response head (what `tap` prints as `latency`).
    pub since_request_init: Duration,
}

/// The end of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseEnd {
    /// The response status; `None` when the request failed without a response.
    pub status: Option<StatusCode>,
    /// The gRPC status, from the trailers (or the headers of a trailers-only response).
    pub grpc_status: Option<i32>,
    /// Why the exchange failed: an error from the service or the body, or
    /// [`ErrorReason::Reset`] when the response (or the body) was dropped before its end.
    pub error: Option<ErrorReason>,
    /// From the request's arrival to the end.
    pub since_request_init: Duration,
    /// From the response head to the end (what `tap` prints as `duration`); `None` without a
    /// response.
    pub since_response_init: Option<Duration>,
    /// The response body's data bytes that passed.
    pub response_bytes: u64,
}

/// A tapped request's head and where it was going: what every event of the request shares.
#[derive(Debug)]
pub struct TapRequest {
    id: TapId,
    method: Method,
    uri: Uri,
    authority: Option<Authority>,
    meta: Arc<TapMeta>,
    peer: Option<TapPeer>,
}

// === impl TapId ===

impl TapId {
    pub(super) const fn new(base: u32, stream: u64) -> Self {
        Self { base, stream }
    }

    /// The tap registry's base.
    pub const fn base(&self) -> u32 {
        self.base
    }

    /// The request's number in the registry.
    pub const fn stream(&self) -> u64 {
        self.stream
    }
}

impl fmt::Display for TapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.base, self.stream)
    }
}

// === impl TapEvent ===

impl TapEvent {
    pub(super) const fn new(request: Arc<TapRequest>, kind: TapEventKind) -> Self {
        Self { request, kind }
    }

    /// The request's id, the same in all its events.
    pub fn id(&self) -> TapId {
        self.request.id
    }

    /// The request (and its source and destination).
    pub fn request(&self) -> &TapRequest {
        &self.request
    }

    /// What happened.
    pub const fn kind(&self) -> &TapEventKind {
        &self.kind
    }
}

// === impl TapRequest ===

impl TapRequest {
    pub(super) fn new(id: TapId, req: &RequestView<'_>, meta: Arc<TapMeta>) -> Self {
        Self {
            id,
            method: req.method.clone(),
            uri: req.uri.clone(),
            authority: match req.uri.authority() {
                Some(a) => Some(a.clone()),
                None => req.authority().and_then(|a| a.parse().ok()),
            },
            meta,
            peer: req.peer.cloned(),
        }
    }

    /// The request's id.
    pub const fn id(&self) -> TapId {
        self.id
    }

    /// The method.
    pub const fn method(&self) -> &Method {
        &self.method
    }

    /// The URI's scheme, if it has one (HTTP/2 requests and absolute-form HTTP/1 requests do).
    pub fn scheme(&self) -> Option<&Scheme> {
        self.uri.scheme()
    }

    /// The authority: the URI's, else the `Host` header's (if it is a valid authority).
    pub const fn authority(&self) -> Option<&Authority> {
        self.authority.as_ref()
    }

    /// The path, without the query (which may carry secrets, and which Linkerd's tap omits).
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The direction of the proxy stack that carried the request.
    pub fn direction(&self) -> Direction {
        self.meta.direction()
    }

    /// Where the request came from: its [`TapPeer`]'s address, else the target's.
    pub fn source_addr(&self) -> Option<SocketAddr> {
        match &self.peer {
            Some(peer) => Some(peer.addr()),
            None => self.meta.source_addr(),
        }
    }

    /// The client's identity: its [`TapPeer`]'s, else the target's.
    pub fn source_identity(&self) -> Option<&str> {
        self.peer
            .as_ref()
            .and_then(TapPeer::identity)
            .or_else(|| self.meta.source_identity())
    }

    /// Where the request went.
    pub fn destination_addr(&self) -> Option<SocketAddr> {
        self.meta.destination_addr()
    }

    /// The destination's identity.
    pub fn destination_identity(&self) -> Option<&str> {
        self.meta.destination_identity()
    }

    /// Whether the meshed side of the hop was mutual TLS: the [`TapPeer`]'s, else the
    /// target's.
    pub fn tls(&self) -> bool {
        self.peer
            .as_ref()
            .and_then(TapPeer::tls)
            .unwrap_or_else(|| self.meta.tls())
    }

    /// The destination's labels.
    pub fn destination_labels(&self) -> &BTreeMap<String, String> {
        self.meta.destination_labels()
    }

    /// The route's labels.
    pub fn route_labels(&self) -> &BTreeMap<String, String> {
        self.meta.route_labels()
    }
}
