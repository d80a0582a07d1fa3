//! P2C over peak-EWMA sends most requests to the fast endpoint; every request is balanced on its
//! own, over HTTP/1 and HTTP/2 connections alike.

use std::time::Duration;

use mesh_balance::{Builder, ProtocolHint, discover};
use tower::{Service, ServiceExt};

use crate::support::{Server, new_client, read, request, within};

async fn fast_share(hint: ProtocolHint, requests: usize) -> f64 {
    let fast = Server::start(Duration::from_millis(5)).await;
    let slow = Server::start(Duration::from_millis(50)).await;
    let balancer = Builder::new("latency.test:80").build(
        discover::fixed([fast.endpoint(hint), slow.endpoint(hint)]),
        new_client(),
    );
    // Two callers at a time: enough for in-flight counts to matter, little enough that a noisy
    // machine does not turn 5 ms into 50.
    let mut callers = Vec::new();
    for _ in 0..2 {
        let mut b = balancer.clone();
        callers.push(tokio::spawn(async move {
            for _ in 0..requests / 2 {
                let rsp = b
                    .ready()
                    .await
                    .expect("ready")
                    .call(request())
                    .await
                    .expect("response");
                assert_eq!(read(rsp).await.0, 200);
            }
        }));
    }
    for c in callers {
        within(Duration::from_secs(20), "requests", c)
            .await
            .expect("caller");
    }
    let (f, s) = (fast.behaviour.hits(), slow.behaviour.hits());
    assert_eq!(f + s, requests);
    let share = f as f64 / requests as f64;
    let snap = balancer.stats().endpoints();
    println!(
        "{hint:?}: fast {f}, slow {s} ({:.1}% to the fast endpoint); latency EWMA {:?}",
        share * 100.0,
        snap.iter()
            .map(|e| (e.addr.port(), e.latency_ewma))
            .collect::<Vec<_>>()
    );
    share
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_endpoint_gets_most_requests_http1() {
    let share = fast_share(ProtocolHint::Unknown, 200).await;
    assert!(share > 0.7, "fast share {share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_endpoint_gets_most_requests_http2() {
    let share = fast_share(ProtocolHint::Http2, 200).await;
    assert!(share > 0.7, "fast share {share}");
}

/// With equal endpoints and one multiplexed HTTP/2 connection each, requests still spread: the
/// balancer picks per request, not per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_each_request_over_http2_connections() {
    let servers = [
        Server::start(Duration::from_millis(2)).await,
        Server::start(Duration::from_millis(2)).await,
        Server::start(Duration::from_millis(2)).await,
    ];
    let balancer = Builder::new("h2.test:80").build(
        discover::fixed(servers.iter().map(|s| s.endpoint(ProtocolHint::Http2))),
        new_client(),
    );
    let calls = (0..90).map(|_| {
        let b = balancer.clone();
        async move { read(b.oneshot(request()).await.expect("response")).await }
    });
    let results = within(
        Duration::from_secs(10),
        "requests",
        futures_util::future::join_all(calls),
    )
    .await;
    assert!(results.iter().all(|(status, _)| *status == 200));
    let hits: Vec<_> = servers.iter().map(|s| s.behaviour.hits()).collect();
    assert_eq!(hits.iter().sum::<usize>(), 90);
    // Per request, not per connection: several connections share the burst. (An endpoint whose
    // connection is still being made on a loaded machine may miss it, hence "at least two".)
    assert!(hits.iter().filter(|&&h| h >= 10).count() >= 2, "{hits:?}");
}
