//! Opaque TCP over a per-upstream listener: app -> outbound `--upstream` listener -> mTLS
//! (ALPN mesh.opaque/1) -> inbound proxy -> a server that speaks first, byte for byte.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const WITHIN: Duration = Duration::from_secs(30);
const BANNER: &[u8] = b"+OK mesh test server ready\r\n";

/// The client sends nothing until it has the banner (a server-speaks-first exchange, as
/// Redis' and PostgreSQL's servers do), then every byte it sends comes back.
async fn exchange(upstream: SocketAddr) {
    let mut tcp = TcpStream::connect(upstream).await.expect("connect");
    let mut banner = vec![0u8; BANNER.len()];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut banner))
        .await
        .expect("the banner did not arrive: is something waiting for the client to speak?")
        .expect("read the banner");
    assert_eq!(banner, BANNER);
    for len in [1usize, 3, 16 * 1024 + 7, 2 << 20] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let (mut r, mut w) = tcp.split();
        let write = async { w.write_all(&msg).await.expect("write") };
        let mut back = vec![0u8; len];
        let read = async { r.read_exact(&mut back).await.expect("read the echo") };
        tokio::join!(write, read);
        assert!(back == msg, "{len} bytes came back different");
    }
    tcp.shutdown().await.expect("shutdown");
    let mut tail = Vec::new();
    tcp.read_to_end(&mut tail).await.expect("read to the end");
    assert!(tail.is_empty(), "{} unexpected bytes", tail.len());
}

async fn opaque_chain(inbound_extra: impl FnOnce(SocketAddr) -> Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir(dir.path());
    let app = banner_echo(BANNER).await;
    let extra = inbound_extra(app);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let inbound = inbound(&ca, "db", app, &extra).await;
    let destinations = [serde_json::json!({
        "authority": "db.test:6379",
        "protocol": "opaque",
        "endpoints": [{
            "addr": inbound.inbound_addr().expect("inbound").to_string(),
            "identity": identity("db"),
        }],
    })];
    let outbound = outbound(
        &ca,
        "web",
        dir.path(),
        &destinations,
        &["--upstream", "db.test:6379=127.0.0.1:0"],
    )
    .await;
    let upstream = outbound.upstream_addrs()[0];

    exchange(upstream).await;
    // Twice, and two at once: nothing is left over from one connection for the next.
    tokio::join!(exchange(upstream), exchange(upstream));

    // The inbound proxy saw the outbound proxy's verified identity on every connection.
    let web = identity("web");
    let admin = inbound.admin_addr();
    eventually(
        "the inbound counts 3 closed mTLS connections from web",
        WITHIN,
        || async {
            metric(
                admin,
                "tcp_close_total",
                &[("direction", "inbound"), ("client_id", &web)],
            )
            .await
                == 3.0
        },
    )
    .await;
    let out_admin = outbound.admin_addr();
    let errors = metric(out_admin, "proxy_errors_total", &[]).await
        + metric(admin, "proxy_errors_total", &[]).await;
    assert_eq!(errors, 0.0, "connection errors were counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_over_a_per_upstream_listener() {
    // The app's port is not a known server-speaks-first port: the inbound proxy detects the
    // outbound proxy's TLS ClientHello at once, so the banner is not delayed either.
    tokio::time::timeout(WITHIN, opaque_chain(|_| Vec::new()))
        .await
        .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_to_a_server_speaks_first_port() {
    // The app's port is configured opaque (as 6379 or 5432 are by default): the inbound proxy
    // must not detect HTTP there, but must still terminate the meshed peer's mTLS.
    tokio::time::timeout(
        WITHIN,
        opaque_chain(|app| vec!["--opaque-ports".into(), app.port().to_string()]),
    )
    .await
    .expect("the test took too long");
}
