//! `mesh dashboard`: where the control plane's web dashboard is, a browser opened on it, and,
//! with `--address`, the dashboard served on another address through a small forwarding
//! server.
//!
//! The dashboard itself is served by the control plane, on the loopback address of its API
//! (`<state-dir>/api.addr`); this command finds it, checks that it answers, and prints its URL.
//! Serving it anywhere else is an explicit choice: `--address` must be a loopback address
//! unless `--allow-external` says otherwise, since whoever reaches the dashboard sees every
//! workload's metrics and live requests. The forwarder passes on `GET` and `HEAD` only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_viz::metrics::api;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// `mesh dashboard`.
#[derive(Parser, Debug)]
pub(crate) struct DashboardArgs {
    /// Also serve the dashboard on this address (e.g. 127.0.0.1:50750), forwarding to the
    /// control plane, until Ctrl-C.
    #[arg(long)]
    address: Option<SocketAddr>,
    /// Allow --address to be reachable from other machines: whoever reaches it sees every
    /// workload's metrics and live requests.
    #[arg(long)]
    allow_external: bool,
    /// Print the URL without opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// The control plane's state directory.
    #[arg(long, env = "MESH_STATE_DIR", default_value_os_t = crate::local::default_state_dir())]
    state_dir: PathBuf,
}

/// Refuses a non-loopback `--address` without `--allow-external`.
pub(crate) fn check_address(addr: SocketAddr, allow_external: bool) -> anyhow::Result<()> {
    if addr.ip().is_loopback() || allow_external {
        return Ok(());
    }
    bail!(
        "refusing to serve the dashboard on {addr}, which is not a loopback address: anyone who \
         can reach it would see every workload's metrics and live requests. Pass \
         --allow-external to do it anyway, or use a loopback address such as 127.0.0.1:{}",
        addr.port()
    )
}

/// The URL a browser on this machine opens for a server bound to `addr`.
fn url_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, addr.port()))
}

/// Runs `mesh dashboard`.
pub(crate) async fn dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.address {
        check_address(addr, args.allow_external)?;
    }
    let upstream = api::read_addr(&args.state_dir).with_context(|| {
        format!(
            "no control plane API recorded in {}: start the control plane with `mesh control` \
             or `mesh demo` (or pass --state-dir)",
            args.state_dir.display()
        )
    })?;
    probe(upstream).await?;
    let Some(addr) = args.address else {
        let url = url_of(upstream);
        println!("mesh dashboard: {url}");
        open_browser(&url, args.no_browser);
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (is the port taken?)"))?;
    let local = listener.local_addr()?;
    let url = url_of(local);
    println!(
        "mesh dashboard: {url} (forwarding to the control plane's {}; Ctrl-C stops)",
        url_of(upstream)
    );
    if !local.ip().is_loopback() {
        eprintln!(
            "mesh dashboard: warning: serving on {local}, reachable from other machines \
             (--allow-external)"
        );
    }
    open_browser(&url, args.no_browser);
    forward(listener, upstream, mesh_core::signal::shutdown()).await;
    Ok(())
}

/// Checks that the control plane at `upstream` serves the dashboard.
async fn probe(upstream: SocketAddr) -> anyhow::Result<()> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::get(format!("http://{upstream}/api/health"))
        .header(header::HOST, upstream.to_string())
        .body(Empty::new())?;
    let rsp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 5s"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "the control plane's API at {upstream} does not answer: is `mesh control` (or \
                 `mesh demo`) still running?"
            )
        })?;
    if rsp.status() == StatusCode::NOT_FOUND {
        bail!(
            "the control plane at {upstream} serves no dashboard: it is older than this `mesh`; \
             restart it with this version"
        );
    }
    Ok(())
}

/// Opens `url` in a browser when there is a display to show one on; never fails.
fn open_browser(url: &str, disabled: bool) {
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if disabled || !has_display {
        return;
    }
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        // Reap it whenever it ends, without waiting here.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("mesh dashboard: could not open a browser ({e}); open {url} yourself"),
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut rsp = Response::new(Full::new(Bytes::from(msg)).map_err(|n| match n {}).boxed());
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

/// Forwards one request to the control plane, streaming the answer back (tap streams too).
async fn relay(
    client: Client<HttpConnector, Incoming>,
    upstream: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut rsp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard is read-only: GET and HEAD only\n".into(),
        );
        rsp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(rsp);
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri = match format!("http://{upstream}{path}").parse() {
        Ok(uri) => uri,
        Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("bad path: {e}\n"))),
    };
    *req.uri_mut() = uri;
    // The control plane answers only requests addressed to it (not to a name that could be
    // rebound); this server is the one the user consented to.
    if let Ok(host) = header::HeaderValue::from_str(&upstream.to_string()) {
        req.headers_mut().insert(header::HOST, host);
    }
    Ok(match client.request(req).await {
        Ok(rsp) => rsp.map(|b| b.boxed()),
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("the control plane at {upstream} did not answer: {e}; is it still running?\n"),
        ),
    })
}

/// Serves the forwarder on `listener` until `shutdown` completes.
pub(crate) async fn forward(
    listener: TcpListener,
    upstream: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("mesh dashboard: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let client = client.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        relay(client.clone(), upstream, req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_addresses_need_consent() {
        for ok in ["127.0.0.1:9000", "[::1]:9000", "127.0.0.2:1"] {
            assert!(check_address(ok.parse().unwrap(), false).is_ok(), "{ok}");
        }
        for external in ["0.0.0.0:9000", "192.168.1.10:9000", "[::]:9000"] {
            let addr: SocketAddr = external.parse().unwrap();
            let err = check_address(addr, false).unwrap_err().to_string();
            assert!(err.contains("--allow-external"), "{err}");
            assert!(err.contains("not a loopback address"), "{err}");
            assert!(check_address(addr, true).is_ok());
        }
        assert_eq!(
            url_of("0.0.0.0:80".parse().unwrap()),
            "http://127.0.0.1:80/"
        );
        assert_eq!(url_of("[::1]:80".parse().unwrap()), "http://[::1]:80/");
    }

    #[tokio::test]
    async fn the_forwarder_rewrites_the_host_and_passes_only_reads() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // An upstream that answers with the Host and path it was asked for.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = upstream.local_addr().unwrap();
        let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
            let host = req.headers()[header::HOST]
                .to_str()
                .unwrap_or("")
                .to_string();
            format!("{host} {}", req.uri())
        });
        tokio::spawn(async move { axum::serve(upstream, app).await });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(forward(front, up, async {
            let _ = stopped.await;
        }));

        let ask = |method: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(front_addr).await.unwrap();
            let req = format!(
                "{method} /namespaces/x?fragment=graph HTTP/1.1\r\nHost: dashboard.example\r\n\
                 Connection: close\r\nContent-Length: 0\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let got = ask("GET").await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(
            got.contains(&format!("{up} /namespaces/x?fragment=graph")),
            "{got}"
        );
        let got = ask("POST").await;
        assert!(got.starts_with("HTTP/1.1 405"), "{got}");
        assert!(got.contains("read-only"), "{got}");

        let _ = stop.send(());
        server.await.unwrap();
    }
}
