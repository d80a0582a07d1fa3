//! Removing an endpoint from discovery drains it: requests in flight on it finish, new ones go
//! elsewhere.

use std::time::Duration;

use mesh_balance::discover::EndpointSet;
use mesh_balance::{Builder, ProtocolHint};
use tower::{Service, ServiceExt};

use crate::support::{Server, eventually, new_client, read, request, within};

async fn drains(hint: ProtocolHint, in_flight: usize) {
    let old = Server::start(Duration::ZERO).await;
    let new = Server::start(Duration::ZERO).await;
    let set = EndpointSet::new();
    set.add([old.endpoint(hint)]);
    let mut balancer = Builder::new("drain.test:80").build(set.subscribe(), new_client());
    let stats = balancer.stats().clone();

    // Requests held on the old endpoint.
    old.behaviour.set_held(true);
    let held: Vec<_> = (0..in_flight)
        .map(|_| {
            let b = balancer.clone();
            tokio::spawn(async move {
                let rsp = b.oneshot(request()).await?;
                Ok::<_, mesh_balance::BoxError>(read(rsp).await.1.parse::<std::net::SocketAddr>()?)
            })
        })
        .collect();
    eventually(Duration::from_secs(5), "requests in flight", || {
        old.behaviour.in_flight() == in_flight
    })
    .await;

    // Discovery moves the target to the new endpoint.
    set.add([new.endpoint(hint)]);
    set.remove([old.addr]);
    for _ in 0..20 {
        let rsp = within(
            Duration::from_secs(5),
            "request after removal",
            balancer.ready().await.unwrap().call(request()),
        )
        .await
        .expect("response");
        assert_eq!(
            read(rsp).await,
            (http::StatusCode::OK, new.addr.to_string())
        );
    }
    assert_eq!(stats.len(), 1, "the old endpoint left the balancer");
    assert_eq!(
        old.behaviour.hits(),
        in_flight,
        "nothing new sent to the removed endpoint"
    );

    // The held requests were not dropped with the endpoint: they finish when it answers.
    old.behaviour.set_held(false);
    for h in held {
        let addr = within(Duration::from_secs(5), "held request", h)
            .await
            .expect("task")
            .expect("held request succeeds");
        assert_eq!(addr, old.addr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_drains_http2() {
    drains(ProtocolHint::Http2, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_drains_http1() {
    // One HTTP/1 connection per endpoint: one request in flight at a time.
    drains(ProtocolHint::Unknown, 1).await;
}
