//! Failure accrual against real servers: the failing endpoint is ejected, a burst succeeds
//! through the others, and the endpoint returns once it recovers.

use std::time::Duration;

use mesh_balance::{Backoff, Builder, EndpointStatus, FailureAccrual, ProtocolHint, discover};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::support::{Server, eventually, new_client, read, request, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejects_the_failing_endpoint_and_restores_it() {
    let servers = [
        Server::start(Duration::from_millis(2)).await,
        Server::start(Duration::from_millis(2)).await,
        Server::start(Duration::from_millis(2)).await,
    ];
    let bad = &servers[2];
    bad.behaviour.set_failing(true);
    let probe_every = Duration::from_secs(2);
    let mut balancer = Builder::new("accrual.test:80")
        .failure_accrual(
            FailureAccrual::consecutive(5)
                .with_backoff(Backoff::new(probe_every, probe_every).with_jitter(0.0)),
        )
        .build(
            discover::fixed(servers.iter().map(|s| s.endpoint(ProtocolHint::Http2))),
            new_client(),
        );
    let stats = balancer.stats().clone();

    // Until ejected, the failing endpoint answers some requests with 500.
    let mut failures = 0;
    within(Duration::from_secs(10), "ejection", async {
        while stats.ejected() == 0 {
            let rsp = balancer
                .ready()
                .await
                .unwrap()
                .call(request())
                .await
                .unwrap();
            if read(rsp).await.0 == 500 {
                failures += 1;
            }
        }
    })
    .await;
    let ejected_at = Instant::now();
    assert_eq!(failures, 5, "ejected after 5 consecutive failures");
    let snap = stats.endpoints();
    let bad_snap = snap.iter().find(|e| e.addr == bad.addr).unwrap();
    assert_eq!(bad_snap.status, EndpointStatus::Ejected);

    // A burst of idempotent requests, 10 at a time: every one succeeds via the others.
    let before = bad.behaviour.hits();
    let burst = (0..100).map(|_| {
        let b = balancer.clone();
        async move { read(b.oneshot(request()).await.expect("response")).await.0 }
    });
    let statuses = within(
        Duration::from_secs(5),
        "burst",
        futures_util::future::join_all(burst),
    )
    .await;
    assert!(
        ejected_at.elapsed() < probe_every,
        "the burst must end before the first probe ({:?})",
        ejected_at.elapsed()
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        bad.behaviour.hits(),
        before,
        "nothing sent to the ejected endpoint"
    );

    // It recovers: the next probe succeeds and it takes traffic again.
    bad.behaviour.set_failing(false);
    within(Duration::from_secs(10), "restoration", async {
        while stats.ejected() != 0 {
            let rsp = balancer
                .ready()
                .await
                .unwrap()
                .call(request())
                .await
                .unwrap();
            read(rsp).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(ejected_at.elapsed() >= probe_every);
    let restored = bad.behaviour.hits();
    for _ in 0..150 {
        let rsp = balancer
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        assert_eq!(read(rsp).await.0, 200);
    }
    eventually(Duration::from_secs(1), "restored endpoint used", || {
        bad.behaviour.hits() > restored
    })
    .await;
    println!(
        "ejected after {failures} failures; restored after {:?}; endpoint hits {:?}",
        ejected_at.elapsed(),
        servers
            .iter()
            .map(|s| s.behaviour.hits())
            .collect::<Vec<_>>()
    );
    assert_eq!(stats.fail_open_total(), 0);
}
