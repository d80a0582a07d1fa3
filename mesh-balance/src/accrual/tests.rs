//! Failure accrual driven through a bare `Pool` with in-process endpoints and paused time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

use crate::{Backoff, Builder, Endpoint, EndpointStatus, FailureAccrual, TargetStats, discover};

/// In-process endpoints that answer 200, or 500 while told to fail, counting their requests.
#[derive(Clone, Default)]
struct Fleet {
    fail: Arc<HashMap<SocketAddr, AtomicBool>>,
    hits: Arc<HashMap<SocketAddr, AtomicUsize>>,
}

fn addr(i: u8) -> SocketAddr {
    ([10, 0, 0, i], 80).into()
}

impl Fleet {
    fn new(n: u8) -> Self {
        Self {
            fail: Arc::new((1..=n).map(|i| (addr(i), AtomicBool::new(false))).collect()),
            hits: Arc::new((1..=n).map(|i| (addr(i), AtomicUsize::new(0))).collect()),
        }
    }

    fn endpoints(&self) -> discover::Fixed {
        let mut addrs: Vec<_> = self.fail.keys().copied().collect();
        addrs.sort();
        discover::fixed(addrs.into_iter().map(Endpoint::new))
    }

    fn set_failing(&self, a: SocketAddr, failing: bool) {
        self.fail[&a].store(failing, Ordering::SeqCst);
    }

    fn hits(&self, a: SocketAddr) -> usize {
        self.hits[&a].load(Ordering::SeqCst)
    }

    fn new_endpoint(&self) -> impl Fn(Endpoint) -> FleetEndpoint + Clone + Send + 'static {
        let fleet = self.clone();
        move |ep: Endpoint| FleetEndpoint {
            fleet: fleet.clone(),
            addr: ep.addr(),
        }
    }
}

#[derive(Clone)]
struct FleetEndpoint {
    fleet: Fleet,
    addr: SocketAddr,
}

impl Service<Request<()>> for FleetEndpoint {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        self.fleet.hits[&self.addr].fetch_add(1, Ordering::SeqCst);
        let mut rsp = Response::new(Full::new(Bytes::from(self.addr.to_string())));
        if self.fleet.fail[&self.addr].load(Ordering::SeqCst) {
            *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
        std::future::ready(Ok(rsp))
    }
}

fn builder(max_failures: u32) -> Builder {
    Builder::new("accrual.test:80").failure_accrual(
        FailureAccrual::consecutive(max_failures).with_backoff(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(8)).with_jitter(0.0),
        ),
    )
}

/// Sends one request; returns its status.
async fn send<S, B>(svc: &mut S) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>, Error = crate::BoxError>,
{
    let rsp = svc
        .ready()
        .await
        .expect("ready")
        .call(Request::new(()))
        .await
        .expect("response");
    rsp.status()
}

fn status_of(stats: &TargetStats, a: SocketAddr) -> EndpointStatus {
    stats
        .endpoints()
        .into_iter()
        .find(|e| e.addr == a)
        .map(|e| e.status)
        .expect("endpoint known")
}

#[tokio::test(start_paused = true)]
async fn ejects_probes_and_restores() {
    let fleet = Fleet::new(3);
    let bad = addr(3);
    fleet.set_failing(bad, true);
    let mut pool = builder(3).build_pool(fleet.endpoints(), fleet.new_endpoint());
    let stats = pool.stats().clone();

    // Failures land on the bad endpoint until it has failed 3 times in a row.
    let mut failed = 0;
    for _ in 0..1_000 {
        if send(&mut pool).await == StatusCode::INTERNAL_SERVER_ERROR {
            failed += 1;
        }
        if stats.ejected() == 1 {
            break;
        }
    }
    assert_eq!(failed, 3, "ejected after exactly 3 consecutive failures");
    assert_eq!((stats.ejected(), stats.ejections_total()), (1, 1));
    assert_eq!(status_of(&stats, bad), EndpointStatus::Ejected);
    let ejected_at = Instant::now();

    // Ejected: 200 requests all succeed, none reaches it.
    let before = fleet.hits(bad);
    for _ in 0..200 {
        assert_eq!(send(&mut pool).await, StatusCode::OK);
    }
    assert_eq!(fleet.hits(bad), before);

    // After the first backoff (1 s), one request probes it; it still fails, so it is ejected
    // again for 2 s.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let mut probes = 0;
    for _ in 0..1_000 {
        if send(&mut pool).await == StatusCode::INTERNAL_SERVER_ERROR {
            probes += 1;
            break;
        }
    }
    assert_eq!(probes, 1, "the probe went out");
    assert_eq!(fleet.hits(bad), before + 1);
    assert_eq!(stats.ejected(), 1);
    for _ in 0..200 {
        assert_eq!(send(&mut pool).await, StatusCode::OK);
    }
    assert_eq!(fleet.hits(bad), before + 1, "exactly one probe per backoff");
    assert!(ejected_at.elapsed() >= Duration::from_secs(1));

    // It recovers; the next probe (after 2 s) succeeds and restores it.
    fleet.set_failing(bad, false);
    tokio::time::sleep(Duration::from_millis(1_999)).await;
    for _ in 0..100 {
        send(&mut pool).await;
    }
    assert_eq!(fleet.hits(bad), before + 1, "second backoff is 2 s");
    tokio::time::sleep(Duration::from_millis(1)).await;
    for _ in 0..1_000 {
        assert_eq!(send(&mut pool).await, StatusCode::OK);
        if stats.ejected() == 0 {
            break;
        }
    }
    assert_eq!(stats.ejected(), 0, "restored");
    let restored = fleet.hits(bad);
    for _ in 0..300 {
        assert_eq!(send(&mut pool).await, StatusCode::OK);
    }
    assert!(fleet.hits(bad) > restored + 30, "takes its share again");
    assert_eq!(stats.fail_open_total(), 0);
}

#[tokio::test(start_paused = true)]
async fn never_ejects_the_last_endpoint() {
    let fleet = Fleet::new(2);
    fleet.set_failing(addr(1), true);
    fleet.set_failing(addr(2), true);
    let mut pool = builder(2).build_pool(fleet.endpoints(), fleet.new_endpoint());
    let stats = pool.stats().clone();
    for _ in 0..200 {
        assert_eq!(send(&mut pool).await, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(stats.ejected(), 1, "one ejected, the other kept");
    assert_eq!(stats.ejections_total(), 1);
    assert!(stats.fail_open_total() > 10, "{}", stats.fail_open_total());
    // The kept one takes every request: the proxy answers with its 500s, not with a 503.
    let kept = if status_of(&stats, addr(1)) == EndpointStatus::Ejected {
        addr(2)
    } else {
        addr(1)
    };
    let before = fleet.hits(kept);
    for _ in 0..50 {
        send(&mut pool).await;
    }
    assert_eq!(fleet.hits(kept), before + 50);
}

#[tokio::test(start_paused = true)]
async fn without_accrual_nothing_is_ejected() {
    let fleet = Fleet::new(2);
    fleet.set_failing(addr(1), true);
    let mut pool = Builder::new("t")
        .failure_accrual(None)
        .build_pool(fleet.endpoints(), fleet.new_endpoint());
    for _ in 0..200 {
        send(&mut pool).await;
    }
    assert_eq!(pool.stats().ejected(), 0);
    assert!(
        fleet.hits(addr(1)) > 40,
        "{} {}",
        fleet.hits(addr(1)),
        fleet.hits(addr(2))
    );
}

type GrpcBody = http_body_util::StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
>;

/// A gRPC endpoint whose status comes in the trailers.
fn grpc_endpoint(
    status: &'static str,
) -> impl Fn(Endpoint) -> GrpcEndpoint + Clone + Send + 'static {
    move |_ep| GrpcEndpoint(status)
}

#[derive(Clone)]
struct GrpcEndpoint(&'static str);

impl Service<Request<()>> for GrpcEndpoint {
    type Response = Response<GrpcBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(self.0));
        let frames = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(http_body::Frame::trailers(trailers)),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let mut rsp = Response::new(body);
        rsp.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        std::future::ready(Ok(rsp))
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_failures_count_at_the_trailers() {
    let endpoints = || discover::fixed([Endpoint::new(addr(1)), Endpoint::new(addr(2))]);
    let mut pool = builder(2)
        .min_ready_endpoints(0)
        .build_pool(endpoints(), grpc_endpoint("14"));
    let stats = pool.stats().clone();

    // Headers alone say nothing: unread bodies leave no outcome.
    for _ in 0..10 {
        let rsp = pool
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        drop(rsp);
    }
    assert_eq!(stats.ejected(), 0);
    let snap = stats.endpoints();
    assert!(
        snap.iter().all(|e| e.responses == 0 && e.in_flight == 0),
        "{snap:?}"
    );

    // Read to the trailers: UNAVAILABLE is a failure.
    for _ in 0..20 {
        if stats.ejected() == 2 {
            break;
        }
        let rsp = pool
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        let trailers = rsp.into_body().collect().await.unwrap().trailers().cloned();
        assert_eq!(trailers.unwrap()["grpc-status"], "14");
    }
    assert_eq!(stats.ejected(), 2, "both ejected (min_ready_endpoints = 0)");

    // grpc-status 0 is a success.
    let mut ok = builder(1).build_pool(endpoints(), grpc_endpoint("0"));
    for _ in 0..20 {
        let rsp = ok
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        rsp.into_body().collect().await.unwrap();
    }
    assert_eq!(ok.stats().ejected(), 0);
    assert_eq!(
        ok.stats()
            .endpoints()
            .iter()
            .map(|e| e.responses)
            .sum::<u64>(),
        20
    );
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_lets_another_go() {
    let fleet = Fleet::new(2);
    let mut pool = builder(1).build_pool(fleet.endpoints(), fleet.new_endpoint());
    let stats = pool.stats().clone();
    // Both answer first (an endpoint that never answered is always tried first).
    for _ in 0..20 {
        send(&mut pool).await;
    }
    fleet.set_failing(addr(2), true);
    while stats.ejected() == 0 {
        send(&mut pool).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    fleet.set_failing(addr(2), false);
    // Dispatch requests but drop their futures unpolled until the probe has gone out.
    let hits = fleet.hits(addr(2));
    for _ in 0..1_000 {
        let fut = pool.ready().await.unwrap().call(Request::new(()));
        drop(fut);
        if fleet.hits(addr(2)) > hits {
            break;
        }
    }
    assert_eq!(
        fleet.hits(addr(2)),
        hits + 1,
        "probe dispatched, then abandoned"
    );
    assert_eq!(stats.ejected(), 1);
    // The abandoned probe does not wedge the endpoint: the next probe restores it.
    for _ in 0..1_000 {
        send(&mut pool).await;
        if stats.ejected() == 0 {
            break;
        }
    }
    assert_eq!(stats.ejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_ewma_is_readable() {
    let new_endpoint = |ep: Endpoint| {
        let a = ep.addr();
        service_fn(move |_req: Request<()>| async move {
            let ms = if a == addr(1) { 5 } else { 50 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        })
    };
    let mut pool = Builder::new("t").build_pool(
        discover::fixed([Endpoint::new(addr(1)), Endpoint::new(addr(2))]),
        new_endpoint,
    );
    for _ in 0..50 {
        send(&mut pool).await;
    }
    let snap = pool.stats().endpoints();
    assert_eq!(snap.len(), 2);
    let fast = snap[0].latency_ewma.expect("fast measured");
    assert!(
        fast >= Duration::from_millis(5) && fast < Duration::from_millis(10),
        "{fast:?}"
    );
    if let Some(slow) = snap[1].latency_ewma {
        assert!(slow >= Duration::from_millis(45), "{slow:?}");
    }
    assert!(snap[0].responses > snap[1].responses, "{snap:?}");
}

/// Fails every request, or never becomes ready.
#[derive(Clone)]
enum Broken {
    Failing,
    NeverReady,
}

impl Service<Request<()>> for Broken {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            Broken::Failing => Poll::Ready(Ok(())),
            Broken::NeverReady => Poll::Pending,
        }
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        let mut rsp = Response::new(Full::default());
        *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        std::future::ready(Ok(rsp))
    }
}

#[tokio::test(start_paused = true)]
async fn fails_open_when_the_others_are_not_ready() {
    let mut pool = builder(2).build_pool(
        discover::fixed([Endpoint::new(addr(1)), Endpoint::new(addr(2))]),
        |ep: Endpoint| {
            if ep.addr() == addr(1) {
                Broken::NeverReady
            } else {
                Broken::Failing
            }
        },
    );
    for _ in 0..20 {
        assert_eq!(send(&mut pool).await, StatusCode::SERVICE_UNAVAILABLE);
    }
    let stats = pool.stats().clone();
    assert_eq!((stats.ejected(), stats.ready(), stats.pending()), (0, 1, 1));
    assert_eq!(
        stats.fail_open_total(),
        10,
        "one skipped ejection per 2 failures"
    );
}
