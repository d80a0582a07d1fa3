//! The metrics store end to end: real prometheus-client registries (mesh-core's
//! `HttpMetrics`, what proxies record into) served over HTTP as fake proxy admin servers, the
//! scraper reading the workloads directory, the queries, the JSON API over a real socket, and
//! the Prometheus source against a fake Prometheus HTTP API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_core::metrics::{self as core_metrics, HttpMetrics, Labels};
use mesh_viz::metrics::api::{self, ApiClient};
use mesh_viz::metrics::openmetrics;
use mesh_viz::metrics::{
    Direction, EdgesQuery, MetricsSource, Output, PrometheusSource, Resource, ResourceKind,
    RoutesQuery, Scraper, StatQuery, StatRow, Store, Workload, render_edges, render_stat,
};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt, service_fn};

use crate::support::*;

const NS: &str = "emojivoto";

fn identity(name: &str) -> String {
    format!("{name}.{NS}.serviceaccount.identity.mesh.cluster.local")
}

// === A fake proxy ===

/// What a proxy's admin server exports: a prometheus-client registry with mesh-core's HTTP
/// metrics and `proxy_ready`, served at `/metrics`.
struct FakeProxy {
    name: &'static str,
    http: HttpMetrics,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeProxy {
    async fn start(name: &'static str) -> Self {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let ready = Gauge::<i64>::default();
        ready.set(1);
        registry.register("proxy_ready", "1 when the proxy serves traffic", ready);
        let registry = Arc::new(Mutex::new(registry));
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let text = core_metrics::encode(&registry.lock().expect("registry"));
                    ([("content-type", core_metrics::CONTENT_TYPE)], text)
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            name,
            http,
            addr,
            task,
        }
    }

    fn workload(&self, inbound: bool) -> Workload {
        Workload {
            name: self.name.into(),
            namespace: NS.into(),
            identity: identity(self.name),
            admin: self.addr,
            tap: Some("127.0.0.1:1".parse().expect("addr")),
            inbound: inbound.then(|| "127.0.0.1:2".parse().expect("addr")),
            pid: std::process::id(),
        }
    }

    /// Requests served from `client` over mTLS: the inbound labels the proxy uses.
    async fn serve_from(&self, client: &str, statuses: &[(u16, usize)]) {
        let labels = Labels::new()
            .with("direction", "inbound")
            .with("tls", "true")
            .with("target_addr", "127.0.0.1:8080")
            .with("client_id", identity(client));
        self.drive(labels, statuses).await;
    }

    /// Requests sent to `dst`: the outbound labels the proxy uses.
    async fn call(&self, dst: &str, statuses: &[(u16, usize)]) {
        let labels = Labels::new()
            .with("direction", "outbound")
            .with("authority", format!("{dst}.{NS}.svc.cluster.local:80"))
            .with("dst_service", dst)
            .with("dst_namespace", NS)
            .with("tls", "true");
        self.drive(labels, statuses).await;
    }

    async fn drive(&self, labels: Labels, statuses: &[(u16, usize)]) {
        let svc = self
            .http
            .layer(labels)
            .layer(service_fn(|req: http::Request<()>| async move {
                let status: u16 = req.uri().path()[1..].parse().expect("status");
                let mut rsp = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                *rsp.status_mut() = http::StatusCode::from_u16(status).expect("status");
                Ok::<_, std::convert::Infallible>(rsp)
            }));
        for (status, n) in statuses {
            for _ in 0..*n {
                let req = http::Request::get(format!("/{status}"))
                    .body(())
                    .expect("request");
                let rsp = svc.clone().oneshot(req).await.expect("response");
                // The response is counted at the end of its body.
                rsp.into_body().collect().await.expect("body");
            }
        }
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// web, voting and vote-bot, with their workload files under `state_dir`.
async fn emojivoto(state_dir: &std::path::Path) -> (FakeProxy, FakeProxy, FakeProxy) {
    let web = FakeProxy::start("web").await;
    let voting = FakeProxy::start("voting").await;
    let bot = FakeProxy::start("vote-bot").await;
    web.workload(true).write(state_dir).expect("write");
    voting.workload(true).write(state_dir).expect("write");
    bot.workload(false).write(state_dir).expect("write");
    (web, voting, bot)
}

/// The traffic of one round: vote-bot -> web (12 ok, 4 failing), web -> voting (5 ok).
async fn traffic(web: &FakeProxy, voting: &FakeProxy, bot: &FakeProxy) {
    bot.call("web", &[(200, 12), (500, 4)]).await;
    web.serve_from("vote-bot", &[(200, 12), (500, 4)]).await;
    web.call("voting", &[(200, 5)]).await;
    voting.serve_from("web", &[(200, 5)]).await;
}

fn row<'a>(rows: &'a [StatRow], name: &str) -> &'a StatRow {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#?}"))
}

fn deploys() -> StatQuery {
    StatQuery::new(Resource::all(ResourceKind::Deployment)).namespace(Some(NS.to_string()))
}

// === Tests ===

#[tokio::test]
async fn the_parser_reads_prometheus_client_output_back_exactly() {
    {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let proxy = FakeProxy {
            name: "web",
            http,
            addr: "127.0.0.1:1".parse().expect("addr"),
            task: tokio::spawn(async {}),
        };
        proxy.serve_from("vote-bot", &[(200, 3), (503, 2)]).await;
        proxy.call("voting", &[(200, 1)]).await;
        let text = core_metrics::encode(&registry);
        let parsed = openmetrics::parse(&text);
        assert_eq!(parsed.skipped, 0, "{text}");
        let samples: Vec<_> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(parsed.samples.len(), samples.len());
        // Each sample, written back in the exposition's syntax, is the line it came from.
        for (line, s) in samples.iter().zip(&parsed.samples) {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let head = if labels.is_empty() {
                s.name.clone()
            } else {
                format!("{}{{{}}}", s.name, labels.join(","))
            };
            let (line_head, line_value) = line.rsplit_once(' ').expect("a value");
            assert_eq!(head, line_head);
            assert_eq!(
                s.value,
                line_value.parse::<f64>().expect("a number"),
                "{line}"
            );
        }
        let failures = parsed
            .samples
            .iter()
            .find(|s| s.name == "response_total" && s.label("classification") == Some("failure"))
            .expect("a failure");
        assert_eq!(failures.value, 2.0);
        assert_eq!(failures.label("status_code"), Some("503"));
        assert_eq!(
            failures.label("client_id"),
            Some(identity("vote-bot").as_str())
        );
    }
}

#[tokio::test]
async fn two_scrapes_give_exact_success_rates_rps_and_edges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (web, voting, bot) = emojivoto(dir.path()).await;
    // A manual clock: the 8 s between the scrapes are exactly 8 s.
    let clock = Arc::new(Mutex::new(tokio::time::Instant::now()));
    let c = clock.clone();
    let store = Store::new().with_clock(move || *c.lock().expect("clock"));
    let scraper = Scraper::new(store.clone(), dir.path()).timeout(PATIENCE);

    let report = within("the first scrape", scraper.scrape_once()).await;
    assert_eq!((report.workloads, report.ok, report.failed), (3, 3, 0));
    traffic(&web, &voting, &bot).await;
    *clock.lock().expect("clock") += Duration::from_secs(8);
    let report = within("the second scrape", scraper.scrape_once()).await;
    assert_eq!(report.ok, 3);

    let rows = store.stat_at(&deploys(), store.now()).expect("stat");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for r in &rows {
        assert_eq!(r.meshed.to_string(), "1/1", "{r:?}");
    }
    let w = row(&rows, "web");
    assert_eq!(w.success, Some(0.75));
    assert_eq!(w.rps, Some(2.0)); // 16 responses in 8 s
    assert_eq!(w.direction, Some(Direction::Inbound));
    assert!(w.latency_ms_p99.is_some());
    let v = row(&rows, "voting");
    assert_eq!((v.success, v.rps), (Some(1.0), Some(0.625)));
    // vote-bot serves nothing: its outbound numbers.
    let b = row(&rows, "vote-bot");
    assert_eq!((b.success, b.rps), (Some(0.75), Some(2.0)));
    assert_eq!(b.direction, Some(Direction::Outbound));

    let text = render_stat(&rows, Output::Table);
    let web_line = text
        .lines()
        .find(|l| l.starts_with("web "))
        .expect("a web line");
    let cols: Vec<&str> = web_line.split_whitespace().collect();
    assert_eq!(cols[..4], ["web", "1/1", "75.00%", "2.0rps"], "{text}");

    let edges = store
        .edges_at(&EdgesQuery::new(Some(NS.to_string())), store.now())
        .expect("edges");
    let got: Vec<_> = edges
        .iter()
        .map(|e| (e.src.as_str(), e.dst.as_str(), e.secured))
        .collect();
    assert_eq!(got, [("vote-bot", "web", true), ("web", "voting", true)]);
    assert_eq!(edges[0].client_id, identity("vote-bot"));
    assert_eq!(edges[0].server_id, identity("web"));
    let wide = render_edges(&edges, Output::Wide);
    assert!(
        wide.contains("vote-bot.emojivoto   web.emojivoto      √"),
        "{wide}"
    );

    // A proxy that goes away is not meshed any more (and then hidden).
    drop(web);
    within("a failed scrape", scraper.scrape_once()).await;
    let rows = store
        .stat_at(&deploys().include_unmeshed(true), store.now())
        .expect("stat");
    assert_eq!(row(&rows, "web").meshed.to_string(), "0/1");
    // A workload whose file is removed is no row at all.
    Workload::remove(dir.path(), NS, "voting").expect("remove");
    within("a scrape", scraper.scrape_once()).await;
    let rows = store
        .stat_at(&deploys().include_unmeshed(true), store.now())
        .expect("stat");
    assert!(rows.iter().all(|r| r.name != "voting"), "{rows:#?}");
}

/// Polls `source` until `pred` holds for the stat rows, within [`PATIENCE`].
async fn stat_until(
    source: &dyn MetricsSource,
    q: &StatQuery,
    what: &str,
    pred: impl Fn(&[StatRow]) -> bool,
) -> Vec<StatRow> {
    within(what, async {
        loop {
            if let Ok(rows) = source.stat(q).await
                && pred(&rows)
            {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn the_control_plane_scrapes_and_serves_the_json_api() {
    let h = Harness::start_with(None, |c| c.scrape_interval(Duration::from_millis(100))).await;
    let state = h.cp.state_dir().to_path_buf();
    assert_eq!(api::read_addr(&state).expect("api.addr"), h.viz.api_addr());
    let (web, voting, bot) = emojivoto(&state).await;
    let client = ApiClient::new(h.viz.api_addr());

    // Every proxy scraped once before the traffic, so all of it falls between scrapes.
    within("the first scrapes", async {
        loop {
            let all = client.workloads().await.expect("workloads");
            if all.len() == 3 && all.iter().all(|w| w.scrapes >= 1 && w.meshed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    traffic(&web, &voting, &bot).await;

    let q = deploys();
    let rows = stat_until(&client, &q, "web's success rate", |rows| {
        rows.iter()
            .any(|r| r.name == "web" && r.success == Some(0.75))
            && rows
                .iter()
                .any(|r| r.name == "voting" && r.success == Some(1.0))
    })
    .await;
    let w = row(&rows, "web");
    // 16 responses over the time between two scrapes (100 ms apart, give or take a loaded
    // machine's scheduling): a positive, bounded rate.
    let rps = w.rps.expect("rps");
    assert!(rps > 0.0 && rps <= 16.0 / 0.02, "{rps}");
    assert_eq!(row(&rows, "vote-bot").direction, Some(Direction::Outbound));

    // --to: web's calls to voting only.
    let to = q
        .clone()
        .to(mesh_viz::metrics::Target::new(Resource::deploy("voting")));
    let rows = client.stat(&to).await.expect("stat --to");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((rows[0].name.as_str(), rows[0].success), ("web", Some(1.0)));

    let edges = client
        .edges(&EdgesQuery::new(Some(NS.to_string())))
        .await
        .expect("edges");
    assert_eq!(edges.len(), 2, "{edges:#?}");
    assert!(edges.iter().all(|e| e.secured));

    let routes = client
        .routes(&RoutesQuery::new("web", NS))
        .await
        .expect("routes");
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].route, "[DEFAULT]");
    assert_eq!(routes[0].success, Some(0.75));
    // The clients' view: vote-bot's outbound calls to web.
    assert_eq!(routes[0].effective_success, Some(0.75));

    // Errors are JSON with a status: a bad query, an unknown service.
    let bad = client
        .routes(&RoutesQuery::new("nope", NS))
        .await
        .expect_err("no such service");
    assert!(
        matches!(bad, mesh_viz::metrics::QueryError::NotFound(_)),
        "{bad:?}"
    );
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{}/api/stat?resource=cronjob", h.viz.api_addr());
    let rsp = within("GET", http.get(uri.parse().expect("uri")))
        .await
        .expect("response");
    assert_eq!(rsp.status(), http::StatusCode::BAD_REQUEST);
    let body = within("body", rsp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("cronjob")),
        "{v}"
    );

    // The raw JSON of /api/stat is what `-o json` prints.
    let uri = format!(
        "http://{}/api/stat?resource=deploy/web&namespace={NS}&window=1m",
        h.viz.api_addr()
    );
    let rsp = within("GET", http.get(uri.parse().expect("uri")))
        .await
        .expect("response");
    assert_eq!(rsp.status(), http::StatusCode::OK);
    let body = within("body", rsp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v[0]["name"], "web");
    assert_eq!(v[0]["meshed"], "1/1");
    assert_eq!(v[0]["success"], 0.75);

    // A page on another site cannot read the API through a DNS name rebound to loopback: only
    // an IP address or localhost is answered, as on the dashboard's own pages.
    let req = http::Request::get(uri.as_str())
        .header(http::header::HOST, "rebound.example:80")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let rsp = within("GET", http.request(req)).await.expect("response");
    assert_eq!(rsp.status(), http::StatusCode::FORBIDDEN);
    let req = http::Request::get(uri.as_str())
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let rsp = within("GET", http.request(req)).await.expect("response");
    assert_eq!(rsp.status(), http::StatusCode::OK);

    within("shutdown", h.viz.shutdown()).await;
    assert!(api::read_addr(&state).is_err(), "api.addr is removed");
}

// === A fake Prometheus ===

/// Answers `/api/v1/query` from canned vectors, by exact query; records what was asked.
async fn fake_prometheus(
    answers: HashMap<String, serde_json::Value>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let app = Router::new().route(
        "/api/v1/query",
        get(move |Query(p): Query<HashMap<String, String>>| {
            let q = p.get("query").cloned().unwrap_or_default();
            log.lock().expect("log").push(q.clone());
            let result = answers.get(&q).cloned().unwrap_or(serde_json::json!([]));
            let body = serde_json::json!({
                "status": "success",
                "data": {"resultType": "vector", "result": result},
            });
            async move { ([("content-type", "application/json")], body.to_string()) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, asked, task)
}

fn sample(labels: serde_json::Value, value: f64) -> serde_json::Value {
    serde_json::json!({"metric": labels, "value": [1_700_000_000.0, value.to_string()]})
}

#[tokio::test]
async fn the_prometheus_source_asks_linkerds_promql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (web, voting, bot) = emojivoto(dir.path()).await;
    let _ = (&voting, &web, &bot);
    let inbound = r#"{direction="inbound", namespace="emojivoto"}"#;
    let outbound = r#"{direction="outbound", namespace="emojivoto"}"#;
    let by = "namespace, deployment";
    let mut answers = HashMap::new();
    answers.insert(
        format!("sum(increase(response_total{inbound}[1m])) by ({by}, classification, tls)"),
        serde_json::json!([
            sample(serde_json::json!({"namespace": NS, "deployment": "web", "classification": "success", "tls": "true"}), 90.0),
            sample(serde_json::json!({"namespace": NS, "deployment": "web", "classification": "failure", "tls": "true"}), 30.0),
        ]),
    );
    answers.insert(
        format!(
            "histogram_quantile(0.95, sum(irate(response_latency_ms_bucket{inbound}[1m])) by (le, {by}))"
        ),
        serde_json::json!([sample(serde_json::json!({"namespace": NS, "deployment": "web"}), 12.4)]),
    );
    answers.insert(
        format!(
            r#"sum(tcp_open_connections{{direction="inbound", namespace="emojivoto", peer="src"}}) by ({by})"#
        ),
        serde_json::json!([sample(serde_json::json!({"namespace": NS, "deployment": "web"}), 3.0)]),
    );
    answers.insert(
        format!("sum(increase(response_total{outbound}[1m])) by ({by}, classification, tls)"),
        serde_json::json!([
            sample(serde_json::json!({"namespace": NS, "deployment": "vote-bot", "classification": "success", "tls": "true"}), 48.0),
            sample(serde_json::json!({"namespace": NS, "deployment": "vote-bot", "classification": "failure", "tls": "true"}), 12.0),
        ]),
    );
    answers.insert(
        r#"sum(response_total{client_id!="", direction="inbound"}) by (namespace, deployment, client_id, tls)"#.to_string(),
        serde_json::json!([sample(
            serde_json::json!({"namespace": NS, "deployment": "web", "client_id": identity("vote-bot"), "tls": "true"}),
            120.0
        )]),
    );
    let (addr, asked, task) = fake_prometheus(answers).await;
    let prom = PrometheusSource::new(format!("http://{addr}/"), dir.path()).timeout(PATIENCE);

    let rows = within("stat", prom.stat(&deploys())).await.expect("stat");
    let w = row(&rows, "web");
    assert_eq!((w.success, w.rps), (Some(0.75), Some(2.0)));
    assert_eq!(w.latency_ms_p95, Some(12));
    assert_eq!(w.tcp_open_connections, Some(3));
    let b = row(&rows, "vote-bot");
    assert_eq!((b.success, b.rps), (Some(0.8), Some(1.0)));
    assert_eq!(b.direction, Some(Direction::Outbound));
    assert!(!row(&rows, "voting").has_traffic());
    assert!(
        asked.lock().expect("log").iter().any(|q| q
            == r#"histogram_quantile(0.5, sum(irate(response_latency_ms_bucket{direction="inbound", namespace="emojivoto"}[1m])) by (le, namespace, deployment))"#),
        "{:#?}",
        asked.lock().expect("log")
    );

    let edges = within("edges", prom.edges(&EdgesQuery::new(None)))
        .await
        .expect("edges");
    assert_eq!(edges.len(), 1, "{edges:#?}");
    assert_eq!(
        (
            edges[0].src.as_str(),
            edges[0].dst.as_str(),
            edges[0].secured
        ),
        ("vote-bot", "web", true)
    );
    assert_eq!(edges[0].server_id, identity("web"));

    // The same rows through the API router: one code path for every source.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api_addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(api::serve(listener, api::router(prom), shutdown.clone()));
    let via_api = within(
        "stat via the API",
        ApiClient::new(api_addr).stat(&deploys()),
    )
    .await
    .expect("stat");
    assert_eq!(via_api, rows);
    shutdown.cancel();
    within("the API stops", server).await.expect("stopped");

    // An unreachable Prometheus is a clear error.
    task.abort();
    let _ = task.await;
    let down = PrometheusSource::new(format!("http://{addr}"), dir.path()).timeout(PATIENCE);
    let err = within("stat", down.stat(&deploys()))
        .await
        .expect_err("down");
    assert!(err.to_string().contains("Prometheus at"), "{err}");
}
