//! `/namespaces/{ns}`: the topology graph (who calls whom) and the sortable table of the
//! namespace's workloads.

use std::cmp::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::{Rows, fragment_href, no_such_fragment, respond};
use crate::dashboard::html::{
    Nav, error_banner, golden_cells, live_section, namespace_href, num_cell, page, workload_href,
};
use crate::dashboard::{PageParams, PageQuery, Shared, graph};
use crate::metrics::api::{self, EdgesParams, StatParams};
use crate::metrics::{Direction, EdgeRow, StatRow};

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
        Some("graph") => respond(StatusCode::OK, render_graph(&ns, &rows, &edges)),
        Some("workloads") => respond(StatusCode::OK, render_workloads_table(&ns, &rows, sort)),
        Some(other) => no_such_fragment(other),
        None => {
            let status = if is_empty(&rows, &edges) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            respond(status, render_namespace(&ns, &rows, &edges, sort))
        }
    }
}

/// Whether the namespace has neither workloads nor traffic (as far as the queries could tell).
fn is_empty(rows: &Rows<StatRow>, edges: &Rows<EdgeRow>) -> bool {
    matches!((rows, edges), (Ok(r), Ok(e)) if r.is_empty() && e.is_empty())
}

/// The whole namespace page.
pub(crate) fn render_namespace(
    ns: &str,
    rows: &Rows<StatRow>,
    edges: &Rows<EdgeRow>,
    sort: Sort,
) -> Markup {
    let path = namespace_href(ns);
    let body = html! {
        h1 { "Namespace " (ns) }
        @if is_empty(rows, edges) {
            div.cta {
                h3 { "No workloads in namespace " (ns) }
                p { "Start one behind its sidecar:" }
                pre { code { "mesh run --name NAME -n " (ns) " --port PORT -- ./app" } }
            }
        } @else {
            section {
                h2 { "Topology" }
                (live_section(
                    "graph",
                    &fragment_href(&path, "graph", &[]),
                    render_graph(ns, rows, edges),
                ))
            }
            section {
                h2 { "Workloads" }
                (live_section(
                    "workloads",
                    &fragment_href(&path, "workloads", &sort.pairs()),
                    render_workloads_table(ns, rows, sort),
                ))
            }
        }
    };
    page(
        &format!("Namespace {ns}"),
        Nav::Namespace,
        &[(None, ns.to_string())],
        body,
    )
}

/// The topology section.
pub(crate) fn render_graph(ns: &str, rows: &Rows<StatRow>, edges: &Rows<EdgeRow>) -> Markup {
    let (rows, edges) = match (rows, edges) {
        (Ok(r), Ok(e)) => (r, e),
        (Err(e), _) | (_, Err(e)) => {
            return error_banner(&format!("cannot read the metrics: {e}"));
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
    graph::render(ns, &nodes, edges)
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

/// Each column, its key in `?sort=` and its header.
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

    fn dir(self) -> &'static str {
        if self.descending { "desc" } else { "asc" }
    }

    fn pairs(self) -> [(&'static str, &'static str); 2] {
        [("sort", self.key()), ("dir", self.dir())]
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

    /// The header of `column`'s link: the order a click asks for, and the arrow marking the
    /// current order.
    fn header(self, column: Column) -> (&'static str, &'static str) {
        match (column == self.column, self.descending) {
            (true, true) => ("asc", " ▼"),
            (true, false) => ("desc", " ▲"),
            (false, _) if column == Column::Name => ("asc", ""),
            (false, _) => ("desc", ""),
        }
    }
}

/// The open TCP connections of a row, `-` when unknown.
fn tcp(r: &StatRow) -> String {
    r.tcp_open_connections
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The sortable workloads table of a namespace.
pub(crate) fn render_workloads_table(ns: &str, rows: &Rows<StatRow>, sort: Sort) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return error_banner(&format!("cannot read the metrics: {e}")),
    };
    let path = namespace_href(ns);
    let mut sorted: Vec<&StatRow> = rows.iter().collect();
    sort.apply(&mut sorted);
    html! {
        table.metrics.sortable #workloads-table data-sort=(sort.key()) data-dir=(sort.dir()) {
            thead {
                tr {
                    @for (column, key, title) in COLUMNS {
                        @let (dir, mark) = sort.header(column);
                        th aria-sort=[(column == sort.column).then_some("true")] {
                            a href={ (path) "?sort=" (key) "&dir=" (dir) }
                                data-sort=(key) data-dir=(dir) {
                                (title) (mark)
                            }
                        }
                    }
                }
            }
            tbody {
                @for r in sorted {
                    tr data-name=(r.name) {
                        td {
                            a href=(workload_href(&r.namespace, &r.name)) { (r.name) }
                            @if r.direction == Some(Direction::Outbound) {
                                " "
                                span.tag title="serves nothing; these are the requests it sends" {
                                    "outbound"
                                }
                            }
                        }
                        td.num data-meshed=(r.meshed) { (r.meshed) }
                        (golden_cells(
                            r.success,
                            r.rps,
                            [r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99],
                        ))
                        (num_cell("tcp", r.tcp_open_connections.map(|v| v as f64), &tcp(r)))
                    }
                }
            }
        }
    }
}
