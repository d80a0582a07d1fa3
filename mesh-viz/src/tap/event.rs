//! What the tap stream carries: [`TapLine`]s, each an [`Event`] seen by one proxy or a
//! [`ProxyStatus`] about one proxy, serialized one JSON object per line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;

use linkerd2_proxy_api::tap as api;
use linkerd2_proxy_api::tap::tap_event::{self, http as pb_http};
use serde::{Deserialize, Serialize};

/// One line of a tap stream: an event, or news about one of the tapped proxies.
///
/// On the wire (`GET /api/tap`) each line is one JSON object with a `type` of `event` or
/// `proxy`:
///
/// ```json
/// {"type":"event","workload":"web","namespace":"emojivoto","direction":"outbound",...}
/// {"type":"proxy","workload":"voting","namespace":"emojivoto","addr":"127.0.0.1:4190","state":"failed","error":"..."}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TapLine {
    /// A request event, tagged with the workload whose proxy saw it.
    Event(Event),
    /// A proxy was tapped, ended, or could not be tapped.
    Proxy(ProxyStatus),
}

/// What happened to one tapped request at one proxy: what Linkerd's `TapEvent` says, plus the
/// workload whose proxy reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The workload whose proxy saw the request.
    pub workload: String,
    /// Its namespace.
    pub namespace: String,
    /// Which of the proxy's stacks carried the request.
    pub direction: Direction,
    /// Where the request came from, if known.
    #[serde(default)]
    pub source: Option<SocketAddr>,
    /// Where it went, if known.
    #[serde(default)]
    pub destination: Option<SocketAddr>,
    /// The source's labels (`tls`, `client_id`, ...).
    #[serde(default)]
    pub source_meta: BTreeMap<String, String>,
    /// The destination's labels (`tls`, `server_id`, `authority`, ...).
    #[serde(default)]
    pub destination_meta: BTreeMap<String, String>,
    /// The route's labels, if the proxy matched a route.
    #[serde(default)]
    pub route_meta: BTreeMap<String, String>,
    /// The HTTP event itself.
    pub http: HttpEvent,
}

/// The direction of the proxy stack that carried a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a peer to the local application.
    Inbound,
    /// From the local application to a service.
    Outbound,
    /// The proxy did not say.
    Unknown,
}

/// The three events of a tapped request, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpEvent {
    /// The request head arrived.
    RequestInit {
        /// The request's id at its proxy.
        id: StreamId,
        /// Its method.
        method: String,
        /// Its scheme, if it had one.
        #[serde(default)]
        scheme: Option<String>,
        /// Its authority (empty when it had none).
        authority: String,
        /// Its path, without the query.
        path: String,
    },
    /// The response head arrived.
    ResponseInit {
        /// The request's id.
        id: StreamId,
        /// The HTTP status.
        status: u16,
        /// Nanoseconds from the request to the response head (`tap`'s `latency`).
        since_request_init_ns: u64,
    },
    /// The response ended (or failed).
    ResponseEnd {
        /// The request's id.
        id: StreamId,
        /// Nanoseconds from the request to the end (what `top` reports).
        since_request_init_ns: u64,
        /// Nanoseconds from the response head to the end (`tap`'s `duration`).
        since_response_init_ns: u64,
        /// The response body's bytes.
        response_bytes: u64,
        /// How the stream ended: a gRPC status, an HTTP/2 reset, or neither.
        #[serde(default)]
        eos: Option<Eos>,
    },
}

/// How a response stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eos {
    /// With this gRPC status code.
    GrpcStatus(u32),
    /// Reset with this HTTP/2 error code (the request failed).
    ResetError(u32),
}

/// A request's id at its proxy: `base:stream`, as `tap` prints `id=7:8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    /// The proxy's random base.
    pub base: u32,
    /// The request's number at the proxy.
    pub stream: u64,
}

/// News about one tapped proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// The workload.
    pub workload: String,
    /// Its namespace.
    pub namespace: String,
    /// The proxy's tap address, if it has one.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// What happened.
    pub state: ProxyState,
    /// Why it failed, for [`ProxyState::Failed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to a tapped proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyState {
    /// The proxy accepted the tap: from now on it reports matching requests.
    Tapping,
    /// The proxy's stream ended normally (it reached the request limit).
    Ended,
    /// The proxy could not be tapped, or its stream broke: see the error. The other proxies
    /// carry on.
    Failed,
}

// === impl Event ===

impl Event {
    /// The request's id.
    pub fn id(&self) -> StreamId {
        self.http.id()
    }

    /// The `tls` label Linkerd's `tap` prints: the source's for inbound requests, the
    /// destination's for outbound ones (`true`, or why the hop was not mutual TLS).
    pub fn tls(&self) -> &str {
        let meta = match self.direction {
            Direction::Inbound => &self.source_meta,
            Direction::Outbound => &self.destination_meta,
            Direction::Unknown => return "",
        };
        meta.get("tls").map_or("", String::as_str)
    }

    /// Converts a proxy's event, tagging it with the workload whose proxy sent it. `None` for
    /// an event that is not HTTP or lacks its id (nothing a current proxy sends).
    pub fn from_proxy(event: api::TapEvent, workload: &str, namespace: &str) -> Option<Self> {
        let tap_event::Event::Http(http) = event.event?;
        let http = HttpEvent::from_proxy(http.event?)?;
        Some(Self {
            workload: workload.to_owned(),
            namespace: namespace.to_owned(),
            direction: match tap_event::ProxyDirection::try_from(event.proxy_direction) {
                Ok(tap_event::ProxyDirection::Inbound) => Direction::Inbound,
                Ok(tap_event::ProxyDirection::Outbound) => Direction::Outbound,
                _ => Direction::Unknown,
            },
            source: event.source.and_then(|a| SocketAddr::try_from(a).ok()),
            destination: event.destination.and_then(|a| SocketAddr::try_from(a).ok()),
            source_meta: labels(event.source_meta.map(|m| m.labels)),
            destination_meta: labels(event.destination_meta.map(|m| m.labels)),
            route_meta: labels(event.route_meta.map(|m| m.labels)),
            http,
        })
    }
}

fn labels(labels: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    labels.unwrap_or_default().into_iter().collect()
}

// === impl HttpEvent ===

impl HttpEvent {
    /// The request's id.
    pub fn id(&self) -> StreamId {
        match self {
            HttpEvent::RequestInit { id, .. }
            | HttpEvent::ResponseInit { id, .. }
            | HttpEvent::ResponseEnd { id, .. } => *id,
        }
    }

    fn from_proxy(event: pb_http::Event) -> Option<Self> {
        let id = |id: Option<pb_http::StreamId>| {
            id.map(|id| StreamId {
                base: id.base,
                stream: id.stream,
            })
        };
        Some(match event {
            pb_http::Event::RequestInit(init) => HttpEvent::RequestInit {
                id: id(init.id)?,
                method: init
                    .method
                    .and_then(|m| http::Method::try_from(m).ok())
                    .map_or_else(String::new, |m| m.as_str().to_owned()),
                scheme: init
                    .scheme
                    .and_then(|s| http::uri::Scheme::try_from(s).ok())
                    .map(|s| s.as_str().to_owned()),
                authority: init.authority,
                path: init.path,
            },
            pb_http::Event::ResponseInit(init) => HttpEvent::ResponseInit {
                id: id(init.id)?,
                status: u16::try_from(init.http_status).unwrap_or(0),
                since_request_init_ns: nanos(init.since_request_init),
            },
            pb_http::Event::ResponseEnd(end) => HttpEvent::ResponseEnd {
                id: id(end.id)?,
                since_request_init_ns: nanos(end.since_request_init),
                since_response_init_ns: nanos(end.since_response_init),
                response_bytes: end.response_bytes,
                eos: end.eos.and_then(|e| e.end).map(|e| match e {
                    api::eos::End::GrpcStatusCode(c) => Eos::GrpcStatus(c),
                    api::eos::End::ResetErrorCode(c) => Eos::ResetError(c),
                }),
            },
        })
    }
}

/// A protobuf duration in nanoseconds (negative ones, which no proxy sends, as zero).
fn nanos(d: Option<prost_types::Duration>) -> u64 {
    let Some(d) = d else { return 0 };
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u64::try_from(d.nanos).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

// === impl StreamId ===

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.base, self.stream)
    }
}

// === impl Direction ===

impl Direction {
    /// Linkerd's name: `INBOUND`, `OUTBOUND` or `UNKNOWN` (as `tap -o json` prints it).
    pub const fn linkerd_name(self) -> &'static str {
        match self {
            Direction::Inbound => "INBOUND",
            Direction::Outbound => "OUTBOUND",
            Direction::Unknown => "UNKNOWN",
        }
    }
}

// === impl ProxyStatus ===

impl fmt::Display for ProxyStatus {
    /// `tapping emojivoto/web (127.0.0.1:4190)`, `cannot tap emojivoto/voting (...): why`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.state {
            ProxyState::Tapping => "tapping",
            ProxyState::Ended => "tap ended for",
            ProxyState::Failed => "cannot tap",
        };
        write!(f, "{what} {}/{}", self.namespace, self.workload)?;
        if let Some(addr) = self.addr {
            write!(f, " ({addr})")?;
        }
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}
