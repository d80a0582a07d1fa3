//! Per-request cost of each mesh-core layer, and of a full stack, against a bare `service_fn`
//! measured in the same run.
//!
//! Every case sends one GET through `ready` + `call` and drains the response body on a
//! current-thread runtime, so the runtime's own cost is in the baseline too: the interesting
//! number is each case minus `bare`.
//!
//! Run with `cargo bench --bench layers`.

use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use mesh_core::BoxError;
use mesh_core::metrics::{HttpMetrics, Labels};
use mesh_core::rescue::RescueLayer;
use mesh_core::retry::{RetryBudget, RetryLayer};
use mesh_core::tap::{Filter, Tap, TapLayer, TapMeta};
use mesh_core::timeout::TimeoutLayer;
use prometheus_client::registry::Registry;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};

fn bare() -> impl Service<
    http::Request<Empty<Bytes>>,
    Response = http::Response<Full<Bytes>>,
    Error = BoxError,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(|_req: http::Request<Empty<Bytes>>| async {
        Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

/// A bare service generic over the request body, for layers that change it (retry).
fn bare_any<B: Send + 'static>()
-> impl Service<http::Request<B>, Response = http::Response<Full<Bytes>>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_req: http::Request<B>| async {
        Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::get("http://web.emojivoto:8080/api/list")
        .body(Empty::new())
        .expect("request")
}

fn run<S, RB>(rt: &Runtime, svc: &mut S)
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<RB>>,
    S::Error: std::fmt::Debug,
    RB: http_body::Body,
    RB::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let rsp = svc
            .ready()
            .await
            .expect("ready")
            .call(request())
            .await
            .expect("response");
        rsp.into_body().collect().await.expect("body");
    })
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mut registry = Registry::default();
    let http = HttpMetrics::register(&mut registry);
    let labels = Labels::new()
        .with("direction", "inbound")
        .with("authority", "web.emojivoto:8080")
        .with("tls", "true");
    let tap = Tap::new();

    let mut g = c.benchmark_group("layer");
    let mut s = bare();
    g.bench_function("bare", |b| b.iter(|| run(&rt, &mut s)));
    let mut s = http.layer(labels.clone()).layer(bare());
    g.bench_function("metrics", |b| b.iter(|| run(&rt, &mut s)));
    let mut s = TapLayer::new(tap.clone(), TapMeta::inbound()).layer(bare());
    g.bench_function("tap_unwatched", |b| b.iter(|| run(&rt, &mut s)));
    let mut s = TimeoutLayer::new(Duration::from_secs(10)).layer(bare());
    g.bench_function("timeout", |b| b.iter(|| run(&rt, &mut s)));
    let mut s = RetryLayer::new(RetryBudget::default()).layer(bare_any());
    g.bench_function("retry", |b| b.iter(|| run(&rt, &mut s)));
    let mut s = RescueLayer::new().layer(bare());
    g.bench_function("rescue", |b| b.iter(|| run(&rt, &mut s)));

    let stack = |tap: &Tap| {
        RescueLayer::new().layer(
            http.layer(labels.clone()).layer(
                TapLayer::new(tap.clone(), TapMeta::inbound()).layer(
                    TimeoutLayer::new(Duration::from_secs(10))
                        .layer(RetryLayer::new(RetryBudget::default()).layer(bare_any())),
                ),
            ),
        )
    };
    let mut s = stack(&tap);
    g.bench_function("full_stack", |b| b.iter(|| run(&rt, &mut s)));

    // Somebody taps something else: the filter runs, nothing matches.
    let _other = tap.subscribe(Filter::path_prefix("/nothing-matches"), usize::MAX, 16);
    let mut s = TapLayer::new(tap.clone(), TapMeta::inbound()).layer(bare());
    g.bench_function("tap_watched_unmatched", |b| b.iter(|| run(&rt, &mut s)));
    g.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
