//! `--prometheus URL`: the same queries answered by a real Prometheus, with Linkerd's PromQL.
//!
//! Prometheus must scrape every proxy's `/metrics` and label the samples with the workload's
//! `namespace` and `deployment`, as Linkerd's Prometheus relabelling does on Kubernetes. In
//! local mode, [`file_sd_targets`] writes those targets from the workloads `mesh run`
//! recorded (point a `file_sd_configs` entry at the file), and [`scrape_config`] prints a
//! whole `prometheus.yml` that does so.
//!
//! (One file over 600 lines on purpose: each of `stat`, `edges` and `routes` is one PromQL
//! translation beside the embedded store's, and keeping the translations side by side is what
//! keeps them answering alike.)
//!
//! The queries are Linkerd's (`viz/metrics-api`), with this mesh's labels:
//!
//! ```text
//! sum(increase(response_total{direction="inbound", namespace="emojivoto"}[1m]))
//!     by (namespace, deployment, classification, tls)
//! histogram_quantile(0.95, sum(irate(response_latency_ms_bucket{...}[1m])) by (le, namespace, deployment))
//! sum(tcp_open_connections{direction="inbound", peer="src", ...}) by (namespace, deployment)
//! ```
//!
//! `--to`/`--from` match `dst_service`/`dst_namespace` on the client's outbound metrics.
//! Rows (and `MESHED`) come from the workloads directory, as Linkerd's come from Kubernetes;
//! every workload recorded there counts as meshed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use super::query::{EdgesQuery, ResourceKind, RoutesQuery, StatQuery, check_window};
use super::rows::{
    Direction, EdgeBuilder, EdgeRow, EdgeSighting, Golden, Meshed, RouteRow, StatRow,
    WorkloadStatus, identity_workload, route_rows,
};
use super::source::MetricsSource;
use super::workload::Workload;
use crate::QueryError;
use mesh_core::BoxError;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct PromSample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl PromSample {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }
}

/// Answers [`MetricsSource`] queries from a Prometheus HTTP API (`http://` only).
#[derive(Clone, Debug)]
pub struct PrometheusSource {
    base: String,
    state_dir: PathBuf,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Label matchers, written as Linkerd writes them (sorted, `, `-separated).
#[derive(Clone, Debug, Default)]
struct Matchers(BTreeMap<&'static str, String>);

impl Matchers {
    fn eq(mut self, k: &'static str, v: Option<&str>) -> Self {
        if let Some(v) = v {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
            self.0.insert(k, format!("{k}=\"{escaped}\""));
        }
        self
    }

    fn not_empty(mut self, k: &'static str) -> Self {
        self.0.insert(k, format!("{k}!=\"\""));
        self
    }

    fn render(&self) -> String {
        let v: Vec<&str> = self.0.values().map(String::as_str).collect();
        format!("{{{}}}", v.join(", "))
    }
}

/// How rows key their numbers: by `namespace[, deployment]` or `dst_namespace[, dst_service]`.
#[derive(Clone, Copy, Debug)]
struct GroupBy {
    ns: &'static str,
    name: Option<&'static str>,
}

impl GroupBy {
    fn render(&self) -> String {
        match self.name {
            Some(n) => format!("{}, {n}", self.ns),
            None => self.ns.to_string(),
        }
    }

    fn key(&self, s: &PromSample) -> (String, String) {
        let ns = s.label(self.ns).to_string();
        let name = match self.name {
            Some(n) => s.label(n).to_string(),
            None => ns.clone(),
        };
        (ns, name)
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<ApiSample>,
}

#[derive(Deserialize)]
struct ApiSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl PrometheusSource {
    /// A source asking the Prometheus at `url` (e.g. `http://127.0.0.1:9090`), with rows from
    /// the workloads recorded under `state_dir`.
    pub fn new(url: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            base: url.into().trim_end_matches('/').to_string(),
            state_dir: state_dir.into(),
            timeout: Duration::from_secs(10),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// How long one query may take. Default is 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs an instant query; the result must be a vector.
    pub async fn query(&self, promql: &str) -> Result<Vec<PromSample>, QueryError> {
        let uri = format!(
            "{}/api/v1/query?query={}",
            self.base,
            utf8_percent_encode(promql, crate::URL_COMPONENT)
        );
        let failed = |e: &dyn std::fmt::Display| {
            QueryError::unavailable(format!("Prometheus at {}: {e}", self.base))
        };
        let unreachable = |source: BoxError| {
            QueryError::unreachable(format!("Prometheus at {}", self.base), source)
        };
        let req = http::Request::get(&uri)
            .body(Empty::new())
            .map_err(|source| QueryError::Url {
                url: uri.clone(),
                source,
            })?;
        let fetch = async {
            let rsp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(e.into()))?;
            let body = Limited::new(rsp.into_body(), 64 * 1024 * 1024)
                .collect()
                .await
                .map_err(unreachable)?
                .to_bytes();
            let parsed: ApiResponse = serde_json::from_slice(&body).map_err(|e| {
                QueryError::unreachable(
                    format!(
                        "Prometheus at {}: not a Prometheus API answer ({})",
                        self.base,
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ),
                    e,
                )
            })?;
            if parsed.status != "success" {
                return Err(failed(&format!(
                    "query {promql:?} failed: {}",
                    parsed.error.unwrap_or_default()
                )));
            }
            let data = parsed
                .data
                .ok_or_else(|| failed(&"an answer without data"))?;
            if data.result_type != "vector" {
                return Err(failed(&format!(
                    "expected a vector, got a {}",
                    data.result_type
                )));
            }
            Ok(data
                .result
                .into_iter()
                .map(|s| PromSample {
                    labels: s.metric,
                    value: super::openmetrics::parse_value(&s.value.1).unwrap_or(f64::NAN),
                })
                .collect())
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(failed(&format!("no answer within {:?}", self.timeout))),
        }
    }

    fn workloads_now(&self) -> Result<Vec<Workload>, QueryError> {
        Workload::load_all(&self.state_dir).map_err(|e| {
            QueryError::unreachable(
                format!(
                    "cannot list the workloads in {}",
                    Workload::dir(&self.state_dir).display()
                ),
                e,
            )
        })
    }

    /// Linkerd's golden-metric queries for `labels`, grouped by `by`, into one [`Golden`] per
    /// row key. `tcp` adds the connection and byte queries (with `peer="src"` when `src`).
    async fn golden(
        &self,
        labels: &Matchers,
        by: GroupBy,
        window: Duration,
        tcp: Option<bool>,
    ) -> Result<BTreeMap<(String, String), Golden>, QueryError> {
        let w = super::query::format_window(window);
        let secs = window.as_secs_f64();
        let l = labels.render();
        let g = by.render();
        let mut queries = vec![
            format!("sum(increase(response_total{l}[{w}])) by ({g}, classification, tls)"),
            quantile_query("0.5", &l, &w, &g),
            quantile_query("0.95", &l, &w, &g),
            quantile_query("0.99", &l, &w, &g),
        ];
        if let Some(src) = tcp {
            let t = if src {
                labels.clone().eq("peer", Some("src")).render()
            } else {
                l.clone()
            };
            queries.push(format!("sum(tcp_open_connections{t}) by ({g})"));
            queries.push(format!(
                "sum(increase(tcp_read_bytes_total{t}[{w}])) by ({g})"
            ));
            queries.push(format!(
                "sum(increase(tcp_write_bytes_total{t}[{w}])) by ({g})"
            ));
        }
        let results = futures_util::future::join_all(queries.iter().map(|q| self.query(q))).await;
        let mut out: BTreeMap<(String, String), Golden> = BTreeMap::new();
        for (i, result) in results.into_iter().enumerate() {
            for s in result? {
                let v = if s.value.is_finite() {
                    s.value
                } else {
                    continue;
                };
                let e = out.entry(by.key(&s)).or_default();
                match i {
                    0 if s.label("classification") == "failure" => e.failure_rps += v / secs,
                    0 if s.label("classification") == "success" => e.success_rps += v / secs,
                    1 => e.p50 = Some(v),
                    2 => e.p95 = Some(v),
                    3 => e.p99 = Some(v),
                    4 => *e.tcp_open.get_or_insert(0.0) += v,
                    5 => e.read_bps += v / secs,
                    6 => e.write_bps += v / secs,
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    async fn stat_rows(&self, q: &StatQuery) -> Result<Vec<StatRow>, QueryError> {
        q.validate()?;
        let kind = q.resource.kind;
        let mut rows: BTreeMap<(String, String), StatRow> = BTreeMap::new();
        for w in self.workloads_now()? {
            if let Some(key) = q.row_of(&w.namespace, &w.name) {
                let row = rows
                    .entry(key.clone())
                    .or_insert_with(|| StatRow::new(kind, &key.0, &key.1, Meshed::default()));
                row.meshed.meshed += 1;
                row.meshed.total += 1;
            }
        }
        let ns_filter = q.namespace.as_deref();
        let (row_ns, row_name) = match kind {
            ResourceKind::Deployment => (ns_filter, q.resource.name.as_deref()),
            ResourceKind::Namespace => (q.resource.name.as_deref().or(ns_filter), None),
        };
        let src_by = GroupBy {
            ns: "namespace",
            name: (kind == ResourceKind::Deployment).then_some("deployment"),
        };
        if let Some(to) = &q.to {
            let labels = Matchers::default()
                .eq("direction", Some("outbound"))
                .eq("dst_namespace", to.ns(ns_filter))
                .eq("dst_service", to.workload())
                .eq("namespace", row_ns)
                .eq("deployment", row_name);
            let numbers = self.golden(&labels, src_by, q.window, Some(false)).await?;
            fill(&mut rows, &numbers, Direction::Outbound);
        } else if let Some(from) = &q.from {
            let labels = Matchers::default()
                .eq("direction", Some("outbound"))
                .eq("namespace", from.ns(ns_filter))
                .eq("deployment", from.workload())
                .eq("dst_namespace", row_ns)
                .eq("dst_service", row_name);
            let by = GroupBy {
                ns: "dst_namespace",
                name: (kind == ResourceKind::Deployment).then_some("dst_service"),
            };
            let numbers = self.golden(&labels, by, q.window, Some(false)).await?;
            fill(&mut rows, &numbers, Direction::Outbound);
        } else {
            let labels = |dir| {
                Matchers::default()
                    .eq("direction", Some(dir))
                    .eq("namespace", row_ns)
                    .eq("deployment", row_name)
            };
            let inbound = self
                .golden(&labels("inbound"), src_by, q.window, Some(true))
                .await?;
            fill(&mut rows, &inbound, Direction::Inbound);
            if rows.values().any(|r| !r.has_traffic()) {
                let outbound = self
                    .golden(&labels("outbound"), src_by, q.window, Some(true))
                    .await?;
                fill(&mut rows, &outbound, Direction::Outbound);
            }
        }
        Ok(rows.into_values().filter(|r| q.keeps(r)).collect())
    }

    async fn edge_rows(&self, q: &EdgesQuery) -> Result<Vec<EdgeRow>, QueryError> {
        check_window(q.window)?;
        let workloads = self.workloads_now()?;
        let by_identity: HashMap<&str, (&str, &str)> = workloads
            .iter()
            .map(|w| (w.identity.as_str(), w.key()))
            .collect();
        let by_name: HashMap<(&str, &str), &str> = workloads
            .iter()
            .map(|w| (w.key(), w.identity.as_str()))
            .collect();
        let w = super::query::format_window(q.window);
        let secs = q.window.as_secs_f64();
        let inbound = Matchers::default()
            .eq("direction", Some("inbound"))
            .not_empty("client_id")
            .render();
        let outbound = Matchers::default()
            .eq("direction", Some("outbound"))
            .not_empty("dst_service")
            .render();
        let in_by = "namespace, deployment, client_id, tls";
        let out_by = "namespace, deployment, dst_namespace, dst_service, tls, no_tls_reason";
        let queries = [
            format!("sum(response_total{inbound}) by ({in_by})"),
            format!("sum(increase(response_total{inbound}[{w}])) by ({in_by}, classification)"),
            format!("sum(response_total{outbound}) by ({out_by})"),
            format!("sum(increase(response_total{outbound}[{w}])) by ({out_by}, classification)"),
        ];
        let mut results =
            futures_util::future::join_all(queries.iter().map(|q| self.query(q))).await;
        let out_rates = results.pop().unwrap_or(Ok(Vec::new()))?;
        let out_totals = results.pop().unwrap_or(Ok(Vec::new()))?;
        let in_rates = results.pop().unwrap_or(Ok(Vec::new()))?;
        let in_totals = results.pop().unwrap_or(Ok(Vec::new()))?;

        // Rates by the cumulative query's key (its labels without classification).
        let rates = |samples: &[PromSample]| {
            let mut m: HashMap<BTreeMap<String, String>, (f64, f64)> = HashMap::new();
            for s in samples {
                let mut key = s.labels.clone();
                let class = key.remove("classification").unwrap_or_default();
                let e = m.entry(key).or_default();
                let v = if s.value.is_finite() {
                    s.value / secs
                } else {
                    0.0
                };
                if class == "failure" {
                    e.1 += v
                } else {
                    e.0 += v
                }
            }
            m
        };
        let (in_rates, out_rates) = (rates(&in_rates), rates(&out_rates));
        let mut edges = EdgeBuilder::default();
        for s in &in_totals {
            let client_id = s.label("client_id");
            let Some(src) = by_identity
                .get(client_id)
                .copied()
                .or_else(|| identity_workload(client_id).map(|(n, ns)| (ns, n)))
            else {
                continue;
            };
            let dst = (s.label("namespace"), s.label("deployment"));
            let (ok, failed) = in_rates.get(&s.labels).copied().unwrap_or_default();
            edges.add(EdgeSighting {
                src,
                dst,
                client_id,
                server_id: by_name.get(&dst).copied().unwrap_or(""),
                direction: Direction::Inbound,
                tls: s.label("tls"),
                cumulative: s.value,
                success_rps: ok,
                failure_rps: failed,
            });
        }
        for s in &out_totals {
            let src = (s.label("namespace"), s.label("deployment"));
            let dst = (s.label("dst_namespace"), s.label("dst_service"));
            let (ok, failed) = out_rates.get(&s.labels).copied().unwrap_or_default();
            let tls = s.label("tls");
            let reason = s.label("no_tls_reason");
            edges.add(EdgeSighting {
                src,
                dst,
                client_id: by_name.get(&src).copied().unwrap_or(""),
                server_id: by_name.get(&dst).copied().unwrap_or(""),
                direction: Direction::Outbound,
                tls: if tls != "true" && !reason.is_empty() {
                    reason
                } else {
                    tls
                },
                cumulative: s.value,
                success_rps: ok,
                failure_rps: failed,
            });
        }
        Ok(edges.finish(q.namespace.as_deref()))
    }

    async fn route_rows(&self, q: &RoutesQuery) -> Result<Vec<RouteRow>, QueryError> {
        check_window(q.window)?;
        if !self
            .workloads_now()?
            .iter()
            .any(|w| w.key() == (q.namespace.as_str(), q.service.as_str()))
        {
            return Err(QueryError::NotFound(format!(
                "no workload {} in namespace {}",
                q.service, q.namespace
            )));
        }
        let w = super::query::format_window(q.window);
        let secs = q.window.as_secs_f64();
        let (own_labels, client_labels, service, namespace) = match &q.to {
            None => (
                Matchers::default()
                    .eq("direction", Some("inbound"))
                    .eq("namespace", Some(&q.namespace))
                    .eq("deployment", Some(&q.service)),
                Matchers::default()
                    .eq("direction", Some("outbound"))
                    .eq("dst_namespace", Some(&q.namespace))
                    .eq("dst_service", Some(&q.service)),
                q.service.clone(),
                q.namespace.clone(),
            ),
            Some(to) => {
                let svc = to.workload().ok_or_else(|| {
                    QueryError::invalid("--to takes a service or workload (svc/NAME)")
                })?;
                let ns = to.ns(Some(&q.namespace)).unwrap_or(&q.namespace);
                let l = Matchers::default()
                    .eq("direction", Some("outbound"))
                    .eq("namespace", Some(&q.namespace))
                    .eq("deployment", Some(&q.service))
                    .eq("dst_namespace", Some(ns))
                    .eq("dst_service", Some(svc));
                (l.clone(), l, svc.to_string(), ns.to_string())
            }
        };
        let (ol, cl) = (own_labels.render(), client_labels.render());
        let by = "route, rt_route";
        let queries = [
            format!("sum(increase(response_total{ol}[{w}])) by ({by}, classification)"),
            quantile_query("0.5", &ol, &w, by),
            quantile_query("0.95", &ol, &w, by),
            quantile_query("0.99", &ol, &w, by),
            format!("sum(increase(response_total{cl}[{w}])) by ({by}, classification)"),
            format!("sum(increase(actual_response_total{cl}[{w}])) by ({by}, classification)"),
        ];
        let results = futures_util::future::join_all(queries.iter().map(|q| self.query(q))).await;
        let mut maps: [BTreeMap<String, Golden>; 3] = Default::default();
        for (i, result) in results.into_iter().enumerate() {
            for s in result? {
                if !s.value.is_finite() {
                    continue;
                }
                let route = [s.label("route"), s.label("rt_route")]
                    .into_iter()
                    .find(|r| !r.is_empty())
                    .unwrap_or(super::DEFAULT_ROUTE)
                    .to_string();
                let slot = match i {
                    0..=3 => 0,
                    4 => 1,
                    _ => 2,
                };
                let g = maps[slot].entry(route).or_default();
                let failed = s.label("classification") == "failure";
                match i {
                    1 => g.p50 = Some(s.value),
                    2 => g.p95 = Some(s.value),
                    3 => g.p99 = Some(s.value),
                    _ if failed => g.failure_rps += s.value / secs,
                    _ => g.success_rps += s.value / secs,
                }
            }
        }
        let [own, effective, actual] = maps;
        Ok(route_rows(&own, &effective, &actual, &service, &namespace))
    }
}

fn quantile_query(q: &str, labels: &str, window: &str, by: &str) -> String {
    format!(
        "histogram_quantile({q}, sum(irate(response_latency_ms_bucket{labels}[{window}])) by (le, {by}))"
    )
}

fn fill(
    rows: &mut BTreeMap<(String, String), StatRow>,
    numbers: &BTreeMap<(String, String), Golden>,
    direction: Direction,
) {
    for (key, row) in rows.iter_mut() {
        if !row.has_traffic()
            && let Some(g) = numbers.get(key)
        {
            row.fill(g, direction);
        }
    }
}

impl MetricsSource for PrometheusSource {
    fn stat<'a>(&'a self, q: &'a StatQuery) -> BoxFuture<'a, Result<Vec<StatRow>, QueryError>> {
        Box::pin(self.stat_rows(q))
    }

    fn edges<'a>(&'a self, q: &'a EdgesQuery) -> BoxFuture<'a, Result<Vec<EdgeRow>, QueryError>> {
        Box::pin(self.edge_rows(q))
    }

    fn routes<'a>(
        &'a self,
        q: &'a RoutesQuery,
    ) -> BoxFuture<'a, Result<Vec<RouteRow>, QueryError>> {
        Box::pin(self.route_rows(q))
    }

    fn workloads(&self) -> BoxFuture<'_, Result<Vec<WorkloadStatus>, QueryError>> {
        Box::pin(async move {
            Ok(self
                .workloads_now()?
                .into_iter()
                .map(|workload| WorkloadStatus {
                    workload,
                    meshed: true,
                    scrapes: 0,
                    scrape_failures: 0,
                    last_scrape_ms_ago: None,
                    last_error: None,
                })
                .collect())
        })
    }
}

/// Prometheus `file_sd_configs` targets for the workloads recorded under `state_dir`: one
/// group per proxy, labelled `namespace`, `deployment` and `pod` (the workload's name), as
/// Linkerd's relabelling labels proxies on Kubernetes.
pub fn file_sd_targets(state_dir: &Path) -> std::io::Result<serde_json::Value> {
    let groups: Vec<serde_json::Value> = Workload::load_all(state_dir)?
        .into_iter()
        .map(|w| {
            serde_json::json!({
                "targets": [w.admin.to_string()],
                "labels": {
                    "namespace": w.namespace,
                    "deployment": w.name,
                    "pod": w.name,
                },
            })
        })
        .collect();
    Ok(serde_json::Value::Array(groups))
}

/// A `prometheus.yml` scraping the targets of `file_sd` (written by [`file_sd_targets`])
/// every `interval`.
pub fn scrape_config(file_sd: &Path, interval: Duration) -> String {
    let i = super::query::format_window(interval);
    format!(
        "global:\n  scrape_interval: {i}\n  evaluation_interval: {i}\nscrape_configs:\n  - job_name: mesh-proxy\n    metrics_path: /metrics\n    file_sd_configs:\n      - files: [{:?}]\n        refresh_interval: {i}\n",
        file_sd.display().to_string()
    )
}
