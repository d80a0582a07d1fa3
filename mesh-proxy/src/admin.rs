//! The admin server: `/metrics`, `/ready`, `/live` and `/shutdown`.
//!
//! - `GET /metrics`: every metric of the proxy, OpenMetrics text.
//! - `GET /ready`: 200 once the proxy holds a certificate and discovery has synced, and until it
//!   starts draining; 503 with the reason before and after.
//! - `GET /live`: 200 while the process serves.
//! - `POST /shutdown`: drain — stop accepting, finish in-flight requests up to the grace period,
//!   then exit 0. Only from loopback clients (the app or an operator on the host), so a job's
//!   sidecar can be told to finish when the job does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::discovery::Discover;
use crate::runtime::Runtime;

pub(crate) async fn serve(listener: TcpListener, rt: Runtime, discovery: Arc<dyn Discover>) {
    // The admin server outlives the drain signal: /ready must answer 503 while draining.
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let rt = rt.clone();
        let discovery = discovery.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let rt = rt.clone();
                let discovery = discovery.clone();
                async move { Ok::<_, Infallible>(handle(req, peer, &rt, &*discovery)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn text(status: u16, body: impl Into<String>) -> http::Response<Full<Bytes>> {
    let mut rsp = http::Response::new(Full::new(Bytes::from(body.into())));
    *rsp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

/// Why the proxy is not ready, if it is not.
pub(crate) fn not_ready(rt: &Runtime, discovery: &dyn Discover) -> Option<&'static str> {
    if rt.drain.is_draining() {
        Some("draining")
    } else if !rt.creds.is_ready() {
        Some("waiting for a certificate")
    } else if !discovery.is_synced() {
        Some("waiting for discovery")
    } else {
        None
    }
}

fn handle(
    req: http::Request<Incoming>,
    peer: SocketAddr,
    rt: &Runtime,
    discovery: &dyn Discover,
) -> http::Response<Full<Bytes>> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
            if let Some(until) = rt.creds.certified_until()
                && let Ok(d) = until.duration_since(std::time::UNIX_EPOCH)
            {
                rt.metrics.cert_expiry.set(d.as_secs() as i64);
            }
            rt.metrics
                .ready
                .set(i64::from(not_ready(rt, discovery).is_none()));
            let mut rsp = text(200, rt.metrics.encode());
            rsp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(mesh_core::metrics::CONTENT_TYPE),
            );
            rsp
        }
        ("GET", "/ready") => match not_ready(rt, discovery) {
            None => text(200, "ready\n"),
            Some(why) => text(503, format!("not ready: {why}\n")),
        },
        ("GET", "/live") => text(200, "live\n"),
        ("POST", "/shutdown") => {
            if !peer.ip().is_loopback() {
                return text(403, "shutdown is only accepted from loopback\n");
            }
            tracing::info!("shutdown requested through the admin server; draining");
            rt.drain.start();
            text(202, "shutting down\n")
        }
        (_, "/shutdown") => text(405, "use POST /shutdown\n"),
        _ => text(
            404,
            "not found: try /metrics, /ready, /live or POST /shutdown\n",
        ),
    }
}
