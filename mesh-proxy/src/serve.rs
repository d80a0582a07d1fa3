//! Accepting connections and serving HTTP on them, with drain and bounded resources.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mesh_core::BoxError;
use mesh_core::detect::{self, DecidedBy, Protocol};
use mesh_core::metrics::Labels;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::either::Either;

use crate::runtime::Runtime;

/// Accepts connections until drain starts, serving each with `serve` in a tracked task.
///
/// Every accepted connection is counted from accept to the end of its task in the `tcp_*`
/// families with `direction`, `peer="src"` and the listener's `target_addr` (Linkerd's server-side
/// transport labels), whatever becomes of it (a failed handshake, a malformed request), so
/// `tcp_open_connections{peer="src"}` shows leaks. Bytes are counted by the per-target sensors
/// further in.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    rt: Runtime,
    direction: &'static str,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut labels = Labels::new()
        .with("direction", direction)
        .with("peer", "src");
    if let Ok(local) = listener.local_addr() {
        labels = labels.with("target_addr", local.to_string());
    }
    let sensor = rt.metrics.tcp.sensor(&labels);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = rt.drain.signaled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                // Counts the connection open until the task ends (closed, failed or drained).
                let open = sensor.wrap(());
                let conn = serve(tcp, peer);
                rt.drain.spawn(async move {
                    conn.await;
                    drop(open);
                });
            }
            Err(error) => {
                // Out of file descriptors or similar: back off briefly, keep serving.
                tracing::warn!(%error, direction, "accept failed");
                rt.metrics.conn_error(direction, "accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves HTTP/1 (with upgrades) or HTTP/2 on `io` with `svc`, finishing in-flight requests
/// when drain starts.
///
/// `version` is the HTTP version when the connection already said it (ALPN, or the first bytes
/// detected earlier); then nothing is read ahead of the server. Otherwise the client has the
/// header read timeout to say which version it speaks (the HTTP/2 preface, or anything else for
/// HTTP/1): hyper's own version sniffing waits forever, so a client that stops in the middle of
/// the preface, or never speaks, would hold its connection (and a drain) for good. HTTP/1 then
/// bounds each request head by the same timeout, and an HTTP/2 connection must start a request
/// within it.
pub(crate) async fn http_auto<IO, S, B>(
    io: IO,
    svc: S,
    rt: &Runtime,
    direction: &'static str,
    version: Option<Protocol>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (http2, io) = match version {
        Some(known) => (known == Protocol::Http2, Either::Left(io)),
        None => match sniff(io, rt, direction).await {
            Some((http2, io)) => (http2, Either::Right(io)),
            None => return,
        },
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if http2 {
        builder = builder.http2_only();
    } else {
        builder = builder.http1_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(rt.config.header_read_timeout)
        .max_buf_size(rt.config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(rt.config.max_header_bytes as u32)
        .adaptive_window(true);
    // What the connection has served: a header read timeout after a finished request, with none
    // in flight, is a keep-alive connection left idle (hyper times the wait for every request
    // head), closed as any server closes idle connections, not a slow client.
    let activity = Arc::new(Activity::default());
    let counted = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            activity.served.fetch_add(1, Ordering::Relaxed);
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            let in_flight = InFlight(activity.clone());
            let rsp = hyper::service::Service::call(&svc, req);
            async move {
                let rsp = rsp.await;
                drop(in_flight);
                rsp
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), counted);
    tokio::pin!(conn);
    // An HTTP/2 client that never starts a request holds nothing for long (HTTP/1 heads are
    // bounded by hyper's header read timeout).
    let idle_start = tokio::time::sleep(rt.config.header_read_timeout);
    tokio::pin!(idle_start);
    let mut started = !http2;
    let result = loop {
        tokio::select! {
            res = conn.as_mut() => break res,
            _ = rt.drain.signaled() => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = idle_start.as_mut(), if !started => {
                started = true;
                if activity.served.load(Ordering::Relaxed) == 0 {
                    tracing::debug!(direction, "no HTTP/2 request in time; closing");
                    rt.metrics.conn_error(direction, "header_read_timeout");
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
            }
        }
    };
    if let Err(error) = result {
        let reason = http_error_reason(&*error);
        if reason == "header_read_timeout" && activity.is_idle() {
            tracing::debug!(direction, "idle keep-alive connection closed");
            return;
        }
        tracing::debug!(%error, direction, "HTTP connection ended with an error");
        rt.metrics.conn_error(direction, reason);
    }
}

/// Reads the first bytes (within the header read timeout) to tell HTTP/2's preface from
/// HTTP/1; `None` when the connection ended or timed out first (counted).
async fn sniff<IO>(
    io: IO,
    rt: &Runtime,
    direction: &'static str,
) -> Option<(bool, detect::PrefixedIo<IO>)>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = detect::Config::new()
        .with_timeout(rt.config.header_read_timeout)
        .with_capacity(detect::Config::MIN_CAPACITY);
    let detected = tokio::select! {
        d = detect::detect(io, &config) => d,
        _ = rt.drain.signaled() => return None,
    };
    let (detected, io) = match detected {
        Ok(d) => d,
        Err(error) => {
            tracing::debug!(%error, direction, "reading the first bytes failed");
            return None;
        }
    };
    match detected.decided_by() {
        DecidedBy::Timeout => {
            tracing::debug!(direction, "no HTTP request in time; closing");
            rt.metrics.conn_error(direction, "header_read_timeout");
            return None;
        }
        DecidedBy::Eof if io.prefix().is_empty() => return None,
        _ => {}
    }
    Some((*detected.protocol() == Protocol::Http2, io))
}

/// Requests a connection has served, and those still waiting for their response head.
#[derive(Debug, Default)]
struct Activity {
    served: AtomicU64,
    in_flight: AtomicU64,
}

impl Activity {
    fn is_idle(&self) -> bool {
        self.served.load(Ordering::Relaxed) > 0 && self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// One request in flight on a connection, until its response head (or its drop).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn http_error_reason(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return "header_too_large";
            }
            if h.is_parse() {
                return "malformed_http";
            }
            if h.is_timeout() {
                return "header_read_timeout";
            }
            if h.is_incomplete_message() {
                return "incomplete";
            }
        }
        cur = err.source();
    }
    "http"
}
