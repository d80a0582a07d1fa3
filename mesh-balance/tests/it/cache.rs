//! A cache of balancers: built on first use, evicted when idle (and their endpoints with them).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use mesh_balance::{Builder, Endpoint, discover};
use mesh_core::stack::cache::Cache;
use tower::{ServiceExt, service_fn};

use crate::support::{eventually, read};

/// Counts live endpoint services.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn idle_balancers_are_evicted() {
    let live = Arc::new(AtomicUsize::new(0));
    let built = Arc::new(AtomicUsize::new(0));
    let (l, b) = (live.clone(), built.clone());
    let cache = Cache::new(
        move |target: String| {
            b.fetch_add(1, Ordering::SeqCst);
            let live = l.clone();
            let new_endpoint = move |ep: Endpoint| {
                live.fetch_add(1, Ordering::SeqCst);
                let guard = Arc::new(Live(live.clone()));
                let addr = ep.addr();
                service_fn(move |_req: Request<()>| {
                    let _guard = guard.clone();
                    async move { Ok::<_, Infallible>(Response::new(addr.to_string())) }
                })
            };
            Builder::new(target).build(
                discover::fixed([Endpoint::new(([10, 0, 0, 1], 80).into())]),
                new_endpoint,
            )
        },
        Duration::from_secs(5),
    );

    let svc = cache.get("web.test:80".to_string());
    let rsp = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(read(rsp).await.1, "10.0.0.1:80");
    assert_eq!(live.load(Ordering::SeqCst), 1);
    let again = cache.get("web.test:80".to_string());
    assert_eq!(built.load(Ordering::SeqCst), 1, "one balancer per target");

    // In use for a long time: kept.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(cache.len(), 1);

    // Idle past the timeout: evicted, and its endpoints go with it.
    drop((svc, again));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(cache.len(), 1);
    eventually(Duration::from_secs(3), "eviction", || cache.is_empty()).await;
    eventually(Duration::from_secs(1), "endpoints dropped", || {
        live.load(Ordering::SeqCst) == 0
    })
    .await;

    // Next use builds it again.
    let svc = cache.get("web.test:80".to_string());
    svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(built.load(Ordering::SeqCst), 2);
}
