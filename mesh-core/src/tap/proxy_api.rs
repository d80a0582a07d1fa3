//! Conversions to and from Linkerd's tap API (`io.linkerd.proxy.tap`), for the tap gRPC server.
//!
//! - `From<&TapEvent> for api::TapEvent`: the event, with Linkerd's endpoint labels: `tls` on
//!   the source for inbound requests and on the destination for outbound ones (`true`, or the
//!   reason Linkerd gives for plaintext: `no_tls_from_remote` inbound,
//!   `not_provided_by_service_discovery` outbound, `loopback` for the application's side),
//!   `client_id` and `server_id` where identities are known, and the destination's labels.
//!   Headers and trailers are never extracted. An error ends the stream with an HTTP/2 reset
//!   code standing for its [`ErrorReason`]: `REFUSED_STREAM` when the request was not
//!   processed (refused connection, fail-fast), `CANCEL` for timeouts and resets,
//!   `INTERNAL_ERROR` otherwise; otherwise it ends with the gRPC status, if any.
//! - `TryFrom<api::observe_request::Match> for Filter`: every kind of match Linkerd defines;
//!   empty or malformed matches are an [`InvalidFilter`] that says what is wrong (the server
//!   answers `InvalidArgument` with it). Like Linkerd, entries of `all`/`any` with no match set
//!   are skipped.

use std::collections::HashMap;
use std::net::IpAddr;

use linkerd2_proxy_api::net::{IpAddress, ip_address};
use linkerd2_proxy_api::tap::observe_request::r#match::{self as pb, http::string_match, tcp};
use linkerd2_proxy_api::tap::tap_event::{self, http as pb_http};
use linkerd2_proxy_api::tap::{self as api, eos};

use super::event::ResponseEnd;
use super::{AddrMatch, Direction, Filter, InvalidFilter, Netmask, StringMatch};
use super::{TapEvent, TapEventKind, TapRequest};
use crate::classify::ErrorReason;

// HTTP/2 error codes (RFC 9113, section 7).
const INTERNAL_ERROR: u32 = 0x2;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
// gRPC's UNKNOWN, for a status that does not fit the wire type.
const GRPC_UNKNOWN: u32 = 2;

// === impl From<&TapEvent> ===

impl From<&TapEvent> for api::TapEvent {
    fn from(event: &TapEvent) -> Self {
        let req = event.request();
        let id = Some(pb_http::StreamId {
            base: event.id().base(),
            stream: event.id().stream(),
        });
        let http = match event.kind() {
            TapEventKind::RequestInit => pb_http::Event::RequestInit(pb_http::RequestInit {
                id,
                method: Some(req.method().clone().into()),
                scheme: req.scheme().map(Into::into),
                authority: req.authority().map(|a| a.to_string()).unwrap_or_default(),
                path: req.path().to_owned(),
                headers: None,
            }),
            TapEventKind::ResponseInit(init) => {
                pb_http::Event::ResponseInit(pb_http::ResponseInit {
                    id,
                    since_request_init: init.since_request_init.try_into().ok(),
                    http_status: u32::from(init.status.as_u16()),
                    headers: None,
                })
            }
            TapEventKind::ResponseEnd(end) => pb_http::Event::ResponseEnd(pb_http::ResponseEnd {
                id,
                since_request_init: end.since_request_init.try_into().ok(),
                since_response_init: end.since_response_init.and_then(|d| d.try_into().ok()),
                response_bytes: end.response_bytes,
                eos: Some(api::Eos { end: eos_end(end) }),
                trailers: None,
            }),
        };
        let (source_tls, destination_tls) = tls_labels(req);
        let mut source_meta = HashMap::from([("tls".to_owned(), source_tls.to_owned())]);
        if let Some(id) = req.source_identity() {
            source_meta.insert("client_id".to_owned(), id.to_owned());
        }
        let mut destination_meta: HashMap<String, String> = req
            .destination_labels()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        destination_meta.insert("tls".to_owned(), destination_tls.to_owned());
        if let Some(id) = req.destination_identity() {
            destination_meta.insert("server_id".to_owned(), id.to_owned());
        }
        let route_labels = req.route_labels();
        api::TapEvent {
            source: req.source_addr().map(Into::into),
            source_meta: Some(tap_event::EndpointMeta {
                labels: source_meta,
            }),
            route_meta: (!route_labels.is_empty()).then(|| tap_event::RouteMeta {
                labels: route_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }),
            destination: req.destination_addr().map(Into::into),
            destination_meta: Some(tap_event::EndpointMeta {
                labels: destination_meta,
            }),
            proxy_direction: match req.direction() {
                Direction::Inbound => tap_event::ProxyDirection::Inbound,
                Direction::Outbound => tap_event::ProxyDirection::Outbound,
            }
            .into(),
            event: Some(tap_event::Event::Http(tap_event::Http {
                event: Some(http),
            })),
        }
    }
}

impl From<TapEvent> for api::TapEvent {
    fn from(event: TapEvent) -> Self {
        Self::from(&event)
    }
}

/// The `tls` labels of the source and the destination, as Linkerd's proxy gives them.
fn tls_labels(req: &TapRequest) -> (&'static str, &'static str) {
    match (req.direction(), req.tls()) {
        (Direction::Inbound, true) => ("true", "loopback"),
        (Direction::Inbound, false) => ("no_tls_from_remote", "loopback"),
        (Direction::Outbound, true) => ("loopback", "true"),
        (Direction::Outbound, false) => ("loopback", "not_provided_by_service_discovery"),
    }
}

fn eos_end(end: &ResponseEnd) -> Option<eos::End> {
    if let Some(error) = end.error {
        let code = match error {
            ErrorReason::ConnectRefused | ErrorReason::Unavailable => REFUSED_STREAM,
            ErrorReason::Timeout | ErrorReason::Reset => CANCEL,
            ErrorReason::Other => INTERNAL_ERROR,
        };
        return Some(eos::End::ResetErrorCode(code));
    }
    end.grpc_status
        .map(|code| eos::End::GrpcStatusCode(u32::try_from(code).unwrap_or(GRPC_UNKNOWN)))
}

// === impl TryFrom<Match> for Filter ===

impl TryFrom<api::observe_request::Match> for Filter {
    type Error = InvalidFilter;

    fn try_from(m: api::observe_request::Match) -> Result<Self, InvalidFilter> {
        match m.r#match {
            None => Err(InvalidFilter::new("a match has no `match` set")),
            Some(pb::Match::All(seq)) => seq_filters(seq).map(Filter::All),
            Some(pb::Match::Any(seq)) => seq_filters(seq).map(Filter::Any),
            Some(pb::Match::Not(m)) => Filter::try_from(*m).map(|f| !f),
            Some(pb::Match::Source(tcp)) => addr_match(tcp, "source").map(Filter::Source),
            Some(pb::Match::Destination(tcp)) => {
                addr_match(tcp, "destination").map(Filter::Destination)
            }
            Some(pb::Match::Http(http)) => http_filter(http),
            Some(pb::Match::DestinationLabel(label)) => label_match(label, "destination_label")
                .map(|(key, value)| Filter::DestinationLabel { key, value }),
            Some(pb::Match::RouteLabel(label)) => label_match(label, "route_label")
                .map(|(key, value)| Filter::RouteLabel { key, value }),
        }
    }
}

fn seq_filters(seq: pb::Seq) -> Result<Vec<Filter>, InvalidFilter> {
    seq.matches
        .into_iter()
        .filter(|m| m.r#match.is_some())
        .map(Filter::try_from)
        .collect()
}

fn label_match(label: pb::Label, what: &str) -> Result<(String, String), InvalidFilter> {
    if label.key.is_empty() || label.value.is_empty() {
        return Err(InvalidFilter::new(format!(
            "`{what}` needs a key and a value"
        )));
    }
    Ok((label.key, label.value))
}

fn addr_match(tcp: pb::Tcp, what: &str) -> Result<AddrMatch, InvalidFilter> {
    match tcp.r#match {
        None => Err(InvalidFilter::new(format!(
            "`{what}` has no netmask or ports"
        ))),
        Some(tcp::Match::Ports(range)) => {
            // An unset end of the range stands for the other end: a single port.
            let min = if range.min == 0 { range.max } else { range.min };
            let max = if range.max == 0 { range.min } else { range.max };
            let port = |p: u32| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| InvalidFilter::new(format!("`{what}` port {p} is not a port")))
            };
            let (min, max) = (port(min)?, port(max)?);
            if min > max {
                return Err(InvalidFilter::new(format!(
                    "`{what}` port range {min}-{max} is empty"
                )));
            }
            Ok(AddrMatch::Ports { min, max })
        }
        Some(tcp::Match::Netmask(net)) => {
            let ip = match net.ip {
                Some(IpAddress {
                    ip: Some(ip_address::Ip::Ipv4(v4)),
                }) => IpAddr::from(std::net::Ipv4Addr::from(v4)),
                Some(IpAddress {
                    ip: Some(ip_address::Ip::Ipv6(v6)),
                }) => IpAddr::from(std::net::Ipv6Addr::from(v6)),
                _ => {
                    return Err(InvalidFilter::new(format!(
                        "`{what}` netmask has no address"
                    )));
                }
            };
            // As in Linkerd, a zero mask is an unset one.
            let prefix_len = u8::try_from(net.mask)
                .ok()
                .filter(|m| *m != 0)
                .ok_or_else(|| {
                    InvalidFilter::new(format!("`{what}` netmask /{} is not valid", net.mask))
                })?;
            Netmask::new(ip, prefix_len).map(AddrMatch::Net)
        }
    }
}

fn http_filter(http: pb::Http) -> Result<Filter, InvalidFilter> {
    use pb::http::Match as H;
    match http.r#match {
        None => Err(InvalidFilter::new(
            "`http` has no scheme, method, authority or path",
        )),
        Some(H::Scheme(scheme)) => http::uri::Scheme::try_from(scheme)
            .map(Filter::Scheme)
            .map_err(|e| InvalidFilter::new(format!("`http.scheme`: {e}"))),
        Some(H::Method(method)) => http::Method::try_from(method)
            .map(Filter::Method)
            .map_err(|e| InvalidFilter::new(format!("`http.method`: {e}"))),
        Some(H::Authority(m)) => string_match(m, "http.authority").map(Filter::Authority),
        Some(H::Path(m)) => string_match(m, "http.path").map(Filter::Path),
    }
}

fn string_match(m: pb::http::StringMatch, what: &str) -> Result<StringMatch, InvalidFilter> {
    match m.r#match {
        Some(string_match::Match::Exact(s)) => Ok(StringMatch::Exact(s)),
        Some(string_match::Match::Prefix(s)) => Ok(StringMatch::Prefix(s)),
        None => Err(InvalidFilter::new(format!(
            "`{what}` has no exact or prefix"
        ))),
    }
}
