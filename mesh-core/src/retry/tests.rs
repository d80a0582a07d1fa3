use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prometheus_client::registry::Registry;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::BoxError;
use crate::metrics::{Labels, encode};

type Req = http::Request<ReplayBody<Full<Bytes>>>;

/// An inner service answering with `statuses` in turn (then 200), recording request bodies.
fn scripted(
    statuses: Vec<u16>,
) -> (
    impl tower::Service<Req, Response = http::Response<()>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static,
    Arc<std::sync::Mutex<Vec<Bytes>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let n = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(statuses);
    let s = seen.clone();
    let svc = service_fn(move |req: Req| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let status = statuses.get(i).copied().unwrap_or(200);
        let seen = s.clone();
        async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(|e| -> BoxError { Box::new(e) })?
                .to_bytes();
            seen.lock().unwrap().push(body);
            if status == 0 {
                return Err(
                    Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                        as BoxError,
                );
            }
            let mut rsp = http::Response::new(());
            *rsp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok(rsp)
        }
    });
    (svc, seen)
}

fn req(method: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri("/")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn idempotent_get_is_retried_and_post_is_not() {
    let (svc, seen) = scripted(vec![503, 503]);
    let retry = RetryLayer::new(RetryBudget::default()).layer(svc);
    let rsp = retry.clone().oneshot(req("GET", "")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 3, "two failures, then success");

    let (svc, seen) = scripted(vec![503]);
    let retry = RetryLayer::new(RetryBudget::default()).layer(svc);
    let rsp = retry.oneshot(req("POST", "order=1")).await.unwrap();
    assert_eq!(rsp.status(), 503, "a POST is returned as it failed");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[Bytes::from_static(b"order=1")]
    );
}

#[tokio::test]
async fn routes_marked_retryable_replay_their_body() {
    let (svc, seen) = scripted(vec![500]);
    let retry = RetryLayer::new(RetryBudget::default()).layer(svc);
    let mut r = req("POST", "vote=doughnut");
    r.extensions_mut().insert(RetryableRoute::new());
    let rsp = retry.oneshot(r).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|b| b == "vote=doughnut"),
        "the body is replayed whole"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_stream_once_and_are_not_retried() {
    let mut registry = Registry::default();
    let counters = RetryMetrics::register(&mut registry).counters(&Labels::new());
    let (svc, seen) = scripted(vec![503]);
    let retry = RetryLayer::new(RetryBudget::default())
        .max_body_bytes(4)
        .counters(counters)
        .layer(svc);
    let rsp = retry.oneshot(req("PUT", "0123456789")).await.unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[Bytes::from_static(b"0123456789")]
    );
    assert!(encode(&registry).contains(r#"retry_skipped_total{reason="body_too_large"} 1"#));
}

#[tokio::test]
async fn budget_exhaustion_stops_retries() {
    let mut registry = Registry::default();
    let counters = RetryMetrics::register(&mut registry).counters(&Labels::new());
    // A reserve of one retry and nothing earned from requests.
    let budget = RetryBudget::new(0.0, 1, Duration::from_secs(1)).unwrap();
    let (svc, seen) = scripted(vec![503; 10]);
    let retry = RetryLayer::new(budget).counters(counters).layer(svc);
    for _ in 0..3 {
        let rsp = retry.clone().oneshot(req("GET", "")).await.unwrap();
        assert_eq!(rsp.status(), 503);
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "three requests and the one retry the budget had"
    );
    let text = encode(&registry);
    assert!(text.contains("retry_total 1"), "{text}");
    assert!(
        text.contains(r#"retry_skipped_total{reason="budget"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn max_retries_caps_each_request() {
    let (svc, seen) = scripted(vec![503; 10]);
    let retry = RetryLayer::new(RetryBudget::default())
        .max_retries(2)
        .layer(svc);
    assert_eq!(retry.oneshot(req("GET", "")).await.unwrap().status(), 503);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn refused_connections_are_retried() {
    let (svc, seen) = scripted(vec![0]);
    let retry = RetryLayer::new(RetryBudget::default()).layer(svc);
    assert_eq!(retry.oneshot(req("GET", "")).await.unwrap().status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_within_the_overall_timeout() {
    use crate::timeout::{ResponseTimeout, TimeoutLayer};
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // The first attempt hangs; the second answers at once.
    let svc = service_fn(move |_req: Req| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok::<_, Infallible>(http::Response::new(()))
        }
    });
    let stack = TimeoutLayer::new(Duration::from_secs(2)).layer(
        RetryLayer::new(RetryBudget::default()).layer(
            TimeoutLayer::new(Duration::from_millis(500))
                .per_attempt()
                .layer(svc),
        ),
    );
    let start = tokio::time::Instant::now();
    let rsp = stack.clone().oneshot(req("GET", "")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        start.elapsed() >= Duration::from_millis(500) && start.elapsed() < Duration::from_secs(2)
    );

    // Every attempt hangs: the overall timeout ends the exchange.
    let hang = service_fn(|_req: Req| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(http::Response::new(()))
    });
    let stack = TimeoutLayer::new(Duration::from_secs(2)).layer(
        RetryLayer::new(RetryBudget::default()).layer(
            TimeoutLayer::new(Duration::from_millis(500))
                .per_attempt()
                .layer(hang),
        ),
    );
    let err = stack.oneshot(req("GET", "")).await.unwrap_err();
    let t = err.downcast_ref::<ResponseTimeout>().expect("a timeout");
    assert_eq!(t.scope(), crate::timeout::TimeoutScope::Request);
}

#[test]
fn invalid_budgets_are_refused_with_a_reason() {
    assert!(RetryBudget::new(-1.0, 10, Duration::from_secs(10)).is_err());
    let e = RetryBudget::new(0.2, 10, Duration::from_secs(600)).unwrap_err();
    assert!(e.to_string().contains("window"), "{e}");
}

#[tokio::test]
async fn only_marked_routes_are_retried_when_asked() {
    let (svc, seen) = scripted(vec![503, 503]);
    let retry = RetryLayer::new(RetryBudget::default())
        .only_marked_routes(true)
        .layer(svc);
    assert_eq!(
        retry
            .clone()
            .oneshot(req("GET", ""))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "an unmarked GET is sent once"
    );
    let mut marked = req("GET", "");
    marked.extensions_mut().insert(RetryableRoute::new());
    assert_eq!(retry.oneshot(marked).await.unwrap().status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_decision_made_below_is_the_one_retried_on() {
    use crate::classify::Classifier;
    // A layer below (failure accrual, with a route's response classes) judged 404 a failure:
    // the retry policy, with the default classifier (5xx only), follows that decision.
    let (svc, seen) = scripted(vec![404]);
    let strict = Classifier::with_failure_statuses(vec![400..=599]);
    let classified = tower::ServiceBuilder::new()
        .map_response(move |mut rsp: http::Response<()>| {
            strict.classify_response(&mut rsp);
            rsp
        })
        .service(svc);
    let retry = RetryLayer::new(RetryBudget::default()).layer(classified);
    let rsp = retry.oneshot(req("GET", "")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2, "the 404 was retried");
}

#[tokio::test(start_paused = true)]
async fn a_route_says_what_to_retry_how_often_and_each_try_s_timeout() {
    use crate::timeout::{AttemptTimeout, RouteTimeout, TimeoutLayer};
    // 429 is retried because the route says so, 503 is not (not in its ranges), and at most
    // twice: the third failure is returned.
    let (svc, seen) = scripted(vec![429, 429, 429, 200]);
    let retry = RetryLayer::new(RetryBudget::default())
        .only_marked_routes(true)
        .layer(svc);
    let mut r = req("POST", "x");
    r.extensions_mut()
        .insert(RetryableRoute::new().limit(2).on_statuses([429..=429]));
    let rsp = retry.clone().oneshot(r).await.unwrap();
    assert_eq!(rsp.status(), 429, "the limit ends it");
    assert_eq!(seen.lock().unwrap().len(), 3);

    let (svc, seen) = scripted(vec![503]);
    let retry = RetryLayer::new(RetryBudget::default()).layer(svc);
    let mut r = req("GET", "");
    r.extensions_mut()
        .insert(RetryableRoute::new().on_statuses([429..=429]));
    assert_eq!(retry.oneshot(r).await.unwrap().status(), 503);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "503 is not the route's condition"
    );

    // The route's per-try timeout, under the retries: the hanging first try is retried.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |_req: Req| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok::<_, Infallible>(http::Response::new(()))
        }
    });
    let stack = TimeoutLayer::per_route().layer(
        RetryLayer::new(RetryBudget::default())
            .only_marked_routes(true)
            .layer(TimeoutLayer::per_route().per_attempt().layer(svc)),
    );
    let mut r = req("GET", "");
    r.extensions_mut()
        .insert(RouteTimeout(Duration::from_secs(2)));
    r.extensions_mut()
        .insert(AttemptTimeout(Duration::from_millis(300)));
    r.extensions_mut().insert(RetryableRoute::new().limit(1));
    let start = tokio::time::Instant::now();
    assert_eq!(stack.oneshot(r).await.unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        start.elapsed() >= Duration::from_millis(300) && start.elapsed() < Duration::from_secs(1)
    );
}
