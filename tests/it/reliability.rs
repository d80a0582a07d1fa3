//! The outbound policy the control plane serves, enforced by the sidecar: failure accrual ejects
//! an endpoint that keeps failing and probes it back once it recovers; a route's retries with a
//! per-try timeout hide an endpoint that hangs, where the same route without retries times out.
//! Three endpoints of one service, each an app behind its own sidecar, all over real mTLS.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::meshed::{control_plane, server, sidecar};
use crate::proxy_support::*;

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const HANGING: u8 = 2;

/// An app that answers its name, fails every request with 500 while failing, or never answers
/// while hanging.
async fn app(name: &'static str, mode: Arc<AtomicU8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let mode = mode.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: http::Request<hyper::body::Incoming>| {
                        let mode = mode.load(Ordering::SeqCst);
                        async move {
                            if mode == HANGING {
                                std::future::pending::<()>().await;
                            }
                            let mut rsp = http::Response::new(Full::new(Bytes::from(name)));
                            if mode == FAILING {
                                *rsp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                            }
                            Ok::<_, Infallible>(rsp)
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

const CATALOG: &str = "services:
  - name: backend
    namespace: test
    ports: [{port: 8080, protocol: http1}]
    failureAccrual:
      consecutiveFailures: 3
      backoff: {min: 1s, max: 1s, jitterRatio: 0}
    profile:
      routes:
        - name: retried
          condition: {method: GET, pathRegex: /retried}
          timeout: 5s
          retry: {limit: 2, timeout: 250ms}
        - name: single
          condition: {method: GET, pathRegex: /single}
          timeout: 250ms
";

/// Sends `n` GETs of `path`, four at a time (so the balancer spreads them: requests in flight
/// weigh on an endpoint's load); counts the answers by body (`500`, `504`... for failures).
async fn spread(out: SocketAddr, path: &str, n: usize) -> HashMap<String, usize> {
    let host = [("host", "backend.test.svc.cluster.local:8080")];
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let path = path.to_owned();
        tasks.spawn(async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for _ in (worker..n).step_by(4) {
                let key = match get(out, &path, &host).await {
                    Ok((200, body)) => body,
                    Ok((status, _)) => status.to_string(),
                    Err(e) => format!("error: {e}"),
                };
                *seen.entry(key).or_default() += 1;
            }
            seen
        });
    }
    let mut seen = HashMap::new();
    while let Some(part) = tasks.join_next().await {
        for (k, v) in part.expect("a worker") {
            *seen.entry(k).or_default() += v;
        }
    }
    seen
}

struct Three {
    _dir: tempfile::TempDir,
    _cp: mesh_control::ControlPlane,
    _servers: Vec<mesh_proxy::Proxy>,
    client: mesh_proxy::Proxy,
    modes: [Arc<AtomicU8>; 3],
}

async fn three() -> Three {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = control_plane(dir.path(), CATALOG, "127.0.0.1:0").await;
    let modes = [
        Arc::new(AtomicU8::new(HEALTHY)),
        Arc::new(AtomicU8::new(HEALTHY)),
        Arc::new(AtomicU8::new(HEALTHY)),
    ];
    let mut servers = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let addr = app(name, modes[i].clone()).await;
        servers.push(server(&cp, dir.path(), "backend", addr, "backend", 8080).await);
    }
    let client = sidecar(
        &cp,
        dir.path(),
        "client",
        &["--outbound-listen", "127.0.0.1:0"],
    )
    .await;
    let out = client.outbound_addr().expect("outbound");
    // Until the client's sidecar knows all three endpoints.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = spread(out, "/", 30).await;
        if ["a", "b", "c"].iter().all(|n| seen.contains_key(*n)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw all three: {seen:?}"
        );
    }
    Three {
        _dir: dir,
        _cp: cp,
        _servers: servers,
        client,
        modes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_accrual_ejects_a_failing_endpoint_and_probes_it_back() {
    let t = three().await;
    let out = t.client.outbound_addr().expect("outbound");
    t.modes[0].store(FAILING, Ordering::SeqCst);

    // Three failures in a row eject it; let them happen.
    let warm = spread(out, "/", 30).await;
    assert!(warm.get("500").copied().unwrap_or(0) >= 3, "{warm:?}");
    // While ejected (probed once a second, and ejected again), it gets almost nothing.
    let seen = spread(out, "/", 300).await;
    let failed = seen.get("500").copied().unwrap_or(0);
    assert!(
        failed * 100 < 300 * 5,
        "the failing endpoint got {failed} of 300 requests while ejected: {seen:?}"
    );
    assert_eq!(seen.get("a"), None, "{seen:?}");
    let admin = t.client.admin_addr();
    let ejections = metric(admin, "outbound_balancer_ejections_total", &[]).await;
    assert!(ejections >= 1.0, "no ejection in the balancer's metrics");

    // Recovered: the next probe succeeds, and it is back in rotation.
    t.modes[0].store(HEALTHY, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = spread(out, "/", 60).await;
        if seen.get("a").copied().unwrap_or(0) >= 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never probed back: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_a_per_try_timeout_hide_a_hanging_endpoint() {
    // Each half on fresh sidecars: the balancer learns to avoid a slow endpoint, so only the
    // first requests of a run are sure to meet it.
    let t = three().await;
    let out = t.client.outbound_addr().expect("outbound");
    t.modes[1].store(HANGING, Ordering::SeqCst);
    // The route with retries: every request answered by a live endpoint, although the hanging
    // one was tried (and each try given up on after 250 ms).
    let seen = spread(out, "/retried", 60).await;
    let answered = seen.get("a").copied().unwrap_or(0) + seen.get("c").copied().unwrap_or(0);
    assert_eq!(answered, 60, "{seen:?}");
    let retries = metric(t.client.admin_addr(), "retry_total", &[]).await;
    assert!(
        retries >= 1.0,
        "the hanging endpoint was never tried: {seen:?}"
    );

    // The same endpoints, a route without retries: a request sent to the hanging one times out.
    let t = three().await;
    let out = t.client.outbound_addr().expect("outbound");
    t.modes[1].store(HANGING, Ordering::SeqCst);
    let seen = spread(out, "/single", 60).await;
    assert!(
        seen.get("504").copied().unwrap_or(0) >= 1,
        "no request timed out without retries: {seen:?}"
    );
    assert_eq!(metric(t.client.admin_addr(), "retry_total", &[]).await, 0.0);
}
