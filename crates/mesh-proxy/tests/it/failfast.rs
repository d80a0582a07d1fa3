//! Fail-fast, explained: when a destination cannot be served, the outbound proxy answers quickly
//! with a 502/503 whose `l5d-proxy-error` header and body say why.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::apps;
use crate::support::*;

const WITHIN: Duration = Duration::from_secs(30);

/// One request on a new connection: (status, l5d-proxy-error, body, how long it took).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    host: &str,
) -> (u16, String, String, Duration) {
    let started = tokio::time::Instant::now();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri("/")
        .header("host", host)
        .body(http_body_util::Full::new(Bytes::from_static(b"body")))
        .expect("request");
    let rsp = send.send_request(req).await.expect("response");
    let status = rsp.status().as_u16();
    let error = rsp
        .headers()
        .get("l5d-proxy-error")
        .map(|v| v.to_str().expect("ascii header").to_string())
        .unwrap_or_default();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        error,
        String::from_utf8_lossy(&body).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoints_fail_fast_with_the_reason() {
    tokio::time::timeout(WITHIN, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca_dir(dir.path());
        // A port nobody listens on: bound, then closed.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr")
        };
        // A live inbound proxy whose identity is not the one discovery names.
        let app = apps::app().await;
        let impostor = inbound(&ca, "impostor", app.addr, &[]).await;
        let yaml = format!(
            "{}{}",
            destination("down.test:8080", closed, "backend"),
            destination(
                "spoofed.test:8080",
                impostor.inbound_addr().expect("inbound"),
                "backend"
            )
            .trim_start_matches("destinations:\n"),
        );
        let outbound = outbound(
            &ca,
            "web",
            dir.path(),
            &yaml,
            &["--failfast-timeout", "500ms", "--connect-timeout", "300ms"],
        )
        .await;
        let out = outbound.outbound_addr().expect("outbound");
        // The bound: a failed connection attempt, or the failfast timeout, plus slack for a
        // debug build on a busy machine.
        let bound = Duration::from_millis(500 + 300 + 1500);

        for (i, method) in ["GET", "POST", "GET", "GET", "POST", "GET"]
            .into_iter()
            .enumerate()
        {
            let (status, error, body, took) = request(out, method, "down.test:8080").await;
            eprintln!("down #{i} {method}: {status} in {took:?}: {error}");
            assert!(matches!(status, 502 | 503), "#{i}: {status} {error} {body}");
            assert!(took < bound, "#{i} took {took:?}");
            let lower = error.to_ascii_lowercase();
            assert!(
                lower.contains("connection refused")
                    || lower.contains("no endpoint")
                    || lower.contains("unavailable"),
                "#{i}: the header does not name the cause: {error:?}"
            );
            assert!(
                body.contains(error.as_str()),
                "#{i}: the body does not carry the header's text: {body:?} vs {error:?}"
            );
        }

        let (status, error, body, took) = request(out, "GET", "spoofed.test:8080").await;
        eprintln!("spoofed: {status} in {took:?}: {error}");
        assert!(matches!(status, 502 | 503), "{status} {error} {body}");
        assert!(took < bound, "took {took:?}");
        assert!(
            error.contains(&identity("backend")) || error.contains("identity"),
            "the header does not name the identity problem: {error:?}"
        );

        // Both failures are counted.
        let admin = outbound.admin_addr();
        eventually(
            "6 failed responses to down.test are counted",
            WITHIN,
            || async {
                metric(
                    admin,
                    "response_total",
                    &[
                        ("authority", "down.test:8080"),
                        ("classification", "failure"),
                    ],
                )
                .await
                    == 6.0
            },
        )
        .await;
    })
    .await
    .expect("the test took too long");
}
