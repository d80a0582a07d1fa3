//! Embedding the mesh's layers in your own axum service: golden metrics, tap, timeouts and
//! retries in a few lines, and `/metrics` for Prometheus. The template for embedding.
//!
//! ```text
//! cargo run --example embed_layers -- [--listen 127.0.0.1:8080]
//! curl localhost:8080/hello; curl localhost:8080/slow; curl localhost:8080/via-retries
//! curl localhost:8080/metrics
//! ```
//!
//! Inbound, every route gets `Rescue → metrics → tap → timeout`: Linkerd's `request_total`,
//! `response_total` and `response_latency_ms` with a bounded `route` label, a live tap printed to
//! stdout, and a 1 s timeout that answers 504 with an `l5d-proxy-error` header. Outbound,
//! `/via-retries` calls the flaky `/flaky` route through `metrics (effective) → retry with a
//! budget → metrics (actual) → per-try timeout → hyper client`, so `/metrics` shows both the
//! outcome the caller saw and every attempt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mesh_core::BoxError;
use mesh_core::metrics::{self, HttpMetrics, Labels};
use mesh_core::rescue::RescueLayer;
use mesh_core::retry::{ReplayBody, RetryBudget, RetryLayer, RetryMetrics};
use mesh_core::tap::{Filter, Tap, TapEventKind, TapLayer, TapMeta};
use mesh_core::timeout::TimeoutLayer;
use prometheus_client::registry::Registry;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

/// What the routes share.
#[derive(Clone)]
struct App {
    registry: Arc<Registry>,
    flaky_calls: Arc<AtomicUsize>,
    upstream: Upstream,
}

/// The outbound client stack: effective metrics, retries, actual metrics, per-try timeout.
type Upstream = BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<Bytes>, BoxError>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs IP:PORT")?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            other => {
                return Err(format!(
                    "unexpected argument {other:?}; usage: embed_layers [--listen IP:PORT]"
                )
                .into());
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;

    // Register the metric families once; layers get per-target handles from them.
    let mut registry = Registry::default();
    let inbound = HttpMetrics::register(&mut registry);
    let outbound = HttpMetrics::register(registry.sub_registry_with_prefix("outbound"));
    let actual = HttpMetrics::register(registry.sub_registry_with_prefix("outbound_actual"));
    let retries = RetryMetrics::register(registry.sub_registry_with_prefix("outbound"));
    let tap = Tap::new();

    // The outbound client stack, calling this very server's /flaky route.
    let target = Labels::new()
        .with("direction", "outbound")
        .with("authority", addr.to_string());
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let upstream = ServiceBuilder::new()
        .layer(outbound.layer(target.clone()))
        .layer(RetryLayer::new(RetryBudget::default()).counters(retries.counters(&target)))
        .layer(actual.layer(target))
        .layer(TimeoutLayer::new(Duration::from_millis(500)).per_attempt())
        .service(client)
        .and_then(collect_body);
    let upstream = BoxCloneSyncService::new(upstream);

    // Print every request a tap sees, the way `mesh tap` does.
    let mut watch = tap.subscribe(Filter::all([]), usize::MAX, 1024);
    tokio::spawn(async move {
        while let Some(ev) = watch.next().await {
            let r = ev.request();
            match ev.kind() {
                TapEventKind::RequestInit => println!(
                    "tap req id={} :method={} :path={}",
                    ev.id(),
                    r.method(),
                    r.path()
                ),
                TapEventKind::ResponseInit(h) => {
                    println!("tap rsp id={} :status={}", ev.id(), h.status.as_u16())
                }
                TapEventKind::ResponseEnd(e) => println!(
                    "tap end id={} response-length={}B",
                    ev.id(),
                    e.response_bytes
                ),
            }
        }
    });

    // Inbound: each route gets its own label set (a bounded `route` label, never raw paths).
    let golden = |route: &str, handler: MethodRouter<App>| {
        let labels = Labels::new()
            .with("direction", "inbound")
            .with("route", route);
        handler.layer(
            ServiceBuilder::new()
                .layer(RescueLayer::new())
                .layer(inbound.layer(labels))
                .layer(TapLayer::new(tap.clone(), TapMeta::inbound()))
                .layer(TimeoutLayer::new(Duration::from_secs(1))),
        )
    };
    let app = App {
        registry: Arc::new(registry),
        flaky_calls: Arc::new(AtomicUsize::new(0)),
        upstream,
    };
    let router = Router::new()
        .route("/hello", golden("/hello", get(|| async { "hello\n" })))
        .route("/slow", golden("/slow", get(slow)))
        .route("/flaky", golden("/flaky", get(flaky)))
        .route("/via-retries", golden("/via-retries", get(via_retries)))
        .route("/metrics", get(serve_metrics))
        .with_state(app.clone());
    let router = router.layer(axum::Extension(addr));

    println!("embed_layers listening on http://{addr}");
    println!(
        "  try: curl {addr}/hello; curl {addr}/slow; curl {addr}/via-retries; curl {addr}/metrics"
    );
    axum::serve(listener, router).await?;
    Ok(())
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late\n"
}

/// Fails every other call.
async fn flaky(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.flaky_calls.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "unlucky\n")
    } else {
        (StatusCode::OK, "lucky\n")
    }
}

/// Calls /flaky through the retrying client stack.
async fn via_retries(
    State(app): State<App>,
    axum::Extension(addr): axum::Extension<SocketAddr>,
) -> (StatusCode, String) {
    let req = http::Request::get(format!("http://{addr}/flaky"))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    match app.upstream.clone().oneshot(req).await {
        Ok(rsp) => (
            rsp.status(),
            format!("upstream said: {}", String::from_utf8_lossy(rsp.body())),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream failed: {e}\n")),
    }
}

/// Reads a whole response body (the example's handler wants text).
async fn collect_body<B>(rsp: http::Response<B>) -> Result<http::Response<Bytes>, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = rsp.into_parts();
    let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
    Ok(http::Response::from_parts(parts, bytes))
}

async fn serve_metrics(State(app): State<App>) -> impl axum::response::IntoResponse {
    (
        [(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&app.registry),
    )
}
