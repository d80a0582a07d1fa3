//! The sidecar against a real control plane (`mesh-proxy` and `mesh-control` together): certificates from `Identity.Certify`
//! with a bootstrap token, the inbound endpoint registered, destinations from `Destination.Get`;
//! and traffic that survives the control plane going away and coming back.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use mesh_control::{Config as ControlConfig, ControlPlane};
use mesh_proxy::{Args, Proxy};

use crate::meshed::{control_plane, sidecar};
use crate::proxy_support::*;

const MESH_YAML: &str =
    "services:\n  - name: backend\n    namespace: test\n    ports:\n      - port: 8080\n";

async fn control(dir: &Path, listen: SocketAddr) -> ControlPlane {
    control_plane(dir, MESH_YAML, &listen.to_string()).await
}

async fn proxy(cp: &ControlPlane, dir: &Path, sa: &str, args: &[&str]) -> Proxy {
    sidecar(cp, dir, sa, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certify_register_discover_and_survive_a_control_plane_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = control(dir.path(), "127.0.0.1:0".parse().expect("addr")).await;
    let cp_addr = cp.addr();
    let app = backend().await;
    let app_s = app.to_string();
    let _inbound = proxy(
        &cp,
        dir.path(),
        "backend",
        &[
            "--inbound-listen",
            "127.0.0.1:0",
            "--inbound-forward",
            &app_s,
            "--register",
            "backend.test:8080",
        ],
    )
    .await;
    let outbound = proxy(
        &cp,
        dir.path(),
        "web",
        &["--outbound-listen", "127.0.0.1:0"],
    )
    .await;
    let out = outbound.outbound_addr().expect("outbound");
    let host = [("host", "backend.test:8080")];

    // The registered endpoint reaches the outbound proxy through Destination.Get.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        match get(out, "/via-control", &host).await {
            Ok((200, body)) => break body,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never routed: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(
        body,
        format!(
            "GET /via-control HTTP/1.1 client={} host=backend.test:8080\n",
            identity("web")
        )
    );

    // The control plane goes away: traffic keeps flowing on what the proxies know.
    cp.shutdown().await;
    for i in 0..20 {
        let (status, _) = get(out, &format!("/without-control/{i}"), &host)
            .await
            .expect("request");
        assert_eq!(
            status, 200,
            "request {i} failed while the control plane was down"
        );
    }

    // It comes back on the same address and state: the proxies resync and keep serving.
    let cp = control(dir.path(), cp_addr).await;
    for i in 0..20 {
        let (status, _) = get(out, &format!("/after-restart/{i}"), &host)
            .await
            .expect("request");
        assert_eq!(status, 200, "request {i} failed after the restart");
    }
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_leaves_the_proxy_unready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = control(dir.path(), "127.0.0.1:0".parse().expect("addr")).await;
    // A token for another identity.
    let token = cp
        .issue_token(
            &identity("other").parse().expect("id"),
            Duration::from_secs(60),
        )
        .expect("token");
    let anchors = dir.path().join("state").join("trust-anchors.pem");
    let args = Args::parse_from([
        "mesh-proxy",
        "--control",
        &cp.addr().to_string(),
        "--control-identity",
        cp.identity().as_str(),
        "--trust-anchors",
        &anchors.display().to_string(),
        "--identity",
        &identity("web"),
        "--token",
        &token,
        "--admin-listen",
        "127.0.0.1:0",
        "--outbound-listen",
        "127.0.0.1:0",
    ]);
    let p = Proxy::start(args.validate().expect("config"))
        .await
        .expect("start");
    // The certificate never comes (the refusals are retried with backoff)...
    let certified = tokio::time::timeout(Duration::from_secs(2), p.runtime().creds.ready()).await;
    assert!(
        certified.is_err(),
        "certified with another identity's token"
    );
    // ...and /ready says why.
    let (status, body) = get(p.admin_addr(), "/ready", &[]).await.expect("ready");
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: waiting for a certificate\n")
    );
    cp.shutdown().await;
}

/// A backend that says which version it is and has a slow route.
async fn versioned(version: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(version)),
                        ))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
            });
        }
    });
    addr
}

fn split_yaml(timeout: &str, v1: u32, v2: u32) -> String {
    format!(
        "services:\n\
         \x20 - name: backend\n    namespace: test\n    ports: [{{port: 8080}}]\n\
         \x20   profile:\n      routes:\n        - name: slow\n          condition: {{pathRegex: /slow}}\n          timeout: {timeout}\n\
         \x20   split:\n      - {{service: backend-v1, weight: {v1}}}\n      - {{service: backend-v2, weight: {v2}}}\n\
         \x20 - name: backend-v1\n    namespace: test\n    ports: [{{port: 8080}}]\n\
         \x20 - name: backend-v2\n    namespace: test\n    ports: [{{port: 8080}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_mesh_yaml_changes_live_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("mesh.yaml");
    std::fs::write(&yaml, split_yaml("5s", 100, 0)).expect("write");
    let cp = ControlPlane::start(
        ControlConfig::new(dir.path().join("state"))
            .listen("127.0.0.1:0".parse().expect("addr"))
            .catalog_file(Some(yaml.clone())),
    )
    .await
    .expect("control plane");
    let (a1, a2) = (versioned("v1").await, versioned("v2").await);
    let (a1, a2) = (a1.to_string(), a2.to_string());
    let _v1 = proxy(
        &cp,
        dir.path(),
        "backend-v1",
        &[
            "--inbound-listen",
            "127.0.0.1:0",
            "--inbound-forward",
            &a1,
            "--register",
            "backend-v1.test:8080",
        ],
    )
    .await;
    let _v2 = proxy(
        &cp,
        dir.path(),
        "backend-v2",
        &[
            "--inbound-listen",
            "127.0.0.1:0",
            "--inbound-forward",
            &a2,
            "--register",
            "backend-v2.test:8080",
        ],
    )
    .await;
    let outbound = proxy(
        &cp,
        dir.path(),
        "web",
        &["--outbound-listen", "127.0.0.1:0"],
    )
    .await;
    let out = outbound.outbound_addr().expect("outbound");
    let host = [("host", "backend.test:8080")];

    // 100/0: every request goes to v1; the slow route has 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((200, body)) = get(out, "/which", &host).await
            && body == "v1"
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never routed to v1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert_eq!(
            get(out, "/which", &host).await.expect("request"),
            (200, "v1".to_string())
        );
    }
    assert_eq!(get(out, "/slow", &host).await.expect("request").0, 200);

    // Edit the file: a 200 ms route timeout and a 50/50 split. No restart.
    std::fs::write(&yaml, split_yaml("200ms", 50, 50)).expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seen_v2 = false;
    let mut timed_out = false;
    while !(seen_v2 && timed_out) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit never applied (v2 seen: {seen_v2}, timeout: {timed_out})"
        );
        if let Ok((200, body)) = get(out, "/which", &host).await {
            seen_v2 |= body == "v2";
        }
        if !timed_out {
            let (status, body) = get(out, "/slow", &host).await.expect("request");
            timed_out = status == 504 && body.contains("timed out after 200ms");
        }
    }
    cp.shutdown().await;
}
