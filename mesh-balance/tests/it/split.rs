//! Weighted splits over balancers: 90/10 within 5 points over 2,000 requests; weights change
//! live without failing requests in flight.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use mesh_balance::{Builder, Endpoint, Split, discover};
use tokio::sync::watch;
use tower::{Service, ServiceExt, service_fn};

use crate::support::{eventually, read, within};

/// A balancer over two in-process endpoints that answer with `name`, waiting while `hold` is set;
/// `arrived` counts requests that reached an endpoint.
fn backend(
    name: &'static str,
    hold: watch::Receiver<bool>,
    arrived: Arc<AtomicUsize>,
) -> mesh_balance::Balancer<
    impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
    + Send
    + use<>,
    (),
> {
    let new_endpoint = move |_ep: Endpoint| {
        let hold = hold.clone();
        let arrived = arrived.clone();
        service_fn(move |_req: Request<()>| {
            let mut hold = hold.clone();
            arrived.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = hold.wait_for(|h| !*h).await;
                Ok::<_, Infallible>(Response::new(name.to_string()))
            }
        })
    };
    Builder::new(name).build(
        discover::fixed([
            Endpoint::new(([10, 0, 0, 1], 80).into()),
            Endpoint::new(([10, 0, 0, 2], 80).into()),
        ]),
        new_endpoint,
    )
}

#[tokio::test]
async fn weights_90_10() {
    let (_tx, free) = watch::channel(false);
    let (mut split, _handle) = Split::new(
        "web.test:80",
        [
            ("web-v1", 90, backend("v1", free.clone(), Arc::default())),
            ("web-v2", 10, backend("v2", free, Arc::default())),
        ],
    );
    let mut v1 = 0;
    within(Duration::from_secs(20), "2,000 requests", async {
        for _ in 0..2_000 {
            let rsp = split
                .ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
            if read(rsp).await.1 == "v1" {
                v1 += 1;
            }
        }
    })
    .await;
    let share = f64::from(v1) / 2_000.0;
    println!("90/10 split: {v1} of 2000 to v1 ({:.1}%)", share * 100.0);
    assert!((0.85..=0.95).contains(&share), "share {share}");
}

#[tokio::test]
async fn weights_change_live_without_dropping_in_flight() {
    let (hold_v1, held) = watch::channel(true);
    let (_free_tx, free) = watch::channel(false);
    let arrived = Arc::new(AtomicUsize::new(0));
    let (split, handle) = Split::new(
        "web.test:80",
        [
            ("web-v1", 1, backend("v1", held, arrived.clone())),
            ("web-v2", 0, backend("v2", free, Arc::default())),
        ],
    );

    // Requests in flight on v1 (held there).
    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            let s = split.clone();
            tokio::spawn(async move {
                let rsp = s.oneshot(Request::new(())).await?;
                Ok::<_, mesh_balance::BoxError>(read(rsp).await.1)
            })
        })
        .collect();
    eventually(Duration::from_secs(5), "requests in flight on v1", || {
        arrived.load(Ordering::SeqCst) == 10
    })
    .await;

    // Shift everything to v2: new requests go there at once.
    handle.set_weights([("web-v1", 0), ("web-v2", 1)]).unwrap();
    let mut s = split.clone();
    for _ in 0..50 {
        let rsp = within(
            Duration::from_secs(5),
            "new request",
            s.ready().await.unwrap().call(Request::new(())),
        )
        .await;
        assert_eq!(read(rsp.unwrap()).await.1, "v2");
    }

    // The old requests were not dropped: they finish on v1.
    hold_v1.send_replace(false);
    for h in in_flight {
        let body = within(Duration::from_secs(5), "in-flight request", h)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body, "v1");
    }
    assert_eq!(
        handle.weights().iter().map(|(_, w)| *w).collect::<Vec<_>>(),
        [0, 1]
    );
}
