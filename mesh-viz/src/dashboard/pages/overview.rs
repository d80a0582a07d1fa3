//! `/`: the control plane's health and every namespace with its golden metrics, or how to mesh
//! a first workload when none is.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::{Rows, fragment_href, no_such_fragment, respond};
use crate::dashboard::health::{Health, Status};
use crate::dashboard::html::{Nav, error_banner, golden_cells, live_section, namespace_href, page};
use crate::dashboard::{PageQuery, Shared};
use crate::metrics::StatRow;
use crate::metrics::api::{self, StatParams};

/// What the empty overview suggests running.
const RUN_HINT: &str = "mesh run --name web -n shop --port 8080 -- ./web";

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
        Some("health") => respond(StatusCode::OK, render_health(&d.health().await)),
        Some("namespaces") => respond(StatusCode::OK, render_namespaces(&namespaces(d).await)),
        Some(other) => no_such_fragment(other),
        None => {
            let health = d.health().await;
            let rows = namespaces(d).await;
            respond(StatusCode::OK, render_overview(&health, &rows))
        }
    }
}

/// The whole overview page.
pub(crate) fn render_overview(health: &Health, namespaces: &Rows<StatRow>) -> Markup {
    let body = html! {
        h1 { "Overview" }
        section {
            h2 { "Namespaces" }
            (live_section(
                "namespaces",
                &fragment_href("/", "namespaces", &[]),
                render_namespaces(namespaces),
            ))
        }
        section {
            h2 { "Control plane" }
            (live_section("health", &fragment_href("/", "health", &[]), render_health(health)))
        }
    };
    page("Overview", Nav::Overview, &[], body)
}

/// The health section: a line per component and per certificate, as `mesh check` judges them.
pub(crate) fn render_health(h: &Health) -> Markup {
    let summary = match h.status {
        Status::Ok => "The control plane is healthy.",
        Status::Warn => "The control plane works, but something needs attention.",
        Status::Fail => "Something in the control plane is broken.",
    };
    html! {
        p.summary.status.(h.status.as_str()) data-status=(h.status.as_str()) {
            (h.status.mark()) " " (summary)
        }
        table.health {
            thead { tr { th { "Component" } th { "Status" } th { "Detail" } } }
            tbody {
                @for c in &h.components {
                    tr data-component=(c.name) data-status=(c.status.as_str()) {
                        td { (c.name) }
                        td.status.(c.status.as_str()) { (c.status.mark()) " " (c.status.as_str()) }
                        td { (c.detail) }
                    }
                }
            }
        }
        @if !h.certificates.is_empty() {
            table.health {
                thead {
                    tr { th { "Certificate" } th { "Expires" } th { "Days left" } th { "Status" } }
                }
                tbody {
                    @for c in &h.certificates {
                        tr data-certificate=(c.name) data-status=(c.status.as_str()) {
                            td { (c.name) }
                            td { (c.not_after) }
                            td.num { (c.days_left) }
                            td.status.(c.status.as_str()) {
                                (c.status.mark()) " "
                                @if c.status == Status::Warn {
                                    "rotate soon"
                                } @else {
                                    (c.status.as_str())
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The namespaces section: meshed/total and golden metrics per namespace, or how to start.
pub(crate) fn render_namespaces(rows: &Rows<StatRow>) -> Markup {
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return error_banner(&format!("cannot read the metrics: {e}")),
    };
    html! {
        @if rows.iter().all(|r| r.meshed.meshed == 0) {
            div.cta #get-started {
                h3 { "Nothing is meshed yet" }
                p {
                    "Start each workload behind its own sidecar; it gets an identity, mutual TLS \
                     and golden metrics without changing a line of code:"
                }
                pre { code { (RUN_HINT) } }
                p {
                    "The app calls other services by " code { "name.namespace:port" }
                    " through " code { "$MESH_OUTBOUND_ADDR" } ". Or see it all at once with "
                    code { "mesh demo" } "."
                }
            }
        }
        @if !rows.is_empty() {
            table.metrics #namespaces-table {
                thead {
                    tr {
                        th { "Namespace" } th { "Meshed" } th { "Success" } th { "RPS" }
                        th { "P50" } th { "P95" } th { "P99" }
                    }
                }
                tbody {
                    @for r in rows {
                        tr data-namespace=(r.name) {
                            td { a href=(namespace_href(&r.name)) { (r.name) } }
                            td.num data-meshed=(r.meshed) { (r.meshed) }
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
