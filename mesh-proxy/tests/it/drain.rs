//! Drain: `POST /shutdown` while 200 requests are in flight stops new connections at once and
//! finishes every in-flight request; then the proxy's `wait` returns.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::apps;
use crate::support::*;

const WITHIN: Duration = Duration::from_secs(60);
const IN_FLIGHT: usize = 200;

async fn post(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let rsp = send.send_request(req).await.expect("response");
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_200_in_flight_requests() {
    tokio::time::timeout(WITHIN, async {
        let app = apps::app().await;
        let Chain {
            dir: _dir,
            inbound: _inbound,
            outbound,
            ..
        // 200 connections opened at once overflow the app's accept backlog (somaxconn), so a few
        // SYNs are retransmitted after the kernel's 1 s RTO: with the default 1 s connect timeout
        // those requests would fail with a 502 and never reach the app. This test is about
        // drain, not connect timeouts, so the proxies get room to connect.
        } = Chain::start(
            app.addr,
            &["--connect-timeout", "10s"],
            &["--connect-timeout", "10s"],
        )
        .await;
        let out = outbound.outbound_addr().expect("outbound");
        let admin = outbound.admin_addr();

        // 200 clients, each on its own HTTP/1.1 connection, each held by the app until released.
        let requests: Vec<_> = (0..IN_FLIGHT)
            .map(|_| tokio::spawn(get(out, "/held", &[("host", BACKEND)])))
            .collect();
        let mut in_flight = app.in_flight.clone();
        tokio::time::timeout(
            Duration::from_secs(20),
            in_flight.wait_for(|n| *n == IN_FLIGHT),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {IN_FLIGHT} requests reached the app",
                *app.in_flight.borrow()
            )
        })
        .expect("app");

        let (status, body) = post(admin, "/shutdown").await;
        assert_eq!(status, 202, "{body}");
        let waited = tokio::spawn(outbound.wait());

        // New connections are refused from now on (the listener closes as the drain starts).
        eventually(
            "connections to the outbound listener are refused",
            Duration::from_secs(5),
            || async {
                matches!(
                    TcpStream::connect(out).await,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
                )
            },
        )
        .await;
        let (status, body) = get(admin, "/ready", &[]).await.expect("ready");
        assert_eq!((status, body.as_str()), (503, "not ready: draining\n"));
        assert!(
            !waited.is_finished(),
            "wait() returned with requests in flight"
        );
        assert_eq!(*app.in_flight.borrow(), IN_FLIGHT, "requests were cut off");

        app.release();
        for (i, r) in requests.into_iter().enumerate() {
            let (status, body) = r
                .await
                .expect("join")
                .unwrap_or_else(|e| panic!("request {i} failed during the drain: {e}"));
            assert_eq!((status, body.as_str()), (200, "held"), "request {i}");
        }
        // Well within the 30 s grace period: the proxy waited for the requests, not the clock.
        tokio::time::timeout(Duration::from_secs(10), waited)
            .await
            .expect("wait() did not return after the drain")
            .expect("join");
    })
    .await
    .expect("the test took too long");
}
