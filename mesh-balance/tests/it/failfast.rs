//! Nobody can serve the request: a clear 503-worthy error, quickly, never a hang.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use mesh_balance::discover::EndpointSet;
use mesh_balance::{
    Backoff, BoxError, Builder, Endpoint, FailureAccrual, ProtocolHint, Reason, Unavailable,
    discover,
};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

use crate::support::{Server, new_client, read, request, within};

fn ok_endpoint(
    _: Endpoint,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ use<> {
    service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new("ok".to_string())) })
}

/// An endpoint that never becomes ready (say, a connection that never completes).
#[derive(Clone)]
struct NeverReady;

impl Service<Request<()>> for NeverReady {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Pending
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        unreachable!("never ready")
    }
}

fn unavailable(e: &BoxError) -> &Unavailable {
    e.downcast_ref::<Unavailable>()
        .unwrap_or_else(|| panic!("expected Unavailable, got {e}"))
}

#[tokio::test(start_paused = true)]
async fn no_endpoints_fails_after_the_failfast_timeout_then_recovers() {
    let set = EndpointSet::new();
    let balancer = Builder::new("empty.test:80")
        .failfast_timeout(Duration::from_secs(1))
        .build(set.subscribe(), ok_endpoint);

    let start = Instant::now();
    let err = balancer
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "bounded by the failfast timeout"
    );
    let u = unavailable(&err);
    assert_eq!(u.reason(), Reason::NoEndpoints);
    let rsp = mesh_core::rescue::error_response::<http_body_util::Empty<bytes::Bytes>>(u, false);
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(u.to_string().contains("empty.test:80: no endpoints"), "{u}");

    // In failfast, the next requests fail at once.
    let start = Instant::now();
    for _ in 0..3 {
        let err = balancer
            .clone()
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        assert_eq!(unavailable(&err).reason(), Reason::NoEndpoints);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(balancer.stats().unavailable_total(Reason::NoEndpoints), 4);

    // An endpoint appears: requests flow again.
    set.add([Endpoint::new(([10, 0, 0, 1], 80).into())]);
    let rsp = balancer.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(read(rsp).await.1, "ok");
}

#[tokio::test(start_paused = true)]
async fn endpoints_never_ready_fail_fast() {
    let balancer = Builder::new("stuck.test:80")
        .failfast_timeout(Duration::from_millis(500))
        .build(
            discover::fixed([
                Endpoint::new(([10, 0, 0, 1], 80).into()),
                Endpoint::new(([10, 0, 0, 2], 80).into()),
            ]),
            |_| NeverReady,
        );
    let start = Instant::now();
    let err = balancer
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    let u = unavailable(&err);
    assert_eq!(u.reason(), Reason::FailFast);
    assert!(u.to_string().contains("(2 known, 0 ejected)"), "{u}");
    assert_eq!(balancer.stats().pending(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_at_once() {
    let balancer = Builder::new("busy.test:80")
        .queue_capacity(2)
        .failfast_timeout(Duration::from_secs(10))
        .build(
            discover::fixed([Endpoint::new(([10, 0, 0, 1], 80).into())]),
            |_| NeverReady,
        );
    // The worker holds one request and the queue two more; the next is shed. (With time paused,
    // the 1 ms sleep returns only once every other task is idle: the request has been queued
    // and the worker has taken what it can.)
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(tokio::spawn(balancer.clone().oneshot(Request::new(()))));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let err = balancer
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    let u = unavailable(&err);
    assert_eq!(u.reason(), Reason::QueueFull);
    assert!(u.to_string().contains("(2 requests waiting)"), "{u}");
    // The waiting ones are not forgotten: they fail fast when the timeout fires.
    for w in waiting {
        let err = w.await.unwrap().unwrap_err();
        assert_eq!(unavailable(&err).reason(), Reason::FailFast);
    }
    assert_eq!(balancer.stats().unavailable_total(Reason::QueueFull), 1);
}

#[tokio::test(start_paused = true)]
async fn all_ejected_when_allowed() {
    let new_endpoint = |_| {
        service_fn(|_req: Request<()>| async {
            let mut rsp = Response::new(String::new());
            *rsp.status_mut() = StatusCode::BAD_GATEWAY;
            Ok::<_, Infallible>(rsp)
        })
    };
    let balancer = Builder::new("broken.test:80")
        .failfast_timeout(Duration::from_secs(1))
        .min_ready_endpoints(0)
        .failure_accrual(FailureAccrual::consecutive(2).with_backoff(Backoff::new(
            Duration::from_secs(30),
            Duration::from_secs(30),
        )))
        .build(
            discover::fixed([
                Endpoint::new(([10, 0, 0, 1], 80).into()),
                Endpoint::new(([10, 0, 0, 2], 80).into()),
            ]),
            new_endpoint,
        );
    let mut statuses = Vec::new();
    let err = loop {
        match balancer.clone().oneshot(Request::new(())).await {
            Ok(rsp) => statuses.push(rsp.status()),
            Err(e) => break e,
        }
    };
    assert_eq!(statuses, [StatusCode::BAD_GATEWAY; 4]);
    assert_eq!(unavailable(&err).reason(), Reason::AllEjected);
    assert_eq!(balancer.stats().ejected(), 2);
    assert_eq!(balancer.stats().fail_open_total(), 0);
}

/// Real servers that go away: requests fail quickly (connection errors, then failfast), and none
/// hangs past the failfast timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_endpoints_down_fails_quickly() {
    let servers = [
        Server::start(Duration::ZERO).await,
        Server::start(Duration::ZERO).await,
    ];
    let failfast = Duration::from_millis(300);
    let balancer = Builder::new("down.test:80")
        .failfast_timeout(failfast)
        .renew_backoff(Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(200),
        ))
        .build(
            discover::fixed(servers.iter().map(|s| s.endpoint(ProtocolHint::Http2))),
            new_client(),
        );
    for _ in 0..10 {
        let rsp = balancer.clone().oneshot(request()).await.unwrap();
        assert_eq!(read(rsp).await.0, 200);
    }

    for s in &servers {
        s.shutdown();
    }
    let mut unavailable_seen = None;
    within(Duration::from_secs(10), "an Unavailable error", async {
        while unavailable_seen.is_none() {
            let start = Instant::now();
            let result = within(
                failfast + Duration::from_secs(1),
                "one request",
                balancer.clone().oneshot(request()),
            )
            .await;
            let took = start.elapsed();
            if let Err(e) = result
                && let Some(u) = e.downcast_ref::<Unavailable>()
            {
                unavailable_seen = Some((u.clone(), took));
            }
        }
    })
    .await;
    let (u, took) = unavailable_seen.unwrap();
    println!("endpoints down: {u} (after {took:?})");
    assert!(matches!(u.reason(), Reason::FailFast), "{u}");
    assert!(took <= failfast + Duration::from_millis(500), "{took:?}");
}
