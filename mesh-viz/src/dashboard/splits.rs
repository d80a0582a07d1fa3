//! Traffic splits: each split of the catalog with its current weights, and each backend's
//! golden metrics (its inbound traffic, from the same `stat` query the CLI asks).

use std::collections::HashMap;

use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::html::{golden_cells, workload_href};
use crate::metrics::StatRow;
use mesh_control::catalog::Snapshot;

/// One traffic split, as `GET /api/splits` answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// The service clients address.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// Where its requests go.
    pub backends: Vec<SplitBackend>,
}

/// One backend of a [`Split`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitBackend {
    /// The backend service.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// Its port, when the split names one.
    pub port: Option<u16>,
    /// Its weight.
    pub weight: u32,
    /// Its share of the requests, 0 to 1 (its weight over the sum of the weights).
    pub share: f64,
    /// Ready proxies out of all workloads serving it (`0/0` when none runs).
    pub meshed: String,
    /// Success over the last minute, 0 to 1.
    pub success: Option<f64>,
    /// Responses per second over the last minute.
    pub rps: Option<f64>,
    /// Median latency, ms.
    pub latency_ms_p50: Option<u64>,
    /// 95th percentile latency, ms.
    pub latency_ms_p95: Option<u64>,
    /// 99th percentile latency, ms.
    pub latency_ms_p99: Option<u64>,
}

/// The splits of `snapshot`, with each backend's numbers from `stats` (`stat deploy` over all
/// namespaces; in local mode a service is served by the workload of the same name).
pub(crate) fn splits(snapshot: &Snapshot, stats: &[StatRow]) -> Vec<Split> {
    let by_name: HashMap<(&str, &str), &StatRow> = stats
        .iter()
        .map(|r| ((r.namespace.as_str(), r.name.as_str()), r))
        .collect();
    snapshot
        .services
        .values()
        .filter(|s| !s.split.is_empty())
        .map(|s| {
            let total: u64 = s.split.iter().map(|b| u64::from(b.weight)).sum();
            let backends = s
                .split
                .iter()
                .map(|b| {
                    let row = by_name.get(&(b.service.namespace.as_str(), b.service.name.as_str()));
                    SplitBackend {
                        service: b.service.name.clone(),
                        namespace: b.service.namespace.clone(),
                        port: b.port,
                        weight: b.weight,
                        share: if total == 0 {
                            0.0
                        } else {
                            f64::from(b.weight) / total as f64
                        },
                        meshed: row.map_or_else(|| "0/0".into(), |r| r.meshed.to_string()),
                        success: row.and_then(|r| r.success),
                        rps: row.and_then(|r| r.rps),
                        latency_ms_p50: row.and_then(|r| r.latency_ms_p50),
                        latency_ms_p95: row.and_then(|r| r.latency_ms_p95),
                        latency_ms_p99: row.and_then(|r| r.latency_ms_p99),
                    }
                })
                .collect();
            Split {
                service: s.name.name.clone(),
                namespace: s.name.namespace.clone(),
                backends,
            }
        })
        .collect()
}

/// What the splits section shows when the catalog has none: how to add one.
const SPLIT_EXAMPLE: &str = "services:
  - name: emoji
    namespace: emojivoto
    split:
      - {service: emoji-v1, weight: 90}
      - {service: emoji-v2, weight: 10}";

/// The splits section of the page.
pub(crate) fn render(splits: &[Split]) -> Markup {
    if splits.is_empty() {
        return html! {
            div.cta {
                h3 { "No traffic splits" }
                p {
                    "Send a share of a service's requests to other services by giving it a "
                    code { "split" } " in the catalog (" code { "mesh control --config mesh.yaml" }
                    "), for instance:"
                }
                pre { code { (SPLIT_EXAMPLE) } }
                p { "Edits apply live." }
            }
        };
    }
    html! {
        @for s in splits {
            section.split data-service=(s.service) data-namespace=(s.namespace) {
                h2 { (s.service) "." (s.namespace) }
                table.metrics {
                    thead {
                        tr {
                            th { "Backend" } th { "Weight" } th { "Share" } th { "Meshed" }
                            th { "Success" } th { "RPS" } th { "P50" } th { "P95" } th { "P99" }
                        }
                    }
                    tbody {
                        @for b in &s.backends {
                            (render_backend(s, b))
                        }
                    }
                }
            }
        }
    }
}

/// A backend's row: its weight and share (with a bar), and its numbers.
fn render_backend(s: &Split, b: &SplitBackend) -> Markup {
    html! {
        tr data-backend=(b.service) {
            td {
                a href=(workload_href(&b.namespace, &b.service)) {
                    (b.service)
                    @if b.namespace != s.namespace { "." (b.namespace) }
                }
            }
            td.num data-metric="weight" data-value=(b.weight) { (b.weight) }
            td.num data-metric="share" data-value=(b.share) {
                svg.bar width="80" height="10" aria-hidden="true" {
                    rect.track width="80" height="10" {}
                    rect width=(format!("{:.1}", b.share * 80.0)) height="10" {}
                }
                " " (format!("{:.1}", b.share * 100.0)) "%"
            }
            td.num { (b.meshed) }
            (golden_cells(
                b.success,
                b.rps,
                [b.latency_ms_p50, b.latency_ms_p95, b.latency_ms_p99],
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Meshed, ResourceKind};
    use mesh_control::catalog::{Service, ServiceRef, SplitBackend as CatalogBackend};

    fn snapshot() -> Snapshot {
        let mut snap = Snapshot::default();
        let mut emoji = Service::new(ServiceRef::new("emoji", "emojivoto"));
        emoji.split = vec![
            CatalogBackend {
                service: ServiceRef::new("emoji-v1", "emojivoto"),
                port: None,
                weight: 90,
            },
            CatalogBackend {
                service: ServiceRef::new("emoji-<v2>", "emojivoto"),
                port: Some(8080),
                weight: 10,
            },
        ];
        snap.services.insert(emoji.name.clone(), emoji);
        let web = Service::new(ServiceRef::new("web", "emojivoto"));
        snap.services.insert(web.name.clone(), web);
        snap
    }

    fn row(name: &str, success: f64) -> StatRow {
        StatRow {
            namespace: "emojivoto".into(),
            kind: ResourceKind::Deployment,
            name: name.into(),
            meshed: Meshed {
                meshed: 1,
                total: 1,
            },
            success: Some(success),
            rps: Some(3.0),
            latency_ms_p50: Some(1),
            latency_ms_p95: Some(2),
            latency_ms_p99: Some(3),
            tcp_open_connections: None,
            tcp_read_bytes_rate: None,
            tcp_write_bytes_rate: None,
            direction: None,
        }
    }

    #[test]
    fn weights_become_shares_with_each_backends_numbers() {
        let splits = splits(&snapshot(), &[row("emoji-v1", 0.5)]);
        assert_eq!(splits.len(), 1, "only services with a split");
        let s = &splits[0];
        assert_eq!(
            (s.service.as_str(), s.namespace.as_str()),
            ("emoji", "emojivoto")
        );
        assert_eq!(s.backends[0].share, 0.9);
        assert_eq!(s.backends[0].success, Some(0.5));
        assert_eq!(s.backends[0].meshed, "1/1");
        assert_eq!(s.backends[1].share, 0.1);
        assert_eq!(s.backends[1].success, None);
        assert_eq!(s.backends[1].meshed, "0/0");
        assert_eq!(s.backends[1].port, Some(8080));

        let html = render(&splits).into_string();
        assert!(html.contains(r#"data-service="emoji""#));
        assert!(html.contains("90.0%") && html.contains("10.0%"));
        assert!(html.contains("50.00%"));
        assert!(html.contains("emoji-&lt;v2&gt;") && !html.contains("<v2>"));
    }

    #[test]
    fn no_splits_explains_how_to_add_one() {
        let html = render(&[]).into_string();
        assert!(html.contains("No traffic splits") && html.contains("split:"));
    }
}
