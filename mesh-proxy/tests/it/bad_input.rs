//! Bad input: malformed requests, oversized headers, slowloris clients, TLS garbage and a backend
//! that resets in the middle of a body. Each gets a clear answer (or a prompt close), is counted
//! in `proxy_errors_total`, and leaves the proxy serving others with every connection it accepted
//! closed again (`tcp_open_connections{peer="src"}` back where it was).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::apps;
use crate::support::*;

const WITHIN: Duration = Duration::from_secs(60);

async fn open_connections(admin: SocketAddr, direction: &str) -> f64 {
    metric(
        admin,
        "tcp_open_connections",
        &[("direction", direction), ("peer", "src")],
    )
    .await
}

async fn errors(admin: SocketAddr, direction: &str, reason: &str) -> f64 {
    metric(
        admin,
        "proxy_errors_total",
        &[("direction", direction), ("reason", reason)],
    )
    .await
}

/// Waits until the proxy at `admin` has `want` open `direction` connections.
async fn settles(admin: SocketAddr, direction: &str, want: f64) {
    let what = format!("{direction} tcp_open_connections{{peer=\"src\"}} back to {want}");
    eventually(&what, Duration::from_secs(10), || async {
        open_connections(admin, direction).await == want
    })
    .await;
}

async fn errors_reach(admin: SocketAddr, direction: &str, reason: &str, want: f64) {
    let what = format!("{want} {direction} {reason} errors counted");
    eventually(&what, Duration::from_secs(10), || async {
        errors(admin, direction, reason).await == want
    })
    .await;
}

/// A request through the chain still gets its answer.
async fn still_serves(out: SocketAddr) {
    let (status, body) = get(out, "/", &[("host", BACKEND)])
        .await
        .expect("a good request after bad input");
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_are_counted() {
    tokio::time::timeout(WITHIN, async {
        let app = apps::app().await;
        let chain = Chain::start(app.addr, &[], &[]).await;
        let (out, out_admin) = (chain.out(), chain.outbound.admin_addr());
        let (inb, in_admin) = (
            chain.inbound.inbound_addr().expect("inbound"),
            chain.inbound.admin_addr(),
        );
        still_serves(out).await;
        settles(out_admin, "outbound", 0.0).await;
        // The outbound proxy keeps its HTTP/2 connection to the inbound proxy.
        let in_base = open_connections(in_admin, "inbound").await;

        let garbage: [&[u8]; 5] = [
            b"GARBAGE\r\n\r\n",
            b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: backend.test:8080\r\nno colon here\r\n\r\n",
            b"GET /a b c HTTP/1.1\r\nHost: backend.test:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: backend.test:8080\r\nContent-Length: nope\r\n\r\n",
        ];
        for g in garbage {
            let rsp = raw_exchange(out, g, Duration::from_secs(5)).await;
            assert!(
                rsp.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{:?} got {rsp:?}",
                String::from_utf8_lossy(g)
            );
        }
        errors_reach(out_admin, "outbound", "malformed_http", 5.0).await;

        // Plaintext HTTP from an unmeshed client to the inbound proxy: detected as HTTP (the
        // request line is fine), then refused by the HTTP server.
        let rsp = raw_exchange(
            inb,
            b"GET / HTTP/1.1\r\nHost: backend.test:8080\r\nno colon here\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(rsp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{rsp:?}");
        errors_reach(in_admin, "inbound", "malformed_http", 1.0).await;

        still_serves(out).await;
        settles(out_admin, "outbound", 0.0).await;
        settles(in_admin, "inbound", in_base).await;
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    tokio::time::timeout(WITHIN, async {
        let app = apps::app().await;
        let chain = Chain::start(app.addr, &[], &[]).await;
        let (out, out_admin) = (chain.out(), chain.outbound.admin_addr());
        let big = "a".repeat(100 * 1024);

        // HTTP/1.1: the head outgrows the 64 KiB the proxy reads for it.
        let req = format!("GET / HTTP/1.1\r\nHost: {BACKEND}\r\nX-Big: {big}\r\n\r\n");
        let rsp = raw_exchange(out, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(
            rsp.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{rsp:?}"
        );
        errors_reach(out_admin, "outbound", "header_too_large", 1.0).await;

        // Many small headers add up the same.
        let many: String = (0..3000).map(|i| format!("X-H{i}: {i:020}\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: {BACKEND}\r\n{many}\r\n");
        let rsp = raw_exchange(out, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(rsp.starts_with("HTTP/1.1 431 "), "{rsp:?}");

        // HTTP/2: a header list over SETTINGS_MAX_HEADER_LIST_SIZE gets a 431 on its stream
        // and the connection goes on (hyper's client; curl gives up on the REFUSED_STREAM that
        // follows the 431) ...
        let tcp = TcpStream::connect(out).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let mut req = http::Request::get(format!("http://{BACKEND}/"));
        for i in 0..2000 {
            req = req.header(format!("x-h{i}"), format!("{i:020}"));
        }
        let rsp = send
            .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
            .await
            .expect("a response");
        assert_eq!(rsp.status(), 431);
        drop(rsp);
        let rsp = send
            .send_request(
                http::Request::get(format!("http://{BACKEND}/"))
                    .body(Empty::<Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("the connection goes on");
        assert_eq!(rsp.status(), 200);
        rsp.into_body().collect().await.expect("the body");
        drop(send);
        let url = format!("http://{out}/");
        // ... while one huge header, whose block outgrows what HTTP/2 may buffer for it across
        // CONTINUATION frames, is a connection error (GOAWAY): refused, not a hang.
        let header = format!("X-Big: {big}");
        let h2 = tokio::task::spawn_blocking(move || {
            run(
                "curl",
                &[
                    "-sS",
                    "--http2-prior-knowledge",
                    "-o",
                    "/dev/null",
                    "-H",
                    &format!("Host: {BACKEND}"),
                    "-H",
                    &header,
                    &url,
                ],
            )
        })
        .await
        .expect("curl");
        assert!(
            matches!(h2.status.code(), Some(c) if c != 0 && c != 124),
            "{:?} {}",
            h2.status,
            String::from_utf8_lossy(&h2.stderr)
        );

        still_serves(out).await;
        settles(out_admin, "outbound", 0.0).await;
    })
    .await
    .expect("the test took too long");
}

/// Sends `head` and then one more header line every 100 ms, never finishing; returns how long
/// the server let it go on.
async fn slowloris(addr: SocketAddr, head: &[u8]) -> Duration {
    let started = tokio::time::Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = tcp.split();
    let _ = w.write_all(head).await;
    let drip = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for i in 0u64.. {
            tick.tick().await;
            if w.write_all(format!("X-Drip-{i}: y\r\n").as_bytes())
                .await
                .is_err()
                || i == 100
            {
                break;
            }
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = drip => {}
        _ = closed => {}
    }
    started.elapsed()
}

/// Sends `bytes` and then nothing; returns how long the server kept the connection (at most
/// 10 s: then it gives up waiting).
async fn stall(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let started = tokio::time::Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_cut_off_after_the_header_read_timeout() {
    tokio::time::timeout(WITHIN, async {
        let app = apps::app().await;
        let timeout = ["--header-read-timeout", "500ms"];
        let chain = Chain::start(app.addr, &timeout, &timeout).await;
        let (out, out_admin) = (chain.out(), chain.outbound.admin_addr());
        let (inb, in_admin) = (
            chain.inbound.inbound_addr().expect("inbound"),
            chain.inbound.admin_addr(),
        );
        still_serves(out).await;
        settles(out_admin, "outbound", 0.0).await;
        let in_base = open_connections(in_admin, "inbound").await;
        let bound = Duration::from_millis(3000);

        // Ten slow clients at once, while a normal client is served.
        let head = format!("GET / HTTP/1.1\r\nHost: {BACKEND}\r\n");
        let slow = futures_util::future::join_all((0..10).map(|_| slowloris(out, head.as_bytes())));
        let (took, ()) = tokio::join!(slow, still_serves(out));
        for t in took {
            assert!(
                t >= Duration::from_millis(400) && t < bound,
                "cut off after {t:?}"
            );
        }
        errors_reach(out_admin, "outbound", "header_read_timeout", 10.0).await;

        // A client that stops in the middle of the HTTP/2 preface, and one that never speaks.
        for bytes in [&b"PRI * HTTP/2.0\r\n"[..], &b"GET / HT"[..], &b""[..]] {
            let t = stall(out, bytes).await;
            assert!(
                t < bound,
                "{:?}: kept {t:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        errors_reach(out_admin, "outbound", "header_read_timeout", 13.0).await;

        // A keep-alive client that is served and then goes quiet is not a slow client: its
        // idle connection is closed (as servers close idle connections), without an error.
        let mut tcp = TcpStream::connect(out).await.expect("connect");
        let req = format!("GET / HTTP/1.1\r\nHost: {BACKEND}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with("ok") {
            let n = tcp.read(&mut buf).await.expect("the response");
            assert!(
                n > 0,
                "closed before the response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        let idle = tokio::time::Instant::now();
        let rest = tokio::time::timeout(bound, tcp.read(&mut buf)).await;
        assert!(
            matches!(rest, Ok(Ok(0))),
            "the idle connection was kept: {rest:?}"
        );
        assert!(
            idle.elapsed() >= Duration::from_millis(400),
            "{:?}",
            idle.elapsed()
        );
        settles(out_admin, "outbound", 0.0).await;
        assert_eq!(
            errors(out_admin, "outbound", "header_read_timeout").await,
            13.0
        );

        // The same on the inbound proxy's plaintext path (an unmeshed client).
        let t = slowloris(inb, head.as_bytes()).await;
        assert!(t < bound, "inbound: cut off after {t:?}");
        errors_reach(in_admin, "inbound", "header_read_timeout", 1.0).await;

        still_serves(out).await;
        settles(out_admin, "outbound", 0.0).await;
        settles(in_admin, "inbound", in_base).await;
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_garbage_fails_the_handshake_and_is_counted() {
    tokio::time::timeout(WITHIN, async {
        let app = apps::app().await;
        let chain = Chain::start(app.addr, &["--detect-timeout", "1s"], &[]).await;
        let out = chain.out();
        let (inb, in_admin) = (
            chain.inbound.inbound_addr().expect("inbound"),
            chain.inbound.admin_addr(),
        );
        still_serves(out).await;
        let in_base = open_connections(in_admin, "inbound").await;

        // A TLS handshake record header, then junk.
        let mut junk = b"\x16\x03\x01\x00\x40".to_vec();
        junk.extend((0..64u8).map(|i| i.wrapping_mul(37)));
        raw_exchange(inb, &junk, Duration::from_secs(5)).await;
        // A ClientHello cut short: the handshake times out (the detect timeout bounds it).
        let t = stall(inb, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").await;
        assert!(t < Duration::from_secs(4), "kept {t:?}");
        // Ten junk clients at once while a meshed client is served.
        let junk_clients = futures_util::future::join_all(
            (0..10).map(|_| raw_exchange(inb, &junk, Duration::from_secs(5))),
        );
        let (_, ()) = tokio::join!(junk_clients, still_serves(out));
        errors_reach(in_admin, "inbound", "tls_handshake", 12.0).await;

        still_serves(out).await;
        settles(in_admin, "inbound", in_base).await;
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reset_mid_body_fails_the_response_not_the_proxy() {
    tokio::time::timeout(WITHIN, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca_dir(dir.path());
        let app = apps::app().await;
        let good = inbound(&ca, "backend", app.addr, &[]).await;
        let resetting = apps::resetting().await;
        let bad = inbound(&ca, "reset", resetting, &[]).await;
        let destinations = [
            destination(BACKEND, good.inbound_addr().expect("inbound"), "backend"),
            destination(
                "reset.test:8080",
                bad.inbound_addr().expect("inbound"),
                "reset",
            ),
        ];
        let outbound = outbound(&ca, "web", dir.path(), &destinations, &[]).await;
        let (out, out_admin) = (
            outbound.outbound_addr().expect("outbound"),
            outbound.admin_addr(),
        );

        // Each request ends in one of three ways, depending on where the reset overtakes the
        // response: a truncated 200 and an error (the usual case), a 502 whose l5d-proxy-error
        // names the peer that failed (the reset reached a proxy before the response head), or
        // a connection closed without a response (the head was still unwritten when the body
        // failed). Never a hang, never a whole body.
        for round in 0..3 {
            // hyper.
            let tcp = TcpStream::connect(out).await.expect("connect");
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let req = http::Request::get("/")
                .header("host", "reset.test:8080")
                .body(http_body_util::Empty::<Bytes>::new())
                .expect("request");
            match send.send_request(req).await {
                Ok(rsp) => {
                    let status = rsp.status();
                    let error = rsp.headers().get("l5d-proxy-error").cloned();
                    let body = rsp.into_body().collect().await;
                    match (status.as_u16(), body, error) {
                        (200, Err(_), _) => {}
                        (502, Ok(b), Some(error)) => {
                            let error = error.to_str().expect("ascii").to_string();
                            eprintln!("round {round} hyper: 502: {error}");
                            assert!(
                                error.starts_with("the request to the ") && error.contains(':'),
                                "round {round}: the 502 does not say who failed: {error:?}"
                            );
                            assert_eq!(b.to_bytes(), format!("{error}\n").as_bytes());
                        }
                        (status, body, error) => panic!(
                            "round {round}: {status} {error:?}: {:?}",
                            body.map(|b| b.to_bytes().len())
                        ),
                    }
                }
                Err(e) => eprintln!("round {round} hyper: closed without a response: {e}"),
            }

            // curl, HTTP/1.1 and HTTP/2: a truncated body and an error exit, or (if the reset
            // beat the response head to the inbound proxy) a 502 naming the cause; never a hang,
            // never a whole body.
            for version in ["--http1.1", "--http2-prior-knowledge"] {
                let url = format!("http://{out}/");
                let run = tokio::task::spawn_blocking(move || {
                    run(
                        "curl",
                        &[
                            "-sS",
                            version,
                            "-o",
                            "/dev/null",
                            "-D",
                            "-",
                            "-w",
                            "%{http_code} %{size_download}",
                            "-H",
                            "Host: reset.test:8080",
                            &url,
                        ],
                    )
                })
                .await
                .expect("curl");
                let stdout = String::from_utf8_lossy(&run.stdout).to_ascii_lowercase();
                let stderr = String::from_utf8_lossy(&run.stderr);
                let code = run.status.code();
                let (status, size) = stdout
                    .lines()
                    .last()
                    .and_then(|l| l.split_once(' '))
                    .map(|(c, s)| (c.to_string(), s.parse::<u64>().unwrap_or(0)))
                    .unwrap_or_default();
                eprintln!("round {round} {version}: exit {code:?}, {status}, {size} bytes");
                let truncated = matches!(code, Some(c) if c != 0 && c != 124)
                    && status == "200"
                    && size < 1 << 20;
                let explained = code == Some(0)
                    && status == "502"
                    && stdout.contains("\r\nl5d-proxy-error: the request to the ");
                // curl's "empty reply from server" (HTTP/1.1), or a stream reset before any
                // response (HTTP/2).
                let no_response = matches!(code, Some(52 | 92)) && status == "000";
                assert!(
                    truncated || explained || no_response,
                    "round {round} {version}: exit {code:?} (124: a hang): {stdout} {stderr}"
                );
            }

            still_serves(out).await;
        }
        settles(out_admin, "outbound", 0.0).await;
    })
    .await
    .expect("the test took too long");
}
