//! The answers: rows of `stat`, `edges` and `routes`, as JSON (the API, `-o json`) and as
//! the input of the text renderers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::query::ResourceKind;
use super::workload::Workload;

/// Which side of a proxy numbers were measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Requests the workload served.
    Inbound,
    /// Requests the workload sent.
    Outbound,
}

/// `meshed/total` workloads of a row: in local mode a workload counts as meshed when its proxy
/// answered the last scrape and says it is ready. Written `"1/1"`, as Linkerd's `MESHED`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meshed {
    /// Workloads whose proxy is ready.
    pub meshed: u32,
    /// All workloads of the row.
    pub total: u32,
}

impl fmt::Display for Meshed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.meshed, self.total)
    }
}

impl Serialize for Meshed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Meshed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("expected meshed/total, got {s:?}"));
        let (m, t) = s.split_once('/').ok_or_else(bad)?;
        Ok(Self {
            meshed: m.parse().map_err(|_| bad())?,
            total: t.parse().map_err(|_| bad())?,
        })
    }
}

/// One row of `stat`. JSON fields follow `linkerd viz stat -o json`, plus `direction`.
///
/// Every number is `None` (JSON `null`, text `-`) when no request was answered in the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatRow {
    /// The namespace (for a namespace row, the namespace itself).
    pub namespace: String,
    /// What the row is.
    pub kind: ResourceKind,
    /// The workload's (or namespace's) name.
    pub name: String,
    /// Ready proxies out of all workloads.
    pub meshed: Meshed,
    /// Successful responses out of all responses, 0 to 1.
    pub success: Option<f64>,
    /// Responses per second.
    pub rps: Option<f64>,
    /// Median latency to the response head, in whole milliseconds.
    pub latency_ms_p50: Option<u64>,
    /// 95th percentile latency.
    pub latency_ms_p95: Option<u64>,
    /// 99th percentile latency.
    pub latency_ms_p99: Option<u64>,
    /// Connections open now (inbound: from clients to the proxy).
    pub tcp_open_connections: Option<u64>,
    /// Bytes per second read from connections.
    pub tcp_read_bytes_rate: Option<f64>,
    /// Bytes per second written to connections.
    pub tcp_write_bytes_rate: Option<f64>,
    /// Which side of the proxy the numbers come from: inbound unless the workload served no
    /// traffic in the window but sent some, or a `--to`/`--from` filter asked for outbound.
    pub direction: Option<Direction>,
}

impl StatRow {
    pub(crate) fn new(kind: ResourceKind, namespace: &str, name: &str, meshed: Meshed) -> Self {
        Self {
            namespace: namespace.to_string(),
            kind,
            name: name.to_string(),
            meshed,
            success: None,
            rps: None,
            latency_ms_p50: None,
            latency_ms_p95: None,
            latency_ms_p99: None,
            tcp_open_connections: None,
            tcp_read_bytes_rate: None,
            tcp_write_bytes_rate: None,
            direction: None,
        }
    }

    /// Whether any request was answered in the window.
    pub fn has_traffic(&self) -> bool {
        self.rps.is_some()
    }

    pub(crate) fn fill(&mut self, g: &Golden, direction: Direction) -> bool {
        let Some(total) = g.total_rps() else {
            return false;
        };
        self.success = g.success();
        self.rps = Some(tidy(total));
        self.latency_ms_p50 = g.p50.map(round_ms);
        self.latency_ms_p95 = g.p95.map(round_ms);
        self.latency_ms_p99 = g.p99.map(round_ms);
        self.tcp_open_connections = Some(round_ms(g.tcp_open.unwrap_or(0.0)));
        self.tcp_read_bytes_rate = Some(tidy(g.read_bps));
        self.tcp_write_bytes_rate = Some(tidy(g.write_bps));
        self.direction = Some(direction);
        true
    }
}

/// One row of `edges`. JSON fields follow `linkerd viz edges -o json` (with full identities),
/// plus `secured`, `rps` and `success`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeRow {
    /// The client workload.
    pub src: String,
    /// Its namespace.
    pub src_namespace: String,
    /// The server workload (or service, if it is not a workload).
    pub dst: String,
    /// Its namespace.
    pub dst_namespace: String,
    /// The identity the client proved (empty when unknown or not over mTLS).
    pub client_id: String,
    /// The identity the server proves (empty when unknown).
    pub server_id: String,
    /// Whether every request on the edge went over mutual TLS.
    pub secured: bool,
    /// Why not, when not (`no_identity`: the destination has no identity in discovery).
    pub no_tls_reason: String,
    /// Responses per second over the window (`None` without traffic in it).
    pub rps: Option<f64>,
    /// Success over the window, 0 to 1.
    pub success: Option<f64>,
}

/// One row of `routes`. JSON fields follow `linkerd viz routes -o json` (flattened into one
/// array), plus the wide columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteRow {
    /// The route's name, or [`DEFAULT_ROUTE`](super::DEFAULT_ROUTE).
    pub route: String,
    /// The service the route belongs to.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// Success of the route (inbound; or effective, with `--to`).
    pub success: Option<f64>,
    /// Responses per second.
    pub rps: Option<f64>,
    /// Median latency, ms.
    pub latency_ms_p50: Option<u64>,
    /// 95th percentile latency, ms.
    pub latency_ms_p95: Option<u64>,
    /// 99th percentile latency, ms.
    pub latency_ms_p99: Option<u64>,
    /// Success as the calling applications saw it (after retries), measured by the clients.
    pub effective_success: Option<f64>,
    /// Requests per second as the calling applications sent them.
    pub effective_rps: Option<f64>,
    /// Success of every attempt, retries included.
    pub actual_success: Option<f64>,
    /// Attempts per second, retries included.
    pub actual_rps: Option<f64>,
}

/// A workload as the store sees it: what `GET /api/workloads` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    /// The workload, as `mesh run` recorded it.
    #[serde(flatten)]
    pub workload: Workload,
    /// Whether its proxy is ready (answered its last scrape recently and says so).
    pub meshed: bool,
    /// Successful scrapes so far.
    pub scrapes: u64,
    /// Failed scrapes so far.
    pub scrape_failures: u64,
    /// How long ago the last scrape was, in milliseconds.
    pub last_scrape_ms_ago: Option<u64>,
    /// Why the last scrape failed, if it did.
    pub last_error: Option<String>,
}

fn round_ms(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// Golden numbers of one row before formatting, from either source.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Golden {
    pub(crate) success_rps: f64,
    pub(crate) failure_rps: f64,
    pub(crate) p50: Option<f64>,
    pub(crate) p95: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) tcp_open: Option<f64>,
    pub(crate) read_bps: f64,
    pub(crate) write_bps: f64,
}

impl Golden {
    /// All responses per second, if there were any.
    pub(crate) fn total_rps(&self) -> Option<f64> {
        let total = self.success_rps + self.failure_rps;
        (total > 0.0 && total.is_finite()).then_some(total)
    }

    pub(crate) fn success(&self) -> Option<f64> {
        self.total_rps().map(|t| tidy(self.success_rps / t))
    }

    /// [`total_rps`](Self::total_rps), without floating-point dust.
    pub(crate) fn rps(&self) -> Option<f64> {
        self.total_rps().map(tidy)
    }
}

/// Rounds to nine decimals: rates are sums of increases divided by spans, and a success of
/// `12/s / (12/s + 4/s)` should read 0.75, not 0.7499999999999999, in JSON.
pub(crate) fn tidy(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1e9).round() / 1e9
    } else {
        v
    }
}

/// The rows of `routes` from either source: per route, its own numbers and the clients'
/// effective and actual ones; `[DEFAULT]` always, and last.
pub(crate) fn route_rows(
    own: &BTreeMap<String, Golden>,
    effective: &BTreeMap<String, Golden>,
    actual: &BTreeMap<String, Golden>,
    service: &str,
    namespace: &str,
) -> Vec<RouteRow> {
    use super::query::DEFAULT_ROUTE;
    let mut names: Vec<&str> = own
        .keys()
        .chain(effective.keys())
        .chain(actual.keys())
        .map(String::as_str)
        .chain([DEFAULT_ROUTE])
        .collect();
    names.sort_by(|a, b| (*a == DEFAULT_ROUTE, a).cmp(&(*b == DEFAULT_ROUTE, b)));
    names.dedup();
    let empty = Golden::default();
    names
        .into_iter()
        .map(|route| {
            let g = own.get(route).unwrap_or(&empty);
            let e = effective.get(route).unwrap_or(&empty);
            let a = actual.get(route).unwrap_or(&empty);
            let has = g.total_rps().is_some();
            RouteRow {
                route: route.to_string(),
                service: service.to_string(),
                namespace: namespace.to_string(),
                success: g.success(),
                rps: g.rps(),
                latency_ms_p50: g.p50.filter(|_| has).map(round_ms),
                latency_ms_p95: g.p95.filter(|_| has).map(round_ms),
                latency_ms_p99: g.p99.filter(|_| has).map(round_ms),
                effective_success: e.success(),
                effective_rps: e.rps(),
                actual_success: a.success(),
                actual_rps: a.rps(),
            }
        })
        .collect()
}

/// What either source observed about a pair of workloads, merged into edges the same way.
#[derive(Debug, Default)]
pub(crate) struct EdgeBuilder {
    edges: BTreeMap<(String, String, String, String), EdgeAcc>,
}

#[derive(Debug, Default)]
struct EdgeAcc {
    client_id: String,
    server_id: String,
    /// Cumulative responses seen over mTLS / not.
    tls: f64,
    plain: f64,
    no_tls_reason: String,
    inbound: Golden,
    outbound: Golden,
}

/// One observation of traffic between two workloads.
#[derive(Debug)]
pub(crate) struct EdgeSighting<'a> {
    pub(crate) src: (&'a str, &'a str),
    pub(crate) dst: (&'a str, &'a str),
    pub(crate) client_id: &'a str,
    pub(crate) server_id: &'a str,
    /// Where it was seen.
    pub(crate) direction: Direction,
    /// The `tls` label: `"true"`, or why not.
    pub(crate) tls: &'a str,
    /// Responses since the proxy started.
    pub(crate) cumulative: f64,
    /// Over the window.
    pub(crate) success_rps: f64,
    pub(crate) failure_rps: f64,
}

impl EdgeBuilder {
    pub(crate) fn add(&mut self, s: EdgeSighting<'_>) {
        if s.cumulative <= 0.0 {
            return;
        }
        let key = (
            s.src.0.to_string(),
            s.src.1.to_string(),
            s.dst.0.to_string(),
            s.dst.1.to_string(),
        );
        let e = self.edges.entry(key).or_default();
        if e.client_id.is_empty() {
            e.client_id = s.client_id.to_string();
        }
        if e.server_id.is_empty() {
            e.server_id = s.server_id.to_string();
        }
        if s.tls == "true" {
            e.tls += s.cumulative;
        } else {
            e.plain += s.cumulative;
            if e.no_tls_reason.is_empty() {
                e.no_tls_reason = if s.tls.is_empty() {
                    "no_identity".into()
                } else {
                    s.tls.to_string()
                };
            }
        }
        let g = match s.direction {
            Direction::Inbound => &mut e.inbound,
            Direction::Outbound => &mut e.outbound,
        };
        g.success_rps += s.success_rps;
        g.failure_rps += s.failure_rps;
    }

    /// The edges with an end in `namespace` (all if `None`), sorted as Linkerd sorts them.
    pub(crate) fn finish(self, namespace: Option<&str>) -> Vec<EdgeRow> {
        let mut rows: Vec<EdgeRow> = self
            .edges
            .into_iter()
            .filter(|((src_ns, _, dst_ns, _), _)| {
                namespace.is_none_or(|ns| ns == src_ns || ns == dst_ns)
            })
            .map(|((src_ns, src, dst_ns, dst), e)| {
                // The server's view when it has one (it sees every client), else the client's.
                let g = if e.inbound.total_rps().is_some() {
                    &e.inbound
                } else {
                    &e.outbound
                };
                let secured = e.plain == 0.0 && e.tls > 0.0;
                EdgeRow {
                    src,
                    src_namespace: src_ns,
                    dst,
                    dst_namespace: dst_ns,
                    client_id: if secured { e.client_id } else { String::new() },
                    server_id: e.server_id,
                    secured,
                    no_tls_reason: if secured {
                        String::new()
                    } else {
                        e.no_tls_reason
                    },
                    rps: g.rps(),
                    success: g.success(),
                }
            })
            .collect();
        rows.sort_by_cached_key(|r| {
            format!("{}{}{}{}", r.src_namespace, r.dst_namespace, r.src, r.dst)
        });
        rows
    }
}

/// `(name, namespace)` of an identity `<name>.<namespace>.serviceaccount.identity.<suffix>`
/// (or any `<name>.<namespace>....` DNS-like name).
pub(crate) fn identity_workload(identity: &str) -> Option<(&str, &str)> {
    let mut parts = identity.split('.');
    let name = parts.next().filter(|s| !s.is_empty())?;
    let ns = parts.next().filter(|s| !s.is_empty())?;
    Some((name, ns))
}
