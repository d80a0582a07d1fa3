//! Accepting connections and serving HTTP on them, with drain and bounded resources.

use std::future::Future;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mesh_core::BoxError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::runtime::Runtime;

/// Accepts connections until drain starts, serving each with `serve` in a tracked task.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    rt: Runtime,
    direction: &'static str,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            biased;
            _ = rt.drain.signaled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                rt.drain.spawn(serve(tcp, peer));
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
pub(crate) async fn http_auto<IO, S, B>(io: IO, svc: S, rt: &Runtime, direction: &'static str)
where
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
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
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
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        _ = rt.drain.signaled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, direction, "HTTP connection ended with an error");
        rt.metrics.conn_error(direction, http_error_reason(&*error));
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
