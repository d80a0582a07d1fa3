//! `mesh tap` output: Linkerd's tap lines, and its `-o json` objects.
//!
//! The lines follow `linkerd viz tap` exactly (`viz/cmd/tap.go`): `req`, `rsp` and `end`, the
//! request id, `proxy=in ` (with a space, so it aligns with `out`), the source and destination
//! addresses, and `tls=` with the label of the meshed side. One deliberate difference:
//! Linkerd prints only the sub-second part of `latency` and `duration` (a bug for anything
//! slower than a second); here they are the whole duration in microseconds, which is the same
//! text whenever Linkerd's is right.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::Serialize;

use super::event::{Direction, Eos, Event, HttpEvent, StreamId};

/// Renders an event as `linkerd viz tap` prints it, without the newline.
///
/// ```
/// use mesh_viz::tap::{Direction, Event, HttpEvent, StreamId, render};
///
/// let event = Event {
///     workload: "web".into(),
///     namespace: "emojivoto".into(),
///     direction: Direction::Outbound,
///     source: Some("127.0.0.1:53210".parse()?),
///     destination: Some("127.0.0.1:4143".parse()?),
///     source_meta: Default::default(),
///     destination_meta: [("tls".to_owned(), "true".to_owned())].into(),
///     route_meta: Default::default(),
///     http: HttpEvent::ResponseInit {
///         id: StreamId { base: 7, stream: 8 },
///         status: 200,
///         since_request_init_ns: 1_234_567,
///     },
/// };
/// assert_eq!(
///     render::tap_line(&event),
///     "rsp id=7:8 proxy=out src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=true :status=200 latency=1234µs"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn tap_line(event: &Event) -> String {
    let proxy = match event.direction {
        Direction::Inbound => "in ",
        Direction::Outbound => "out",
        Direction::Unknown => "???",
    };
    let flow = format!(
        "proxy={proxy} src={} dst={} tls={}",
        addr(event.source),
        addr(event.destination),
        event.tls()
    );
    match &event.http {
        HttpEvent::RequestInit {
            id,
            method,
            authority,
            path,
            ..
        } => format!("req id={id} {flow} :method={method} :authority={authority} :path={path}"),
        HttpEvent::ResponseInit {
            id,
            status,
            since_request_init_ns,
        } => format!(
            "rsp id={id} {flow} :status={status} latency={}µs",
            since_request_init_ns / 1000
        ),
        HttpEvent::ResponseEnd {
            id,
            since_response_init_ns,
            response_bytes,
            eos,
            ..
        } => {
            let mut line = format!("end id={id} {flow} ");
            match eos {
                Some(Eos::GrpcStatus(code)) => {
                    let _ = write!(line, "grpc-status={} ", grpc_code_name(*code));
                }
                Some(Eos::ResetError(code)) => {
                    let _ = write!(line, "reset-error={code} ");
                }
                None => {}
            }
            let _ = write!(
                line,
                "duration={}µs response-length={response_bytes}B",
                since_response_init_ns / 1000
            );
            line
        }
    }
}

/// Renders an event as one line of JSON in the shape of `linkerd viz tap -o json` (`source`,
/// `destination`, `routeMeta`, `proxyDirection`, `requestInitEvent` / `responseInitEvent` /
/// `responseEndEvent`), plus the `workload` and `namespace` whose proxy saw it. Linkerd
/// indents each object over several lines; here each is one line, for `jq` and `grep`.
pub fn json_line(event: &Event) -> String {
    let http = &event.http;
    let json = JsonEvent {
        source: JsonEndpoint::new(event.source, &event.source_meta),
        destination: JsonEndpoint::new(event.destination, &event.destination_meta),
        route_meta: (!event.route_meta.is_empty()).then_some(&event.route_meta),
        proxy_direction: event.direction.linkerd_name(),
        request_init_event: match http {
            HttpEvent::RequestInit {
                id,
                method,
                scheme,
                authority,
                path,
            } => Some(JsonRequestInit {
                id: *id,
                method,
                scheme: match scheme.as_deref() {
                    Some("http") => "HTTP",
                    Some("https") => "HTTPS",
                    Some(other) => other,
                    None => "",
                },
                authority,
                path,
                headers: None,
            }),
            _ => None,
        },
        response_init_event: match http {
            HttpEvent::ResponseInit {
                id,
                status,
                since_request_init_ns,
            } => Some(JsonResponseInit {
                id: *id,
                since_request_init: JsonDuration::from_nanos(*since_request_init_ns),
                http_status: *status,
                headers: None,
            }),
            _ => None,
        },
        response_end_event: match http {
            HttpEvent::ResponseEnd {
                id,
                since_request_init_ns,
                since_response_init_ns,
                response_bytes,
                eos,
            } => Some(JsonResponseEnd {
                id: *id,
                since_request_init: JsonDuration::from_nanos(*since_request_init_ns),
                since_response_init: JsonDuration::from_nanos(*since_response_init_ns),
                response_bytes: *response_bytes,
                trailers: None,
                grpc_status_code: match eos {
                    Some(Eos::GrpcStatus(c)) => *c,
                    _ => 0,
                },
                reset_error_code: match eos {
                    Some(Eos::ResetError(c)) => *c,
                    _ => 0,
                },
            }),
            _ => None,
        },
        workload: &event.workload,
        namespace: &event.namespace,
    };
    serde_json::to_string(&json).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The name Go's `codes.Code` gives a gRPC status code, as Linkerd prints `grpc-status=`.
pub fn grpc_code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("Code({code})"), |n| (*n).to_owned())
}

/// An address as Linkerd prints it: `ip:port`, `[ip6]:port`, or `:0` when unknown.
fn addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| ":0".to_owned(), |a| a.to_string())
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    source: JsonEndpoint<'a>,
    destination: JsonEndpoint<'a>,
    #[serde(rename = "routeMeta")]
    route_meta: Option<&'a BTreeMap<String, String>>,
    #[serde(rename = "proxyDirection")]
    proxy_direction: &'static str,
    #[serde(rename = "requestInitEvent", skip_serializing_if = "Option::is_none")]
    request_init_event: Option<JsonRequestInit<'a>>,
    #[serde(rename = "responseInitEvent", skip_serializing_if = "Option::is_none")]
    response_init_event: Option<JsonResponseInit>,
    #[serde(rename = "responseEndEvent", skip_serializing_if = "Option::is_none")]
    response_end_event: Option<JsonResponseEnd>,
    workload: &'a str,
    namespace: &'a str,
}

#[derive(Serialize)]
struct JsonEndpoint<'a> {
    ip: String,
    port: u16,
    metadata: &'a BTreeMap<String, String>,
}

impl<'a> JsonEndpoint<'a> {
    fn new(addr: Option<SocketAddr>, metadata: &'a BTreeMap<String, String>) -> Self {
        Self {
            ip: addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            port: addr.map_or(0, |a| a.port()),
            metadata,
        }
    }
}

#[derive(Serialize)]
struct JsonRequestInit<'a> {
    id: StreamId,
    method: &'a str,
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    headers: Option<()>,
}

#[derive(Serialize)]
struct JsonResponseInit {
    id: StreamId,
    #[serde(rename = "sinceRequestInit")]
    since_request_init: JsonDuration,
    #[serde(rename = "httpStatus")]
    http_status: u16,
    headers: Option<()>,
}

#[derive(Serialize)]
struct JsonResponseEnd {
    id: StreamId,
    #[serde(rename = "sinceRequestInit")]
    since_request_init: JsonDuration,
    #[serde(rename = "sinceResponseInit")]
    since_response_init: JsonDuration,
    #[serde(rename = "responseBytes")]
    response_bytes: u64,
    trailers: Option<()>,
    #[serde(rename = "grpcStatusCode")]
    grpc_status_code: u32,
    #[serde(rename = "resetErrorCode", skip_serializing_if = "is_zero")]
    reset_error_code: u32,
}

/// A protobuf `Duration` as Go's `encoding/json` writes it (zero fields omitted).
#[derive(Serialize)]
struct JsonDuration {
    #[serde(skip_serializing_if = "is_zero_i64")]
    seconds: i64,
    #[serde(skip_serializing_if = "is_zero_i32")]
    nanos: i32,
}

impl JsonDuration {
    fn from_nanos(ns: u64) -> Self {
        Self {
            seconds: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
            nanos: i32::try_from(ns % 1_000_000_000).unwrap_or(0),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}
