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
        // A port that accepts (the kernel completes the handshake into the backlog) but whose
        // owner never reads.
        let stuck_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let destinations = [
            destination("down.test:8080", closed, "backend"),
            destination(
                "stuck.test:8080",
                stuck_listener.local_addr().expect("addr"),
                "backend",
            ),
            destination(
                "spoofed.test:8080",
                impostor.inbound_addr().expect("inbound"),
                "backend",
            ),
        ];
        let outbound = outbound(
            &ca,
            "web",
            dir.path(),
            &destinations,
            &["--failfast-timeout", "500ms", "--connect-timeout", "300ms"],
        )
        .await;
        let out = outbound.outbound_addr().expect("outbound");
        // The bound: a refused connection, the connect timeout (300 ms) plus the TLS handshake
        // timeout (at least 1 s), or the failfast timeout (500 ms), whichever ends the wait,
        // plus slack for a debug build on a busy machine.
        let bound = Duration::from_millis(300 + 1000 + 1200);

        // GETs are retried (within the budget), POSTs are not: both fail fast, every time.
        let methods = ["GET", "POST"].repeat(6);
        for (i, method) in methods.iter().copied().enumerate() {
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

        // An endpoint that accepts connections but never completes a TLS handshake (a hung
        // process, a full accept queue): requests at once, each bounded on its own rather than
        // queued behind each other's connection attempts.
        let started = tokio::time::Instant::now();
        let all =
            futures_util::future::join_all((0..5).map(|_| request(out, "POST", "stuck.test:8080")))
                .await;
        for (i, (status, error, body, took)) in all.into_iter().enumerate() {
            eprintln!("stuck #{i}: {status} in {took:?}: {error}");
            assert!(matches!(status, 502..=504), "#{i}: {status} {error} {body}");
            assert!(took < bound, "#{i} took {took:?}");
            assert!(!error.is_empty(), "#{i}: no l5d-proxy-error");
        }
        eprintln!("stuck: all answered in {:?}", started.elapsed());

        // The failures are counted.
        let admin = outbound.admin_addr();
        eventually(
            "every failed response to down.test is counted",
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
                    == methods.len() as f64
            },
        )
        .await;
    })
    .await
    .expect("the test took too long");
}

/// A destination with one live endpoint and one that refuses connections: after a refused
/// connection the dead endpoint backs off (not ready), so requests go to the live one instead
/// of every other request failing; with no live endpoint, requests fail fast with a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_backs_off_and_the_live_one_serves() {
    tokio::time::timeout(WITHIN, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca_dir(dir.path());
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr")
        };
        let app = apps::app().await;
        let live = inbound(&ca, "backend", app.addr, &[]).await;
        let id = identity("backend");
        let destinations = [serde_json::json!({
            "authority": BACKEND,
            "endpoints": [
                { "addr": live.inbound_addr().expect("inbound").to_string(), "identity": id },
                { "addr": closed.to_string(), "identity": id },
            ],
        })];
        let outbound = outbound(
            &ca,
            "web",
            dir.path(),
            &destinations,
            &["--failfast-timeout", "500ms"],
        )
        .await;
        let out = outbound.outbound_addr().expect("outbound");

        // Without backoff about half of these fail (the dead endpoint refuses at once, which
        // even makes it look fast to peak-EWMA). With it, only the attempts that find the
        // backoff over fail: at most one per 100-500 ms.
        let started = tokio::time::Instant::now();
        let mut failed = Vec::new();
        let n = 60;
        for i in 0..n {
            match get(out, "/", &[("host", BACKEND)]).await {
                Ok((200, _)) => {}
                other => failed.push((i, format!("{other:?}"))),
            }
        }
        let took = started.elapsed();
        eprintln!("{} of {n} failed in {took:?}: {failed:?}", failed.len());
        // One failure per backoff window at most, plus the first attempt.
        let windows = (took.as_millis() / 100) as usize + 1;
        assert!(
            failed.len() <= windows.min(n / 4),
            "{} of {n} requests failed in {took:?}: {failed:?}",
            failed.len()
        );
    })
    .await
    .expect("the test took too long");
}
