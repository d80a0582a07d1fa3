//! `/namespaces/{ns}/workloads/{name}`: a workload's inbound and outbound golden metrics with
//! its callers and callees, the latency chart of the last minutes, its routes, and the live
//! `top` and tap sections ([`super::tap`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::{Rows, fragment_href, no_such_fragment, respond, tap};
use crate::dashboard::html::{
    Crumb, Nav, error_banner, golden_cells, live_section, namespace_href, num_cell, page, raw,
    success_class, workload_href,
};
use crate::dashboard::{PageParams, PageQuery, Shared, chart};
use crate::metrics::api::{self, RoutesParams, StatParams};
use crate::metrics::{
    Direction, QueryError, RouteRow, SeriesQuery, StatRow, TimeSeries, format_latency, format_rps,
    format_success,
};

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
        Some("metrics") => respond(StatusCode::OK, render_workload_metrics(&data)),
        Some("chart") => respond(StatusCode::OK, render_chart(&data.series)),
        Some("routes") => respond(StatusCode::OK, render_routes(&data.routes)),
        Some(other) => no_such_fragment(other),
        None => {
            let missing = matches!(&data.own, Ok(rows) if rows.is_empty());
            let status = if missing {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            respond(status, render_workload(&ns, &name, &data, &p))
        }
    }
}

/// The whole workload page.
pub(crate) fn render_workload(ns: &str, name: &str, data: &WorkloadData, p: &PageParams) -> Markup {
    let crumbs: [Crumb; 2] = [
        (Some(namespace_href(ns)), ns.to_string()),
        (None, name.to_string()),
    ];
    let path = workload_href(ns, name);
    let body = html! {
        h1 { "Workload " (name) " " small { "in " (ns) } }
        @if matches!(&data.own, Ok(rows) if rows.is_empty()) {
            div.cta {
                h3 { "No workload " (name) " in namespace " (ns) }
                p { "Is it running? Start it behind its sidecar:" }
                pre { code { "mesh run --name " (name) " -n " (ns) " --port PORT -- ./app" } }
            }
        } @else {
            (live_section(
                "metrics",
                &fragment_href(&path, "metrics", &[]),
                render_workload_metrics(data),
            ))
            section.card {
                h2 { "Latency " small { "last 5 minutes" } }
                (live_section(
                    "chart",
                    &fragment_href(&path, "chart", &[]),
                    render_chart(&data.series),
                ))
            }
            section.card {
                h2 { "Routes" }
                (live_section(
                    "routes",
                    &fragment_href(&path, "routes", &[]),
                    render_routes(&data.routes),
                ))
            }
            (tap::render_top_and_tap(ns, name, p))
        }
    };
    page(&format!("{name} · {ns}"), Nav::Namespace, &crumbs, body)
}

/// A workload's own golden metrics, as a list of terms.
fn golden_list(id: &str, r: Option<&StatRow>) -> Markup {
    let success = r.and_then(|r| r.success);
    let rps = r.and_then(|r| r.rps);
    let latency = [
        ("P50", "p50", r.and_then(|r| r.latency_ms_p50)),
        ("P95", "p95", r.and_then(|r| r.latency_ms_p95)),
        ("P99", "p99", r.and_then(|r| r.latency_ms_p99)),
    ];
    html! {
        dl.golden id=(id) {
            div {
                dt { "Success" }
                dd class=(success_class(success)) data-metric="success" data-value=(raw(success)) {
                    (format_success(success))
                }
            }
            div { dt { "RPS" } dd data-metric="rps" data-value=(raw(rps)) { (format_rps(rps)) } }
            @for (title, metric, v) in latency {
                div {
                    dt { (title) }
                    dd data-metric=(metric) data-value=(raw(v)) { (format_latency(v)) }
                }
            }
        }
    }
}

/// The callers or callees of a workload, with their golden metrics.
fn peers_table(caption: &str, rows: &Rows<StatRow>, empty: &str) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return error_banner(&format!("cannot read the metrics: {e}")),
    };
    html! {
        h3 { (caption) }
        @if rows.is_empty() {
            p.empty { (empty) }
        } @else {
            table.metrics {
                thead {
                    tr {
                        th { "Workload" } th { "Success" } th { "RPS" } th { "P50" } th { "P95" }
                        th { "P99" }
                    }
                }
                tbody {
                    @for r in rows {
                        tr data-peer=(r.name) data-peer-namespace=(r.namespace) {
                            td { a href=(workload_href(&r.namespace, &r.name)) { (r.name) } }
                            (golden_cells(
                                r.success,
                                r.rps,
                                [r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99],
                            ))
                        }
                    }
                }
            }
        }
    }
}

/// The inbound and outbound golden metrics of a workload.
pub(crate) fn render_workload_metrics(data: &WorkloadData) -> Markup {
    let (own, error) = match &data.own {
        Ok(rows) => (rows.first(), None),
        Err(e) => (None, Some(format!("cannot read the metrics: {e}"))),
    };
    let direction = own.and_then(|r| r.direction);
    let inbound = own.filter(|_| direction != Some(Direction::Outbound));
    let outbound = own.filter(|_| direction == Some(Direction::Outbound));
    html! {
        @if let Some(error) = error {
            (error_banner(&error))
        }
        @if let Some(r) = own {
            p.meshed data-meshed=(r.meshed) { "Meshed: " (r.meshed) " · over the last minute" }
        }
        div.cards {
            section.card #inbound-card {
                h2 { "Inbound" }
                (golden_list("inbound", inbound))
                @if outbound.is_some() {
                    p.empty { "It served no requests in the last minute." }
                }
                (peers_table("From", &data.sources, "No meshed caller in the last minute."))
            }
            section.card #outbound-card {
                h2 { "Outbound" }
                @if outbound.is_some() {
                    (golden_list("outbound", outbound))
                }
                (peers_table("To", &data.destinations, "It called nothing in the last minute."))
            }
        }
    }
}

/// The latency chart section.
pub(crate) fn render_chart(series: &Result<TimeSeries, QueryError>) -> Markup {
    match series {
        Ok(s) => chart::render(s),
        Err(e) => error_banner(&format!("no latency history: {e}")),
    }
}

/// The routes table.
pub(crate) fn render_routes(routes: &Rows<RouteRow>) -> Markup {
    let routes = match routes {
        Ok(r) => r,
        Err(e) => return error_banner(&format!("cannot read the routes: {e}")),
    };
    html! {
        table.metrics #routes-table {
            thead {
                tr {
                    th { "Route" } th { "Success" } th { "RPS" } th { "P50" } th { "P95" }
                    th { "P99" } th { "Effective success" } th { "Actual success" }
                }
            }
            tbody {
                @for r in routes {
                    tr data-route=(r.route) {
                        td { (r.route) }
                        (golden_cells(
                            r.success,
                            r.rps,
                            [r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99],
                        ))
                        (num_cell(
                            "effective_success",
                            r.effective_success,
                            &format_success(r.effective_success),
                        ))
                        (num_cell(
                            "actual_success",
                            r.actual_success,
                            &format_success(r.actual_success),
                        ))
                    }
                }
            }
        }
    }
}
