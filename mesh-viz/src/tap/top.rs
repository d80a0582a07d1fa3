//! `mesh top`: the tap stream aggregated into Linkerd's table of the busiest paths.
//!
//! As `linkerd viz top` (`viz/cmd/top.go`) does: a request counts once its `end` arrives; rows
//! are keyed by source, destination, method and path; each keeps the count, the best, worst and
//! last latency (request to end), and the success rate, where a request fails when its status
//! is 5xx, its gRPC status is `Unknown`, `DeadlineExceeded`, `Internal`, `Unavailable` or
//! `DataLoss`, or its stream was reset. Rows are sorted by count, busiest first.
//!
//! Sources and destinations are named by workload where the mesh knows it (Linkerd uses pod
//! names): the tapped workload itself on its side of the hop, the peer's identity on the other
//! (`web` for `web.emojivoto.serviceaccount.identity...` in the same namespace,
//! `web.other` across namespaces), else its IP address, else (outbound, before the endpoint is
//! known) the authority's host.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::event::{Direction, Eos, Event, HttpEvent, ProxyState, StreamId, TapLine};

/// The table's column headers, in order.
pub const TOP_HEADERS: [&str; 9] = [
    "Source",
    "Destination",
    "Method",
    "Path",
    "Count",
    "Best",
    "Worst",
    "Last",
    "Success Rate",
];

/// One row of the table: the requests from one source to one destination with one method and
/// path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopRow {
    /// Who sent the requests.
    pub source: String,
    /// Who received them.
    pub destination: String,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// How many ended.
    pub count: u64,
    /// The lowest latency (request to end).
    pub best: Duration,
    /// The highest latency.
    pub worst: Duration,
    /// The latency of the latest request.
    pub last: Duration,
    /// How many succeeded.
    pub successes: u64,
    /// How many failed.
    pub failures: u64,
}

/// Aggregates tap events into [`TopRow`]s.
///
/// ```
/// use mesh_viz::tap::{Direction, Eos, Event, HttpEvent, StreamId, Top};
///
/// let id = StreamId { base: 1, stream: 0 };
/// let event = |http| Event {
///     workload: "web".into(),
///     namespace: "emojivoto".into(),
///     direction: Direction::Outbound,
///     source: Some("127.0.0.1:50000".parse().unwrap()),
///     destination: None,
///     source_meta: Default::default(),
///     destination_meta: Default::default(),
///     route_meta: Default::default(),
///     http,
/// };
/// let mut top = Top::new();
/// top.insert(&event(HttpEvent::RequestInit {
///     id, method: "POST".into(), scheme: None,
///     authority: "voting-svc.emojivoto:8080".into(), path: "/vote".into(),
/// }));
/// top.insert(&event(HttpEvent::ResponseInit { id, status: 200, since_request_init_ns: 1_000_000 }));
/// top.insert(&event(HttpEvent::ResponseEnd {
///     id, since_request_init_ns: 2_000_000, since_response_init_ns: 1_000_000,
///     response_bytes: 0, eos: Some(Eos::GrpcStatus(2)),
/// }));
/// let rows = top.rows();
/// assert_eq!(rows[0].cells(), ["web", "voting-svc.emojivoto", "POST", "/vote", "1", "2ms", "2ms", "2ms", "0.00%"]);
/// ```
#[derive(Debug, Default)]
pub struct Top {
    pending: HashMap<RequestKey, Pending>,
    rows: Vec<TopRow>,
    index: HashMap<RowKey, usize>,
}

type RequestKey = (String, String, StreamId);
type RowKey = (String, String, String, String);

#[derive(Debug)]
struct Pending {
    source: String,
    destination: String,
    method: String,
    path: String,
    status: u16,
}

/// Requests waiting for their end, at most (older ones are forgotten past this).
const MAX_PENDING: usize = 10_000;

// === impl Top ===

impl Top {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a line of the tap stream: events are aggregated; a proxy whose stream ended or
    /// failed has its unfinished requests forgotten.
    pub fn insert_line(&mut self, line: &TapLine) {
        match line {
            TapLine::Event(event) => self.insert(event),
            TapLine::Proxy(status) if status.state != ProxyState::Tapping => {
                self.pending
                    .retain(|(ns, w, _), _| !(ns == &status.namespace && w == &status.workload));
            }
            TapLine::Proxy(_) => {}
        }
    }

    /// Adds an event: a request is counted when its end arrives.
    pub fn insert(&mut self, event: &Event) {
        let key = (event.namespace.clone(), event.workload.clone(), event.id());
        match &event.http {
            HttpEvent::RequestInit {
                method,
                authority,
                path,
                ..
            } => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
                let (source, destination) = names(event, authority);
                self.pending.insert(
                    key,
                    Pending {
                        source,
                        destination,
                        method: method.clone(),
                        path: path.clone(),
                        status: 0,
                    },
                );
            }
            HttpEvent::ResponseInit { status, .. } => {
                if let Some(p) = self.pending.get_mut(&key) {
                    p.status = *status;
                }
            }
            HttpEvent::ResponseEnd {
                since_request_init_ns,
                eos,
                ..
            } => {
                let Some(p) = self.pending.remove(&key) else {
                    return;
                };
                let latency = Duration::from_nanos(*since_request_init_ns);
                let success = p.status < 500
                    && match eos {
                        // Unknown, DeadlineExceeded, Internal, Unavailable, DataLoss.
                        Some(Eos::GrpcStatus(code)) => !matches!(code, 2 | 4 | 13 | 14 | 15),
                        Some(Eos::ResetError(_)) => false,
                        None => true,
                    };
                self.record(p, latency, success);
            }
        }
    }

    fn record(&mut self, p: Pending, latency: Duration, success: bool) {
        let key = (
            p.source.clone(),
            p.destination.clone(),
            p.method.clone(),
            p.path.clone(),
        );
        let (successes, failures) = if success { (1, 0) } else { (0, 1) };
        match self.index.get(&key) {
            Some(&i) => {
                let row = &mut self.rows[i];
                row.count += 1;
                row.best = row.best.min(latency);
                row.worst = row.worst.max(latency);
                row.last = latency;
                row.successes += successes;
                row.failures += failures;
            }
            None => {
                self.index.insert(key, self.rows.len());
                self.rows.push(TopRow {
                    source: p.source,
                    destination: p.destination,
                    method: p.method,
                    path: p.path,
                    count: 1,
                    best: latency,
                    worst: latency,
                    last: latency,
                    successes,
                    failures,
                });
            }
        }
    }

    /// The rows, busiest first (ties in the order they first appeared).
    pub fn rows(&self) -> Vec<TopRow> {
        let mut rows = self.rows.clone();
        rows.sort_by_key(|r| std::cmp::Reverse(r.count));
        rows
    }

    /// How many requests have started but not ended.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The source and destination names of a request (see the module docs).
fn names(event: &Event, authority: &str) -> (String, String) {
    let own = || event.workload.clone();
    let peer = |meta_id: Option<&String>, addr: Option<SocketAddr>| -> Option<String> {
        meta_id
            .map(|id| short_identity(id, &event.namespace))
            .or_else(|| addr.map(|a| a.ip().to_string()))
    };
    match event.direction {
        Direction::Inbound => (
            peer(event.source_meta.get("client_id"), event.source)
                .unwrap_or_else(|| "-".to_owned()),
            own(),
        ),
        Direction::Outbound => (
            own(),
            peer(event.destination_meta.get("server_id"), event.destination)
                .unwrap_or_else(|| host(authority).to_owned()),
        ),
        Direction::Unknown => (
            event
                .source
                .map_or_else(|| "-".to_owned(), |a| a.ip().to_string()),
            event
                .destination
                .map_or_else(|| host(authority).to_owned(), |a| a.ip().to_string()),
        ),
    }
}

/// `web` for `web.<ns>.serviceaccount.identity...` in namespace `ns`, `web.other` for another
/// namespace, the identity itself when it is not a mesh workload identity.
fn short_identity(id: &str, namespace: &str) -> String {
    let mut labels = id.splitn(4, '.');
    match (labels.next(), labels.next(), labels.next()) {
        (Some(sa), Some(ns), Some("serviceaccount")) if ns == namespace => sa.to_owned(),
        (Some(sa), Some(ns), Some("serviceaccount")) => format!("{sa}.{ns}"),
        _ => id.to_owned(),
    }
}

/// An authority without its port.
fn host(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ if authority.is_empty() => "-",
        _ => authority,
    }
}

// === impl TopRow ===

impl TopRow {
    /// The share of requests that succeeded, in percent, computed as Linkerd does (in `f32`).
    pub fn success_rate(&self) -> f32 {
        let total = self.successes + self.failures;
        if total == 0 {
            return 0.0;
        }
        // As Linkerd: `100.0*float32(successes)/float32(successes+failures)`.
        100.0 * self.successes as f32 / total as f32
    }

    /// The row's cells as `linkerd viz top` prints them, in [`TOP_HEADERS`] order.
    pub fn cells(&self) -> [String; 9] {
        [
            self.source.clone(),
            self.destination.clone(),
            self.method.clone(),
            self.path.clone(),
            self.count.to_string(),
            format_latency(self.best),
            format_latency(self.worst),
            format_latency(self.last),
            format!("{:.2}%", self.success_rate()),
        ]
    }
}

/// A latency as `linkerd viz top` prints it: rounded to microseconds below a millisecond, to
/// milliseconds below a second, to seconds above, then written as Go writes a duration
/// (`850µs`, `12ms`, `3s`, `1m5s`).
pub fn format_latency(d: Duration) -> String {
    let ns = d.as_nanos();
    let unit = if ns < 1_000_000 {
        1_000
    } else if ns < 1_000_000_000 {
        1_000_000
    } else {
        1_000_000_000
    };
    // Go's Duration.Round: halves away from zero.
    let rounded = (ns + unit / 2) / unit * unit;
    go_duration(rounded)
}

/// Go's `time.Duration.String` for a non-negative number of nanoseconds.
fn go_duration(ns: u128) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000_000_000 {
        let (unit, suffix) = if ns < 1_000 {
            (1, "ns")
        } else if ns < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{suffix}", fraction(ns, unit));
    }
    let secs = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{}s", fraction(s * 1_000_000_000 + sub, 1_000_000_000));
    out
}

/// `value / unit` with its fractional digits, trailing zeros trimmed (`1.5`, `12`).
fn fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let digits = unit.ilog10() as usize;
    let frac = format!("{rest:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_000_000, "1ms"),
            (1_500_000_000, "1.5s"),
            (65_000_000_000, "1m5s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_000, "1h2m3s"),
        ];
        for (ns, s) in cases {
            assert_eq!(go_duration(ns), s, "{ns}ns");
        }
    }

    #[test]
    fn latencies_round_as_linkerd_top_rounds_them() {
        let cases = [
            (Duration::from_nanos(499), "0s"),
            (Duration::from_nanos(500), "1µs"),
            (Duration::from_nanos(850_400), "850µs"),
            (Duration::from_nanos(999_500), "1ms"),
            (Duration::from_micros(12_499), "12ms"),
            (Duration::from_micros(12_500), "13ms"),
            (Duration::from_micros(999_500), "1s"),
            (Duration::from_millis(2_500), "3s"),
            (Duration::from_millis(64_700), "1m5s"),
        ];
        for (d, s) in cases {
            assert_eq!(format_latency(d), s, "{d:?}");
        }
    }

    #[test]
    fn peers_are_named_by_workload() {
        let id = "web.emojivoto.serviceaccount.identity.mesh.cluster.local";
        assert_eq!(short_identity(id, "emojivoto"), "web");
        assert_eq!(short_identity(id, "other"), "web.emojivoto");
        assert_eq!(short_identity("spiffe://x/y", "emojivoto"), "spiffe://x/y");
        assert_eq!(host("voting-svc.emojivoto:8080"), "voting-svc.emojivoto");
        assert_eq!(host("voting-svc.emojivoto"), "voting-svc.emojivoto");
        assert_eq!(host("[::1]:80"), "[::1]");
        assert_eq!(host(""), "-");
    }
}
