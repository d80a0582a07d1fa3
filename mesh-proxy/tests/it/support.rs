//! A mesh pair and a backend on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_proxy::{Args, Proxy};
use mesh_tls::CertificateAuthority;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

pub const SUFFIX: &str = "serviceaccount.identity.mesh.cluster.local";

pub fn identity(sa: &str) -> String {
    format!("{sa}.test.{SUFFIX}")
}

/// A backend answering `method path version client-id` and echoing POST bodies.
pub async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(echo);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn echo(req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let head = format!(
        "{} {} {:?} client={} host={}\n",
        req.method(),
        req.uri().path(),
        req.version(),
        req.headers()
            .get("l5d-client-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        req.headers()
            .get("host")
            .and_then(|v| v.to_str().ok())
            .or(req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("-"),
    );
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut rsp = http::Response::new(Full::new(Bytes::from(format!(
        "{head}{}",
        String::from_utf8_lossy(&body)
    ))));
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse().ok()) {
        *rsp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    }
    Ok(rsp)
}

/// A CA directory shared by the proxies of a test.
pub fn ca_dir(dir: &Path) -> std::path::PathBuf {
    let ca = dir.join("ca");
    CertificateAuthority::builder()
        .generate()
        .expect("ca")
        .save(&ca)
        .expect("save");
    ca
}

/// An inbound proxy for `sa` in front of `app`.
pub async fn inbound(ca: &Path, sa: &str, app: SocketAddr, extra: &[&str]) -> Proxy {
    let mut args = vec![
        "mesh-proxy".to_string(),
        "--ca-dir".into(),
        ca.display().to_string(),
        "--identity".into(),
        identity(sa),
        "--inbound-listen".into(),
        "127.0.0.1:0".into(),
        "--inbound-forward".into(),
        app.to_string(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proxy = Proxy::start(Args::parse_from(args).validate().expect("config"))
        .await
        .expect("start inbound");
    wait_ready(proxy.admin_addr()).await;
    proxy
}

/// An outbound proxy for `sa` with `destinations` (see [`destination`]) in its static file.
pub async fn outbound(
    ca: &Path,
    sa: &str,
    dir: &Path,
    destinations: &[serde_json::Value],
    extra: &[&str],
) -> Proxy {
    let file = dir.join(format!("{sa}-destinations.json"));
    let text = serde_json::json!({ "destinations": destinations }).to_string();
    std::fs::write(&file, text).expect("write destinations");
    let mut args = vec![
        "mesh-proxy".to_string(),
        "--ca-dir".into(),
        ca.display().to_string(),
        "--identity".into(),
        identity(sa),
        "--outbound-listen".into(),
        "127.0.0.1:0".into(),
        "--destinations".into(),
        file.display().to_string(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proxy = Proxy::start(Args::parse_from(args).validate().expect("config"))
        .await
        .expect("start outbound");
    wait_ready(proxy.admin_addr()).await;
    proxy
}

/// Polls `/ready` until 200 (at most 10 s).
pub async fn wait_ready(admin: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, _)) = get(admin, "/ready", &[]).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxy never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 GET with hyper; returns (status, body).
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), mesh_core::BoxError> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", addr.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = send
        .send_request(req.body(http_body_util::Empty::<Bytes>::new())?)
        .await?;
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One destination of the static file, served by one endpoint with `sa`'s identity.
pub fn destination(authority: &str, addr: SocketAddr, sa: &str) -> serde_json::Value {
    serde_json::json!({
        "authority": authority,
        "endpoints": [{ "addr": addr.to_string(), "identity": identity(sa) }],
    })
}

/// Runs a command with a hard time bound (coreutils `timeout`) and returns its output.
pub fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .arg("30")
        .arg(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

/// The samples of metric `name` (OpenMetrics text from the admin server) whose labels include
/// every pair of `labels`, added up; 0 when there are none.
pub async fn metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, text) = get(admin, "/metrics", &[]).await.expect("scrape /metrics");
    assert_eq!(status, 200, "{text}");
    metric_in(&text, name, labels)
}

/// Like [`metric`], on text already scraped.
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(s) => s,
            None => continue,
        };
        let (metric, rest) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let found: Vec<(&str, &str)> = rest
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k.trim_matches(','), v.trim_end_matches('"')))
            .collect();
        if labels.iter().all(|want| found.contains(want)) {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `bytes` on a new connection to `addr`, then reads until the peer closes (or `within`
/// passes: then panics). Returns what was read, lossily as text.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A server may answer and close before it has read everything (a 431, say).
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("{addr} did not close the connection within {within:?}"));
    String::from_utf8_lossy(&out).into_owned()
}

/// The authority the outbound proxy of a [`Chain`] knows.
pub const BACKEND: &str = "backend.test:8080";

/// An outbound proxy ("web") that sends [`BACKEND`] over mTLS to an inbound proxy ("backend")
/// in front of an app.
#[derive(Debug)]
pub struct Chain {
    /// Holds the CA and the destinations file.
    pub dir: tempfile::TempDir,
    /// The inbound proxy in front of the app.
    pub inbound: Proxy,
    /// The outbound proxy.
    pub outbound: Proxy,
}

impl Chain {
    /// Starts the two proxies, with extra flags for each.
    pub async fn start(app: SocketAddr, inbound_extra: &[&str], outbound_extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca_dir(dir.path());
        let inbound = inbound(&ca, "backend", app, inbound_extra).await;
        let dst = destination(BACKEND, inbound.inbound_addr().expect("inbound"), "backend");
        let outbound = outbound(&ca, "web", dir.path(), &[dst], outbound_extra).await;
        Self {
            dir,
            inbound,
            outbound,
        }
    }

    /// The outbound proxy's authority-routed listener.
    pub fn out(&self) -> SocketAddr {
        self.outbound.outbound_addr().expect("outbound listener")
    }
}

/// A server that speaks first: on every connection it sends `banner`, then echoes.
pub async fn banner_echo(banner: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if tcp.write_all(banner).await.is_err() {
                    return;
                }
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}
