//! The pages. Each is a handler that asks the API's query functions for its data and renders
//! its sections; `?fragment=ID` renders one section alone, which is what the script fetches to
//! refresh it. Rendering is pure (`render_*`), so the tests check the HTML from rows.

use std::cmp::Ordering;
use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::health::{Health, Status};
use super::html::{
    Nav, error_banner, esc, golden_cells, live_section, namespace_href, num_cell, page, segment,
    success_class, workload_href,
};
use super::{PageParams, PageQuery, Shared, chart, graph, splits};
use crate::metrics::api::{self, EdgesParams, RoutesParams, StatParams};
use crate::metrics::{
    Direction, EdgeRow, QueryError, RouteRow, SeriesQuery, StatRow, TimeSeries, format_latency,
    format_rps, format_success,
};

type Rows<T> = Result<Vec<T>, QueryError>;

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn no_such_fragment(id: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        format!("<p class=\"error\">no section {} on this page</p>", esc(id)),
    )
}

/// `path?fragment=id` plus `extra` pairs, for a live section's `data-live`.
fn fragment_href(path: &str, id: &str, extra: &[(&str, &str)]) -> String {
    let mut href = format!("{path}?fragment={}", segment(id));
    for (k, v) in extra {
        let _ = write!(href, "&{k}={}", segment(v));
    }
    href
}

// === Overview ===

pub(crate) async fn overview(State(d): State<Shared>, query: PageQuery) -> Response {
    let p = query.0;
    let want = p.fragment.as_deref();
    let namespaces = |d: Shared| async move {
        let params = StatParams {
            resource: Some("ns".into()),
            unmeshed: Some(true),
            ..Default::default()
        };
        api::stat(&*d.source, &params).await
    };
    match want {
        Some("health") => html(StatusCode::OK, render_health(&d.health().await)),
        Some("namespaces") => html(StatusCode::OK, render_namespaces(&namespaces(d).await)),
        Some(other) => no_such_fragment(other),
        None => {
            let health = d.health().await;
            let rows = namespaces(d).await;
            html(StatusCode::OK, render_overview(&health, &rows))
        }
    }
}

/// The whole overview page.
pub(crate) fn render_overview(health: &Health, namespaces: &Rows<StatRow>) -> String {
    let mut body = String::from("<h1>Overview</h1>");
    body.push_str("<section><h2>Namespaces</h2>");
    live_section(
        &mut body,
        "namespaces",
        &fragment_href("/", "namespaces", &[]),
        &render_namespaces(namespaces),
    );
    body.push_str("</section><section><h2>Control plane</h2>");
    live_section(
        &mut body,
        "health",
        &fragment_href("/", "health", &[]),
        &render_health(health),
    );
    body.push_str("</section>");
    page("Overview", Nav::Overview, &[], &body)
}

/// The health section: a line per component and per certificate, as `mesh check` judges them.
pub(crate) fn render_health(h: &Health) -> String {
    let mut out = String::new();
    let summary = match h.status {
        Status::Ok => "The control plane is healthy.",
        Status::Warn => "The control plane works, but something needs attention.",
        Status::Fail => "Something in the control plane is broken.",
    };
    let _ = write!(
        out,
        r#"<p class="summary status {}" data-status="{}">{} {}</p>"#,
        h.status.as_str(),
        h.status.as_str(),
        h.status.mark(),
        summary
    );
    out.push_str(
        "<table class=\"health\"><thead><tr><th>Component</th><th>Status</th><th>Detail</th></tr></thead><tbody>",
    );
    for c in &h.components {
        let _ = write!(
            out,
            r#"<tr data-component="{}" data-status="{}"><td>{}</td><td class="status {}">{} {}</td><td>{}</td></tr>"#,
            esc(&c.name),
            c.status.as_str(),
            esc(&c.name),
            c.status.as_str(),
            c.status.mark(),
            c.status.as_str(),
            esc(&c.detail)
        );
    }
    out.push_str("</tbody></table>");
    if !h.certificates.is_empty() {
        out.push_str(
            "<table class=\"health\"><thead><tr><th>Certificate</th><th>Expires</th><th>Days left</th><th>Status</th></tr></thead><tbody>",
        );
        for c in &h.certificates {
            let _ = write!(
                out,
                r#"<tr data-certificate="{}" data-status="{}"><td>{}</td><td>{}</td><td class="num">{}</td><td class="status {}">{} {}</td></tr>"#,
                esc(&c.name),
                c.status.as_str(),
                esc(&c.name),
                esc(&c.not_after),
                c.days_left,
                c.status.as_str(),
                c.status.mark(),
                if c.status == Status::Warn {
                    "rotate soon"
                } else {
                    c.status.as_str()
                },
            );
        }
        out.push_str("</tbody></table>");
    }
    out
}

const RUN_HINT: &str = "mesh run --name web -n shop --port 8080 -- ./web";

/// The namespaces section: meshed/total and golden metrics per namespace, or how to start.
pub(crate) fn render_namespaces(rows: &Rows<StatRow>) -> String {
    let mut out = String::new();
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            error_banner(&mut out, &format!("cannot read the metrics: {e}"));
            return out;
        }
    };
    if rows.iter().all(|r| r.meshed.meshed == 0) {
        let _ = write!(
            out,
            r#"<div class="cta" id="get-started"><h3>Nothing is meshed yet</h3><p>Start each workload behind its own sidecar; it gets an identity, mutual TLS and golden metrics without changing a line of code:</p><pre><code>{}</code></pre><p>The app calls other services by <code>name.namespace:port</code> through <code>$MESH_OUTBOUND_ADDR</code>. Or see it all at once with <code>mesh demo</code>.</p></div>"#,
            esc(RUN_HINT)
        );
        if rows.is_empty() {
            return out;
        }
    }
    out.push_str(
        "<table class=\"metrics\" id=\"namespaces-table\"><thead><tr><th>Namespace</th><th>Meshed</th><th>Success</th><th>RPS</th><th>P50</th><th>P95</th><th>P99</th></tr></thead><tbody>",
    );
    for r in rows {
        let _ = write!(
            out,
            r#"<tr data-namespace="{}"><td><a href="{}">{}</a></td><td class="num" data-meshed="{}">{}</td>"#,
            esc(&r.name),
            esc(&namespace_href(&r.name)),
            esc(&r.name),
            r.meshed,
            r.meshed
        );
        golden_cells(
            &mut out,
            r.success,
            r.rps,
            [r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99],
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

// === Namespace ===

pub(crate) async fn namespace(
    State(d): State<Shared>,
    Path(ns): Path<String>,
    query: PageQuery,
) -> Response {
    let p = query.0;
    let stat = StatParams {
        resource: Some("deploy".into()),
        namespace: Some(ns.clone()),
        unmeshed: Some(true),
        ..Default::default()
    };
    let rows = api::stat(&*d.source, &stat).await;
    let want = p.fragment.as_deref();
    let edges = match want {
        Some("workloads") => Ok(Vec::new()),
        _ => {
            let params = EdgesParams {
                namespace: Some(ns.clone()),
                window: None,
            };
            api::edges(&*d.source, &params).await
        }
    };
    let sort = Sort::from_params(&p);
    match want {
        Some("graph") => html(StatusCode::OK, render_graph(&ns, &rows, &edges)),
        Some("workloads") => html(StatusCode::OK, render_workloads_table(&ns, &rows, sort)),
        Some(other) => no_such_fragment(other),
        None => {
            let empty = matches!((&rows, &edges), (Ok(r), Ok(e)) if r.is_empty() && e.is_empty());
            let status = if empty {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            html(status, render_namespace(&ns, &rows, &edges, sort))
        }
    }
}

/// The whole namespace page.
pub(crate) fn render_namespace(
    ns: &str,
    rows: &Rows<StatRow>,
    edges: &Rows<EdgeRow>,
    sort: Sort,
) -> String {
    let path = namespace_href(ns);
    let mut body = format!("<h1>Namespace {}</h1>", esc(ns));
    if matches!((rows, edges), (Ok(r), Ok(e)) if r.is_empty() && e.is_empty()) {
        let _ = write!(
            body,
            r#"<div class="cta"><h3>No workloads in namespace {}</h3><p>Start one behind its sidecar:</p><pre><code>mesh run --name NAME -n {} --port PORT -- ./app</code></pre></div>"#,
            esc(ns),
            esc(ns)
        );
        return page(
            &format!("Namespace {ns}"),
            Nav::Namespace,
            &[(String::new(), ns.to_string())],
            &body,
        );
    }
    body.push_str("<section><h2>Topology</h2>");
    live_section(
        &mut body,
        "graph",
        &fragment_href(&path, "graph", &[]),
        &render_graph(ns, rows, edges),
    );
    body.push_str("</section><section><h2>Workloads</h2>");
    live_section(
        &mut body,
        "workloads",
        &fragment_href(&path, "workloads", &sort.pairs()),
        &render_workloads_table(ns, rows, sort),
    );
    body.push_str("</section>");
    page(
        &format!("Namespace {ns}"),
        Nav::Namespace,
        &[(String::new(), ns.to_string())],
        &body,
    )
}

/// The topology section.
pub(crate) fn render_graph(ns: &str, rows: &Rows<StatRow>, edges: &Rows<EdgeRow>) -> String {
    let mut out = String::new();
    let (rows, edges) = match (rows, edges) {
        (Ok(r), Ok(e)) => (r, e),
        (Err(e), _) | (_, Err(e)) => {
            error_banner(&mut out, &format!("cannot read the metrics: {e}"));
            return out;
        }
    };
    let nodes: Vec<graph::Node> = rows
        .iter()
        .map(|r| graph::Node {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            success: r.success,
            rps: r.rps,
            meshed: Some(r.meshed.meshed > 0),
        })
        .collect();
    out.push_str(&graph::render(ns, &nodes, edges));
    out
}

/// A column of the workloads table to sort by, and which way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sort {
    pub(crate) column: Column,
    pub(crate) descending: bool,
}

/// The sortable columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Column {
    Name,
    Meshed,
    Success,
    Rps,
    P50,
    P95,
    P99,
    Tcp,
}

const COLUMNS: [(Column, &str, &str); 8] = [
    (Column::Name, "name", "Name"),
    (Column::Meshed, "meshed", "Meshed"),
    (Column::Success, "success", "Success"),
    (Column::Rps, "rps", "RPS"),
    (Column::P50, "p50", "P50"),
    (Column::P95, "p95", "P95"),
    (Column::P99, "p99", "P99"),
    (Column::Tcp, "tcp", "TCP"),
];

impl Sort {
    pub(crate) fn from_params(p: &PageParams) -> Self {
        let column = p
            .sort
            .as_deref()
            .and_then(|s| COLUMNS.iter().find(|(_, k, _)| *k == s))
            .map_or(Column::Name, |(c, _, _)| *c);
        let descending = match p.dir.as_deref() {
            Some("desc") => true,
            Some("asc") => false,
            _ => column != Column::Name,
        };
        Self { column, descending }
    }

    fn key(self) -> &'static str {
        COLUMNS
            .iter()
            .find(|(c, _, _)| *c == self.column)
            .map_or("name", |(_, k, _)| k)
    }

    fn pairs(self) -> [(&'static str, &'static str); 2] {
        [
            ("sort", self.key()),
            ("dir", if self.descending { "desc" } else { "asc" }),
        ]
    }

    fn value(self, r: &StatRow) -> Option<f64> {
        match self.column {
            Column::Name => None,
            Column::Meshed => Some(f64::from(r.meshed.meshed)),
            Column::Success => r.success,
            Column::Rps => r.rps,
            Column::P50 => r.latency_ms_p50.map(|v| v as f64),
            Column::P95 => r.latency_ms_p95.map(|v| v as f64),
            Column::P99 => r.latency_ms_p99.map(|v| v as f64),
            Column::Tcp => r.tcp_open_connections.map(|v| v as f64),
        }
    }

    /// Sorts rows; rows without a value go last either way, ties by name.
    pub(crate) fn apply(self, rows: &mut [&StatRow]) {
        rows.sort_by(|a, b| {
            let by_name = a.name.cmp(&b.name);
            if self.column == Column::Name {
                return if self.descending {
                    by_name.reverse()
                } else {
                    by_name
                };
            }
            let ord = match (self.value(a), self.value(b)) {
                (Some(x), Some(y)) => {
                    let o = x.total_cmp(&y);
                    if self.descending { o.reverse() } else { o }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            ord.then(by_name)
        });
    }
}

/// The sortable workloads table of a namespace.
pub(crate) fn render_workloads_table(ns: &str, rows: &Rows<StatRow>, sort: Sort) -> String {
    let mut out = String::new();
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            error_banner(&mut out, &format!("cannot read the metrics: {e}"));
            return out;
        }
    };
    let path = namespace_href(ns);
    let _ = write!(
        out,
        r#"<table class="metrics sortable" id="workloads-table" data-sort="{}" data-dir="{}"><thead><tr>"#,
        sort.key(),
        if sort.descending { "desc" } else { "asc" }
    );
    for (column, key, title) in COLUMNS {
        let (dir, mark, current) = if column == sort.column {
            let mark = if sort.descending { " ▼" } else { " ▲" };
            let flip = if sort.descending { "asc" } else { "desc" };
            (flip, mark, " aria-sort=\"true\"")
        } else {
            let dir = if column == Column::Name {
                "asc"
            } else {
                "desc"
            };
            (dir, "", "")
        };
        let _ = write!(
            out,
            r#"<th{current}><a href="{}?sort={key}&amp;dir={dir}" data-sort="{key}" data-dir="{dir}">{title}{mark}</a></th>"#,
            esc(&path)
        );
    }
    out.push_str("</tr></thead><tbody>");
    let mut sorted: Vec<&StatRow> = rows.iter().collect();
    sort.apply(&mut sorted);
    for r in sorted {
        let outbound = if r.direction == Some(Direction::Outbound) {
            r#" <span class="tag" title="serves nothing; these are the requests it sends">outbound</span>"#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<tr data-name="{}"><td><a href="{}">{}</a>{outbound}</td><td class="num" data-meshed="{}">{}</td>"#,
            esc(&r.name),
            esc(&workload_href(&r.namespace, &r.name)),
            esc(&r.name),
            r.meshed,
            r.meshed
        );
        golden_cells(
            &mut out,
            r.success,
            r.rps,
            [r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99],
        );
        num_cell(
            &mut out,
            "tcp",
            r.tcp_open_connections.map(|v| v as f64),
            &r.tcp_open_connections
                .map_or_else(|| "-".to_string(), |v| v.to_string()),
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

// === Workload ===

/// Everything the workload page shows.
#[derive(Debug)]
pub(crate) struct WorkloadData {
    pub(crate) own: Rows<StatRow>,
    pub(crate) sources: Rows<StatRow>,
    pub(crate) destinations: Rows<StatRow>,
    pub(crate) routes: Rows<RouteRow>,
    pub(crate) series: Result<TimeSeries, QueryError>,
}

pub(crate) async fn workload(
    State(d): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    query: PageQuery,
) -> Response {
    let p = query.0;
    let want = p.fragment.as_deref();
    let src = &*d.source;
    let deploy = format!("deploy/{name}");
    let own = api::stat(
        src,
        &StatParams {
            resource: Some(deploy.clone()),
            namespace: Some(ns.clone()),
            unmeshed: Some(true),
            ..Default::default()
        },
    )
    .await;
    let needs = |id: &str| want.is_none_or(|w| w == id);
    let (sources, destinations) = if needs("metrics") {
        let sources = api::stat(
            src,
            &StatParams {
                resource: Some("deploy".into()),
                to: Some(deploy.clone()),
                to_namespace: Some(ns.clone()),
                ..Default::default()
            },
        )
        .await;
        let destinations = api::stat(
            src,
            &StatParams {
                resource: Some("deploy".into()),
                from: Some(deploy.clone()),
                from_namespace: Some(ns.clone()),
                ..Default::default()
            },
        )
        .await;
        (sources, destinations)
    } else {
        (Ok(Vec::new()), Ok(Vec::new()))
    };
    let routes = if needs("routes") {
        let params = RoutesParams {
            service: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        };
        api::routes(src, &params).await
    } else {
        Ok(Vec::new())
    };
    let series = if needs("chart") {
        src.series(&SeriesQuery::new(ns.clone(), name.clone()))
            .await
    } else {
        Err(QueryError::Unavailable(String::new()))
    };
    let data = WorkloadData {
        own,
        sources,
        destinations,
        routes,
        series,
    };
    match want {
        Some("metrics") => html(StatusCode::OK, render_workload_metrics(&ns, &data)),
        Some("chart") => html(StatusCode::OK, render_chart(&data.series)),
        Some("routes") => html(StatusCode::OK, render_routes(&data.routes)),
        Some(other) => no_such_fragment(other),
        None => {
            let missing = matches!(&data.own, Ok(rows) if rows.is_empty());
            let status = if missing {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            html(status, render_workload(&ns, &name, &data, &p))
        }
    }
}

/// The whole workload page.
pub(crate) fn render_workload(ns: &str, name: &str, data: &WorkloadData, p: &PageParams) -> String {
    let crumbs = [
        (namespace_href(ns), ns.to_string()),
        (String::new(), name.to_string()),
    ];
    let title = format!("{name} · {ns}");
    let mut body = format!(
        "<h1>Workload {} <small>in {}</small></h1>",
        esc(name),
        esc(ns)
    );
    if matches!(&data.own, Ok(rows) if rows.is_empty()) {
        let _ = write!(
            body,
            r#"<div class="cta"><h3>No workload {} in namespace {}</h3><p>Is it running? Start it behind its sidecar:</p><pre><code>mesh run --name {} -n {} --port PORT -- ./app</code></pre></div>"#,
            esc(name),
            esc(ns),
            esc(name),
            esc(ns)
        );
        return page(&title, Nav::Namespace, &crumbs, &body);
    }
    let path = workload_href(ns, name);
    live_section(
        &mut body,
        "metrics",
        &fragment_href(&path, "metrics", &[]),
        &render_workload_metrics(ns, data),
    );
    body.push_str("<section class=\"card\"><h2>Latency <small>last 5 minutes</small></h2>");
    live_section(
        &mut body,
        "chart",
        &fragment_href(&path, "chart", &[]),
        &render_chart(&data.series),
    );
    body.push_str("</section><section class=\"card\"><h2>Routes</h2>");
    live_section(
        &mut body,
        "routes",
        &fragment_href(&path, "routes", &[]),
        &render_routes(&data.routes),
    );
    body.push_str("</section>");
    render_top_and_tap(&mut body, ns, name, p);
    page(&title, Nav::Namespace, &crumbs, &body)
}

fn golden_list(out: &mut String, id: &str, r: Option<&StatRow>) {
    let get = |f: fn(&StatRow) -> Option<u64>| r.and_then(f);
    let success = r.and_then(|r| r.success);
    let rps = r.and_then(|r| r.rps);
    let _ = write!(
        out,
        r#"<dl class="golden" id="{}"><div><dt>Success</dt><dd class="{}" data-metric="success" data-value="{}">{}</dd></div><div><dt>RPS</dt><dd data-metric="rps" data-value="{}">{}</dd></div>"#,
        esc(id),
        success_class(success),
        success.map(|v| v.to_string()).unwrap_or_default(),
        format_success(success),
        rps.map(|v| v.to_string()).unwrap_or_default(),
        format_rps(rps),
    );
    for (metric, v) in [
        ("p50", get(|r| r.latency_ms_p50)),
        ("p95", get(|r| r.latency_ms_p95)),
        ("p99", get(|r| r.latency_ms_p99)),
    ] {
        let _ = write!(
            out,
            r#"<div><dt>{}</dt><dd data-metric="{metric}" data-value="{}">{}</dd></div>"#,
            metric.to_uppercase(),
            v.map(|v| v.to_string()).unwrap_or_default(),
            format_latency(v)
        );
    }
    out.push_str("</dl>");
}

fn peers_table(out: &mut String, caption: &str, rows: &Rows<StatRow>, empty: &str) {
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            error_banner(out, &format!("cannot read the metrics: {e}"));
            return;
        }
    };
    let _ = write!(out, "<h3>{}</h3>", esc(caption));
    if rows.is_empty() {
        let _ = write!(out, r#"<p class="empty">{}</p>"#, esc(empty));
        return;
    }
    out.push_str(
        "<table class=\"metrics\"><thead><tr><th>Workload</th><th>Success</th><th>RPS</th><th>P50</th><th>P95</th><th>P99</th></tr></thead><tbody>",
    );
    for r in rows {
        let _ = write!(
            out,
            r#"<tr data-peer="{}" data-peer-namespace="{}"><td><a href="{}">{}</a></td>"#,
            esc(&r.name),
            esc(&r.namespace),
            esc(&workload_href(&r.namespace, &r.name)),
            esc(&r.name),
        );
        golden_cells(
            out,
            r.success,
            r.rps,
            [r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99],
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// The inbound and outbound golden metrics of a workload.
pub(crate) fn render_workload_metrics(_ns: &str, data: &WorkloadData) -> String {
    let mut out = String::new();
    let own = match &data.own {
        Ok(rows) => rows.first(),
        Err(e) => {
            error_banner(&mut out, &format!("cannot read the metrics: {e}"));
            None
        }
    };
    let direction = own.and_then(|r| r.direction);
    let inbound = own.filter(|_| direction != Some(Direction::Outbound));
    let outbound = own.filter(|_| direction == Some(Direction::Outbound));
    if let Some(r) = own {
        let _ = write!(
            out,
            r#"<p class="meshed" data-meshed="{}">Meshed: {} · over the last minute</p>"#,
            r.meshed, r.meshed
        );
    }
    out.push_str(
        "<div class=\"cards\"><section class=\"card\" id=\"inbound-card\"><h2>Inbound</h2>",
    );
    golden_list(&mut out, "inbound", inbound);
    if outbound.is_some() {
        out.push_str(r#"<p class="empty">It served no requests in the last minute.</p>"#);
    }
    peers_table(
        &mut out,
        "From",
        &data.sources,
        "No meshed caller in the last minute.",
    );
    out.push_str("</section><section class=\"card\" id=\"outbound-card\"><h2>Outbound</h2>");
    if outbound.is_some() {
        golden_list(&mut out, "outbound", outbound);
    }
    peers_table(
        &mut out,
        "To",
        &data.destinations,
        "It called nothing in the last minute.",
    );
    out.push_str("</section></div>");
    out
}

/// The latency chart section.
pub(crate) fn render_chart(series: &Result<TimeSeries, QueryError>) -> String {
    match series {
        Ok(s) => chart::render(s),
        Err(e) => {
            let mut out = String::new();
            error_banner(&mut out, &format!("no latency history: {e}"));
            out
        }
    }
}

/// The routes table.
pub(crate) fn render_routes(routes: &Rows<RouteRow>) -> String {
    let mut out = String::new();
    let routes = match routes {
        Ok(r) => r,
        Err(e) => {
            error_banner(&mut out, &format!("cannot read the routes: {e}"));
            return out;
        }
    };
    out.push_str(
        "<table class=\"metrics\" id=\"routes-table\"><thead><tr><th>Route</th><th>Success</th><th>RPS</th><th>P50</th><th>P95</th><th>P99</th><th>Effective success</th><th>Actual success</th></tr></thead><tbody>",
    );
    for r in routes {
        let _ = write!(
            out,
            r#"<tr data-route="{}"><td>{}</td>"#,
            esc(&r.route),
            esc(&r.route)
        );
        golden_cells(
            &mut out,
            r.success,
            r.rps,
            [r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99],
        );
        num_cell(
            &mut out,
            "effective_success",
            r.effective_success,
            &format_success(r.effective_success),
        );
        num_cell(
            &mut out,
            "actual_success",
            r.actual_success,
            &format_success(r.actual_success),
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The `mesh tap` command line equivalent to the filters.
pub(crate) fn tap_command(ns: &str, name: &str, p: &PageParams) -> String {
    let quote = |s: &str| {
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.:".contains(&b))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut cmd = format!("mesh tap deploy/{} -n {}", quote(name), quote(ns));
    for (flag, v) in [
        ("--path", &p.path),
        ("--method", &p.method),
        ("--authority", &p.authority),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            let _ = write!(cmd, " {flag} {}", quote(v));
        }
    }
    cmd
}

/// The live `top` and tap sections: filled by the script from the streams.
fn render_top_and_tap(out: &mut String, ns: &str, name: &str, p: &PageParams) {
    let resource = format!("deploy/{name}");
    let top = format!(
        "/api/top?namespace={}&resource={}",
        segment(ns),
        segment(&resource)
    );
    let _ = write!(
        out,
        r#"<section class="card"><h2>Top paths <small>live</small></h2><div id="top" data-top="{}"><p class="empty">The live top needs JavaScript; or run <code>mesh top deploy/{} -n {}</code>.</p></div></section>"#,
        esc(&top),
        esc(name),
        esc(ns),
    );
    let value = |v: &Option<String>| v.as_deref().unwrap_or_default().to_string();
    let _ = write!(
        out,
        r#"<section class="card" id="tap-section"><h2>Tap <small>live requests</small></h2><form id="tap-form" class="filters" method="get" action="{}" data-namespace="{}" data-resource="{}"><label>Path prefix <input name="path" id="tap-path" value="{}" placeholder="/api/vote"></label><label>Method <select name="method" id="tap-method"><option value="">any</option>"#,
        esc(&workload_href(ns, name)),
        esc(ns),
        esc(&resource),
        esc(&value(&p.path)),
    );
    let method = value(&p.method).to_ascii_uppercase();
    for m in METHODS {
        let selected = if m == method { " selected" } else { "" };
        let _ = write!(out, r#"<option{selected}>{m}</option>"#);
    }
    let _ = write!(
        out,
        r#"</select></label><label>Authority <input name="authority" id="tap-authority" value="{}" placeholder="web.emojivoto:8080"></label><button type="submit" id="tap-start">Start</button><button type="button" id="tap-stop" disabled>Stop</button></form><p class="hint">Shows each request's method, authority, path, status and timing as the workload's proxy sees them; click a row for its details. Never bodies. The same from a terminal: <code id="tap-cli">{}</code></p><p id="tap-status" class="hint" role="status">Live tap needs JavaScript.</p><table class="tap" id="tap-table"><thead><tr><th>Time</th><th>Direction</th><th>Peer</th><th>Method</th><th>Authority</th><th>Path</th><th>Status</th><th>Latency</th><th>gRPC</th></tr></thead><tbody></tbody></table></section>"#,
        esc(&value(&p.authority)),
        esc(&tap_command(ns, name, p)),
    );
}

// === Splits ===

pub(crate) async fn splits(State(d): State<Shared>, query: PageQuery) -> Response {
    let p = query.0;
    let result = d.splits().await;
    let section = match &result {
        Ok(s) => splits::render(s),
        Err(e) => {
            let mut out = String::new();
            error_banner(&mut out, &format!("cannot read the metrics: {e}"));
            out
        }
    };
    match p.fragment.as_deref() {
        Some("splits") => html(StatusCode::OK, section),
        Some(other) => no_such_fragment(other),
        None => {
            let mut body = String::from("<h1>Traffic splits</h1>");
            live_section(
                &mut body,
                "splits",
                &fragment_href("/splits", "splits", &[]),
                &section,
            );
            html(
                StatusCode::OK,
                page("Traffic splits", Nav::Splits, &[], &body),
            )
        }
    }
}
