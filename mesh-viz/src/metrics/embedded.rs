//! `stat`, `edges` and `routes` over the embedded store: pure functions of the store's data
//! and the time.
//!
//! They follow Linkerd's PromQL, evaluated by hand:
//! - success and RPS: `sum(increase(response_total{direction="inbound"}[w])) by (…,
//!   classification)`, success / (success + failure), responses / window;
//! - latency: `histogram_quantile(q, sum(rate(response_latency_ms_bucket{…}[w])) by (le, …))`
//!   (Linkerd uses `irate`, the last two points; the whole window is steadier and, with the
//!   store's exact snapshots, as cheap);
//! - TCP_CONN: `sum(tcp_open_connections{direction="inbound", peer="src"})` (the connections
//!   clients hold to the proxy; the proxy also counts per-target connections without `peer`,
//!   which would count some twice).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::quantile::histogram_quantile;
use super::query::{DEFAULT_ROUTE, EdgesQuery, ResourceKind, RoutesQuery, StatQuery, Target};
use super::rows::{
    Direction, EdgeBuilder, EdgeRow, EdgeSighting, Golden, Meshed, RouteRow, StatRow,
    WorkloadStatus, identity_workload, route_rows,
};
use super::series::{SeriesPoint, SeriesQuery, TimeSeries};
use super::store::{Family, Series, StoreData, WindowView, WorkloadData};
use crate::QueryError;

/// Which series of a workload a number is made of.
#[derive(Clone, Copy, Debug, Default)]
struct Selector<'a> {
    direction: Option<Direction>,
    dst_namespace: Option<&'a str>,
    dst_service: Option<&'a str>,
}

impl<'a> Selector<'a> {
    fn inbound() -> Self {
        Self {
            direction: Some(Direction::Inbound),
            ..Self::default()
        }
    }

    fn outbound() -> Self {
        Self {
            direction: Some(Direction::Outbound),
            ..Self::default()
        }
    }

    fn to(mut self, namespace: Option<&'a str>, service: Option<&'a str>) -> Self {
        self.dst_namespace = namespace;
        self.dst_service = service;
        self
    }

    fn matches(&self, s: &Series) -> bool {
        let dir = match self.direction {
            Some(Direction::Inbound) => Some("inbound"),
            Some(Direction::Outbound) => Some("outbound"),
            None => None,
        };
        dir.is_none_or(|d| s.label("direction") == Some(d))
            && self
                .dst_namespace
                .is_none_or(|ns| s.label("dst_namespace") == Some(ns))
            && self
                .dst_service
                .is_none_or(|svc| s.label("dst_service") == Some(svc))
    }
}

/// Sums of rates over the series of one or more workloads.
#[derive(Clone, Debug, Default)]
struct Totals {
    success: f64,
    failure: f64,
    actual_success: f64,
    actual_failure: f64,
    /// Cumulative bucket rates by bound (the bits of the bound, so equal bounds merge).
    buckets: BTreeMap<u64, f64>,
    tcp_src: Option<f64>,
    tcp_other: Option<f64>,
    read_src: f64,
    read_other: f64,
    write_src: f64,
    write_other: f64,
}

impl Totals {
    fn add_series(&mut self, view: &WindowView<'_>, id: usize, s: &Series) {
        let is_src = s.label("peer") == Some("src");
        match s.family {
            Family::Responses | Family::ActualResponses => {
                let r = view.rate(id);
                let failed = s.label("classification") == Some("failure");
                match (s.family == Family::Responses, failed) {
                    (true, false) => self.success += r,
                    (true, true) => self.failure += r,
                    (false, false) => self.actual_success += r,
                    (false, true) => self.actual_failure += r,
                }
            }
            Family::Latency => {
                if let Some(le) = s.le {
                    *self.buckets.entry(le.to_bits()).or_default() += view.rate(id);
                }
            }
            Family::TcpOpen => {
                if let Some(v) = view.latest(id) {
                    let slot = if is_src {
                        &mut self.tcp_src
                    } else {
                        &mut self.tcp_other
                    };
                    *slot.get_or_insert(0.0) += v;
                }
            }
            Family::TcpRead => {
                if is_src {
                    self.read_src += view.rate(id)
                } else {
                    self.read_other += view.rate(id)
                }
            }
            Family::TcpWrite => {
                if is_src {
                    self.write_src += view.rate(id)
                } else {
                    self.write_other += view.rate(id)
                }
            }
            Family::Ready => {}
        }
    }

    fn golden(&self) -> Golden {
        let buckets: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .map(|(le, v)| (f64::from_bits(*le), *v))
            .collect();
        let q = |q| histogram_quantile(q, &buckets);
        // Prefer the connections clients hold to the proxy (`peer="src"`) when the proxy
        // reports them: the per-target ones without `peer` count some of them again.
        let src = self.tcp_src.is_some();
        Golden {
            success_rps: self.success,
            failure_rps: self.failure,
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            tcp_open: if src { self.tcp_src } else { self.tcp_other },
            read_bps: if src { self.read_src } else { self.read_other },
            write_bps: if src {
                self.write_src
            } else {
                self.write_other
            },
        }
    }

    fn actual(&self) -> Golden {
        Golden {
            success_rps: self.actual_success,
            failure_rps: self.actual_failure,
            ..Golden::default()
        }
    }
}

/// Adds the series of `w` that `sel` picks (and `route` keeps, if given) into `totals`.
fn accumulate(
    w: &WorkloadData,
    now: Instant,
    window: Duration,
    sel: Selector<'_>,
    totals: &mut Totals,
) {
    let Some(view) = w.window(now, window) else {
        return;
    };
    for (id, s) in w.series.iter().enumerate() {
        if s.family != Family::Ready && sel.matches(s) {
            totals.add_series(&view, id, s);
        }
    }
}

/// As [`accumulate`], one [`Totals`] per route (the `route` or `rt_route` label).
fn accumulate_routes(
    w: &WorkloadData,
    now: Instant,
    window: Duration,
    sel: Selector<'_>,
    routes: &mut BTreeMap<String, Totals>,
) {
    let Some(view) = w.window(now, window) else {
        return;
    };
    for (id, s) in w.series.iter().enumerate() {
        if matches!(
            s.family,
            Family::Responses | Family::ActualResponses | Family::Latency
        ) && sel.matches(s)
        {
            let route = s
                .label("route")
                .or_else(|| s.label("rt_route"))
                .filter(|r| !r.is_empty())
                .unwrap_or(DEFAULT_ROUTE);
            routes
                .entry(route.to_string())
                .or_default()
                .add_series(&view, id, s);
        }
    }
}

/// The rows of `stat`.
pub(crate) fn stat(
    data: &StoreData,
    q: &StatQuery,
    now: Instant,
    stale_after: Duration,
) -> Result<Vec<StatRow>, QueryError> {
    q.validate()?;
    let kind = q.resource.kind;
    let ns_filter = q.namespace.as_deref();

    // The rows, and the workloads each stands for.
    let mut groups: BTreeMap<(String, String), Vec<&WorkloadData>> = BTreeMap::new();
    for w in data.present() {
        let (ns, name) = w.workload.key();
        if let Some(key) = q.row_of(ns, name) {
            groups.entry(key).or_default().push(w);
        }
    }

    // The sources of a `--from` query: any workload with data, running or not.
    let sources: Vec<&WorkloadData> = match &q.from {
        Some(from) => data
            .all()
            .filter(|w| target_has(from, ns_filter, w))
            .collect(),
        None => Vec::new(),
    };

    let mut rows = Vec::new();
    for ((ns, name), members) in groups {
        let meshed = Meshed {
            meshed: members
                .iter()
                .filter(|w| w.is_ready(now, stale_after))
                .count() as u32,
            total: members.len() as u32,
        };
        let mut row = StatRow::new(kind, &ns, &name, meshed);
        let mut totals = Totals::default();
        if let Some(to) = &q.to {
            let sel = Selector::outbound().to(to.ns(ns_filter), to.workload());
            for w in &members {
                accumulate(w, now, q.window, sel, &mut totals);
            }
            row.fill(&totals.golden(), Direction::Outbound);
        } else if q.from.is_some() {
            let dst = match kind {
                ResourceKind::Deployment => Some(name.as_str()),
                ResourceKind::Namespace => None,
            };
            let sel = Selector::outbound().to(Some(&ns), dst);
            for w in &sources {
                accumulate(w, now, q.window, sel, &mut totals);
            }
            row.fill(&totals.golden(), Direction::Outbound);
        } else {
            for w in &members {
                accumulate(w, now, q.window, Selector::inbound(), &mut totals);
            }
            if !row.fill(&totals.golden(), Direction::Inbound) {
                // Served nothing: show what it sent (a load generator's view), if anything.
                let mut out = Totals::default();
                for w in &members {
                    accumulate(w, now, q.window, Selector::outbound(), &mut out);
                }
                row.fill(&out.golden(), Direction::Outbound);
            }
        }
        if q.keeps(&row) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Whether `w` is (in) the target.
fn target_has(t: &Target, query_ns: Option<&str>, w: &WorkloadData) -> bool {
    let (ns, name) = w.workload.key();
    t.ns(query_ns).is_none_or(|tns| tns == ns) && t.workload().is_none_or(|tn| tn == name)
}

/// The rows of `edges`.
pub(crate) fn edges(
    data: &StoreData,
    q: &EdgesQuery,
    now: Instant,
) -> Result<Vec<EdgeRow>, QueryError> {
    super::query::check_window(q.window)?;
    // Workloads by identity, to name the client behind a `client_id`.
    let by_identity: HashMap<&str, (&str, &str)> = data
        .all()
        .map(|w| (w.workload.identity.as_str(), w.workload.key()))
        .collect();
    let by_name: HashMap<(&str, &str), &str> = data
        .all()
        .map(|w| (w.workload.key(), w.workload.identity.as_str()))
        .collect();

    let mut edges = EdgeBuilder::default();
    for w in data.present() {
        let Some(last) = w.window(now, Duration::MAX) else {
            continue;
        };
        let view = w.window(now, q.window);
        let here = w.workload.key();
        for (id, s) in w.series.iter().enumerate() {
            if s.family != Family::Responses {
                continue;
            }
            let cumulative = last.latest(id).unwrap_or(0.0);
            let rate = view.as_ref().map_or(0.0, |v| v.rate(id));
            let failed = s.label("classification") == Some("failure");
            let (success_rps, failure_rps) = if failed { (0.0, rate) } else { (rate, 0.0) };
            let tls = s.label("tls").unwrap_or("");
            match s.label("direction") {
                // The server's side: the client proved `client_id`.
                Some("inbound") => {
                    let Some(client_id) = s.label("client_id").filter(|c| !c.is_empty()) else {
                        continue;
                    };
                    let src = by_identity
                        .get(client_id)
                        .copied()
                        .or_else(|| identity_workload(client_id).map(|(n, ns)| (ns, n)));
                    let Some(src) = src else { continue };
                    edges.add(EdgeSighting {
                        src,
                        dst: here,
                        client_id,
                        server_id: &w.workload.identity,
                        direction: Direction::Inbound,
                        tls,
                        cumulative,
                        success_rps,
                        failure_rps,
                    });
                }
                // The client's side: it called `dst_service` in `dst_namespace`.
                Some("outbound") => {
                    let (Some(dst_ns), Some(dst)) =
                        (s.label("dst_namespace"), s.label("dst_service"))
                    else {
                        continue;
                    };
                    let server_id = by_name.get(&(dst_ns, dst)).copied().unwrap_or("");
                    edges.add(EdgeSighting {
                        src: here,
                        dst: (dst_ns, dst),
                        client_id: &w.workload.identity,
                        server_id,
                        direction: Direction::Outbound,
                        tls: s
                            .label("no_tls_reason")
                            .filter(|_| tls != "true")
                            .unwrap_or(tls),
                        cumulative,
                        success_rps,
                        failure_rps,
                    });
                }
                _ => {}
            }
        }
    }
    Ok(edges.finish(q.namespace.as_deref()))
}

/// The rows of `routes`.
pub(crate) fn routes(
    data: &StoreData,
    q: &RoutesQuery,
    now: Instant,
) -> Result<Vec<RouteRow>, QueryError> {
    super::query::check_window(q.window)?;
    let members: Vec<&WorkloadData> = data
        .present()
        .into_iter()
        .filter(|w| w.workload.key() == (q.namespace.as_str(), q.service.as_str()))
        .collect();
    if members.is_empty() {
        return Err(QueryError::NotFound(format!(
            "no workload {} in namespace {} (see `mesh stat deploy -n {}`)",
            q.service, q.namespace, q.namespace
        )));
    }

    // The routes' own numbers, and the clients' view of them (effective and actual).
    let mut own: BTreeMap<String, Totals> = BTreeMap::new();
    let mut clients: BTreeMap<String, Totals> = BTreeMap::new();
    let (service, namespace) = match &q.to {
        None => {
            for w in &members {
                accumulate_routes(w, now, q.window, Selector::inbound(), &mut own);
            }
            let sel = Selector::outbound().to(Some(&q.namespace), Some(&q.service));
            for w in data.all() {
                accumulate_routes(w, now, q.window, sel, &mut clients);
            }
            (q.service.clone(), q.namespace.clone())
        }
        Some(to) => {
            let Some(svc) = to.workload() else {
                return Err(QueryError::invalid(
                    "--to takes a service or workload (svc/NAME, deploy/NAME)",
                ));
            };
            let ns = to.ns(Some(&q.namespace)).unwrap_or(&q.namespace);
            let sel = Selector::outbound().to(Some(ns), Some(svc));
            for w in &members {
                accumulate_routes(w, now, q.window, sel, &mut own);
            }
            clients = own.clone();
            (svc.to_string(), ns.to_string())
        }
    };
    let golden = |m: &BTreeMap<String, Totals>| -> BTreeMap<String, Golden> {
        m.iter().map(|(k, t)| (k.clone(), t.golden())).collect()
    };
    let actual: BTreeMap<String, Golden> = clients
        .iter()
        .map(|(k, t)| (k.clone(), t.actual()))
        .collect();
    Ok(route_rows(
        &golden(&own),
        &golden(&clients),
        &actual,
        &service,
        &namespace,
    ))
}

/// What `GET /api/workloads` answers.
pub(crate) fn workloads(
    data: &StoreData,
    now: Instant,
    stale_after: Duration,
) -> Vec<WorkloadStatus> {
    data.present()
        .into_iter()
        .map(|w| WorkloadStatus {
            workload: w.workload.clone(),
            meshed: w.is_ready(now, stale_after),
            scrapes: w.scrapes,
            scrape_failures: w.failures,
            last_scrape_ms_ago: w.last_scrape.as_ref().map(|l| {
                u64::try_from(now.saturating_duration_since(l.at).as_millis()).unwrap_or(u64::MAX)
            }),
            last_error: w.last_scrape.as_ref().and_then(|l| l.error.clone()),
        })
        .collect()
}

// === impl Store ===

impl super::Store {
    /// `stat` at a given time.
    pub fn stat_at(&self, q: &StatQuery, now: Instant) -> Result<Vec<StatRow>, QueryError> {
        let stale = self.stale_after_duration();
        self.read(|d| stat(d, q, now, stale))
    }

    /// `edges` at a given time.
    pub fn edges_at(&self, q: &EdgesQuery, now: Instant) -> Result<Vec<EdgeRow>, QueryError> {
        self.read(|d| edges(d, q, now))
    }

    /// `routes` at a given time.
    pub fn routes_at(&self, q: &RoutesQuery, now: Instant) -> Result<Vec<RouteRow>, QueryError> {
        self.read(|d| routes(d, q, now))
    }

    /// The workloads the store knows are running, at a given time.
    pub fn workloads_at(&self, now: Instant) -> Vec<WorkloadStatus> {
        let stale = self.stale_after_duration();
        self.read(|d| workloads(d, now, stale))
    }
}

// === Time series (the dashboard's latency chart) ===

/// The points of a [`SeriesQuery`]: for each step, `stat`'s numbers over that step alone.
pub(crate) fn series(
    data: &StoreData,
    q: &SeriesQuery,
    now: Instant,
) -> Result<TimeSeries, QueryError> {
    let n = q.points()?;
    let key = (q.namespace.as_str(), q.name.as_str());
    let Some(w) = data.all().find(|w| w.workload.key() == key) else {
        return Err(QueryError::NotFound(format!(
            "no workload {} in namespace {} (see `mesh stat deploy -n {}`)",
            q.name, q.namespace, q.namespace
        )));
    };
    let direction = q.direction.unwrap_or_else(|| {
        let mut inbound = Totals::default();
        accumulate(w, now, q.window, Selector::inbound(), &mut inbound);
        let mut outbound = Totals::default();
        accumulate(w, now, q.window, Selector::outbound(), &mut outbound);
        if inbound.golden().total_rps().is_none() && outbound.golden().total_rps().is_some() {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    });
    let sel = match direction {
        Direction::Inbound => Selector::inbound(),
        Direction::Outbound => Selector::outbound(),
    };
    let mut points = Vec::with_capacity(n as usize);
    for i in (0..n).rev() {
        let ago = q.step * i as u32;
        let mut p = SeriesPoint {
            ago_secs: ago.as_secs_f64(),
            success: None,
            rps: None,
            latency_ms_p50: None,
            latency_ms_p95: None,
            latency_ms_p99: None,
        };
        if let Some(end) = now.checked_sub(ago) {
            let mut totals = Totals::default();
            accumulate(w, end, q.step, sel, &mut totals);
            let mut row = StatRow::new(ResourceKind::Deployment, "", "", Meshed::default());
            if row.fill(&totals.golden(), direction) {
                p.success = row.success;
                p.rps = row.rps;
                p.latency_ms_p50 = row.latency_ms_p50;
                p.latency_ms_p95 = row.latency_ms_p95;
                p.latency_ms_p99 = row.latency_ms_p99;
            }
        }
        points.push(p);
    }
    Ok(TimeSeries {
        namespace: q.namespace.clone(),
        name: q.name.clone(),
        direction,
        step_secs: q.step.as_secs_f64(),
        points,
    })
}

impl super::Store {
    /// A [`SeriesQuery`] at a given time.
    pub fn series_at(&self, q: &SeriesQuery, now: Instant) -> Result<TimeSeries, QueryError> {
        self.read(|d| series(d, q, now))
    }
}
