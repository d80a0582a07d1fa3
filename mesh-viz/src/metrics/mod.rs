//! Golden metrics of the mesh: an embedded store that scrapes every proxy, the `stat`,
//! `edges` and `routes` queries of Linkerd's CLI over it (or over a real Prometheus), their
//! text and JSON renderings, and the HTTP API the CLI and the dashboard read them from.
//!
//! # The model
//!
//! Proxies export Linkerd's metrics (`response_total{direction, classification, tls,
//! client_id | dst_service, dst_namespace}`, `response_latency_ms` with Linkerd's buckets,
//! `tcp_open_connections`, ...), and know nothing of workloads: a proxy does not label its
//! own name. Like Prometheus relabelling adds `namespace` and `deployment` to every scraped
//! sample, the [`Scraper`] tags each proxy's snapshot with the [`Workload`] `mesh run`
//! recorded for it (`<state-dir>/workloads/<namespace>.<name>.json`). The [`Store`] keeps a
//! rolling window of those snapshots (10 minutes by default); counters are cumulative, so
//! every rate is a difference between snapshots, with counter resets (a restarted proxy)
//! handled as Prometheus does.
//!
//! Queries are pure functions of the store's data and the time (the `*_at` methods), so they
//! are tested with exact numbers on synthetic snapshots. They answer with rows
//! ([`StatRow`], [`EdgeRow`], [`RouteRow`]) that serialize to the JSON of the
//! [HTTP API](api) and of `-o json`, and that [`render_stat`], [`render_edges`] and
//! [`render_routes`] lay out as Linkerd's CLI does.
//!
//! Every source of numbers implements [`MetricsSource`]: the [`Store`] itself (inside the
//! control plane), the [`ApiClient`](api::ApiClient) (the CLI, asking the control plane), and
//! [`PrometheusSource`] (`--prometheus URL`, Linkerd's own PromQL against a real Prometheus).
//!
//! # Semantics, and where they differ from Linkerd's
//!
//! - `stat`'s numbers are a workload's **inbound** traffic. A workload that served nothing in
//!   the window but sent requests (a load generator such as `vote-bot`) shows its
//!   **outbound** numbers instead, flagged `"direction": "outbound"` in JSON; Linkerd shows
//!   `-` for it. A workload with no traffic either way shows `-`.
//! - `MESHED` counts a workload as meshed when its proxy answered its last scrape recently and
//!   exports `proxy_ready 1`; in local mode every `mesh run` workload is meshed once its
//!   sidecar is ready. Rows with no meshed workload are hidden (as Linkerd hides unmeshed
//!   ones) unless [`StatQuery::include_unmeshed`].
//! - `--to`/`--from` read the client's outbound metrics, matching `dst_service`/`dst_namespace`
//!   (in local mode a workload's service has the workload's name).
//! - Latency percentiles use the bucket increase over the whole window (Linkerd's PromQL uses
//!   `irate`, the last two samples); `TCP_CONN` counts `peer="src"` connections.
//! - `edges` lists a pair when the server's proxy counted responses to the client's identity
//!   (`client_id`) or the client's proxy counted responses from the service, since the proxy
//!   started; `SECURED` is `√` when every one of them went over mutual TLS.
//! - `routes` groups by a `route` (or `rt_route`) label when proxies set one; until then all
//!   traffic is the `[DEFAULT]` row.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use mesh_viz::metrics::{render_stat, Output, Resource, StatQuery, Store, Workload};
//!
//! let web = Workload {
//!     name: "web".into(),
//!     namespace: "emojivoto".into(),
//!     identity: "web.emojivoto.serviceaccount.identity.mesh.cluster.local".into(),
//!     admin: "127.0.0.1:4191".parse().unwrap(),
//!     tap: Some("127.0.0.1:4190".parse().unwrap()),
//!     inbound: Some("127.0.0.1:4143".parse().unwrap()),
//!     pid: 1,
//! };
//! let store = Store::new();
//! let t0 = tokio::time::Instant::now();
//! let scrape = |ok: u32, failed: u32| format!(
//!     "response_total{{direction=\"inbound\",classification=\"success\"}} {ok}\n\
//!      response_total{{direction=\"inbound\",classification=\"failure\"}} {failed}\n"
//! );
//! store.ingest_at(&web, t0, &scrape(0, 0));
//! store.ingest_at(&web, t0 + Duration::from_secs(10), &scrape(15, 5));
//!
//! let q = StatQuery::new(Resource::deploy("web")).include_unmeshed(true);
//! let rows = store.stat_at(&q, t0 + Duration::from_secs(10)).unwrap();
//! assert_eq!(rows[0].success, Some(0.75));
//! assert_eq!(rows[0].rps, Some(2.0));
//! assert!(render_stat(&rows, Output::Table).contains("75.00%   2.0rps"));
//! ```

pub mod api;
mod embedded;
pub mod openmetrics;
pub mod prometheus;
mod quantile;
mod query;
mod render;
mod rows;
mod scrape;
mod series;
mod source;
mod store;
mod workload;

pub use self::prometheus::PrometheusSource;
pub use self::quantile::histogram_quantile;
pub use self::query::{
    DEFAULT_ROUTE, DEFAULT_WINDOW, EdgesQuery, Resource, ResourceKind, RoutesQuery, StatQuery,
    Target, format_window, parse_window,
};
pub use self::render::{
    NO_EDGES, NO_TRAFFIC, Output, format_latency, format_rps, format_success, render_edges,
    render_routes, render_stat,
};
pub use self::rows::{Direction, EdgeRow, Meshed, RouteRow, StatRow, WorkloadStatus};
pub use self::scrape::{DEFAULT_INTERVAL, DEFAULT_TIMEOUT, ScrapeReport, Scraper};
pub use self::series::{
    DEFAULT_SERIES_STEP, DEFAULT_SERIES_WINDOW, MAX_SERIES_POINTS, SeriesPoint, SeriesQuery,
    TimeSeries,
};
pub use self::source::MetricsSource;
pub use self::store::{Clock, DEFAULT_RETENTION, DEFAULT_STALE_AFTER, Store};
pub use self::workload::{WORKLOADS_DIR, Workload};
pub use crate::QueryError;

#[cfg(test)]
mod tests;
