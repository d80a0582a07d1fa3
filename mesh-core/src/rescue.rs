//! Turning errors into responses that say what went wrong.
//!
//! A request that fails inside the mesh (a timeout, no ready endpoint, a refused connection)
//! must still get an answer, and the answer must name the cause: [`RescueLayer`] is the one
//! place that maps errors to responses, after every layer that can fail.
//!
//! | error | HTTP | gRPC (HTTP 200, trailers-only) |
//! |---|---|---|
//! | timeout ([`ResponseTimeout`](crate::timeout::ResponseTimeout), tower's `Elapsed`) | 504 | `DEADLINE_EXCEEDED` (4) |
//! | [`Unavailable`](crate::error::Unavailable) (fail-fast: no endpoints, all ejected, queue full, unknown destination) | 503 | `UNAVAILABLE` (14) |
//! | refused, reset, anything else | 502 | `UNAVAILABLE` (14) |
//!
//! Every synthesized response carries an [`L5D_PROXY_ERROR`] header with the error's message
//! (as Linkerd's proxies do), and HTTP ones carry it as a `text/plain` body too.
//!
//! ```
//! use mesh_core::error::{Reason, Unavailable};
//! use mesh_core::rescue::{L5D_PROXY_ERROR, RescueLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let failing = service_fn(|_req: http::Request<()>| async {
//!     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(
//!         Unavailable::new("web.emojivoto:8080", Reason::NoEndpoints),
//!     )
//! });
//! let rsp = RescueLayer::new().layer(failing).oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(rsp.status(), 503);
//! assert!(rsp.headers()[L5D_PROXY_ERROR].to_str().unwrap().starts_with("web.emojivoto:8080: no endpoints"));
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::classify::{ErrorReason, error_reason};

/// The header naming why the mesh answered instead of the application.
pub const L5D_PROXY_ERROR: &str = "l5d-proxy-error";

/// The body of a rescued response: the inner body, or the error text.
pub type RescueBody<B> = Either<B, Full<Bytes>>;

/// Maps a service's errors to responses. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct RescueLayer(());

impl RescueLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self(())
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue { inner }
    }
}

/// Answers errors of the inner service with responses. See [`RescueLayer`].
#[derive(Clone, Debug)]
pub struct Rescue<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for Rescue<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<RescueBody<RB>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A readiness error is a per-request error too: report it on the next call.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e.into(), "inner service failed to become ready");
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/grpc"));
        ResponseFuture {
            inner: self.inner.call(req),
            grpc,
        }
    }
}

pin_project! {
    /// Maps the inner future's error to a response.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        grpc: bool,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<RescueBody<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(Ok(match ready!(this.inner.poll(cx)) {
            Ok(rsp) => rsp.map(Either::Left),
            Err(e) => error_response(&*e.into(), *this.grpc),
        }))
    }
}

/// The response the mesh gives for `error`.
pub fn error_response<B>(
    error: &(dyn std::error::Error + 'static),
    grpc: bool,
) -> http::Response<Either<B, Full<Bytes>>> {
    let reason = error_reason(error);
    let message = error.to_string();
    tracing::debug!(%message, %reason, "answering with an error response");
    let header = header_value(&message);
    let mut rsp = if grpc {
        let code = match reason {
            ErrorReason::Timeout => 4,
            _ => 14,
        };
        let mut rsp = http::Response::new(Either::Right(Full::new(Bytes::new())));
        let h = rsp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from(code));
        h.insert("grpc-message", header.clone());
        rsp
    } else {
        let status = match reason {
            ErrorReason::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorReason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        let mut rsp = http::Response::new(Either::Right(Full::new(Bytes::from(format!(
            "{message}\n"
        )))));
        *rsp.status_mut() = status;
        rsp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        rsp
    };
    rsp.headers_mut().insert(L5D_PROXY_ERROR, header);
    rsp
}

/// A header value carrying `message`: visible ASCII only, at most 512 bytes.
fn header_value(message: &str) -> HeaderValue {
    let clean: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(512)
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("proxy error"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Reason, Unavailable};
    use crate::timeout::{ResponseTimeout, TimeoutLayer};
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::{ServiceExt, service_fn};

    async fn rescue(err: BoxError, grpc: bool) -> http::Response<RescueBody<Full<Bytes>>> {
        let mut err = Some(err);
        let svc = service_fn(move |_req: http::Request<()>| {
            let e = err.take().expect("called once");
            async move { Err::<http::Response<Full<Bytes>>, _>(e) }
        });
        let mut req = http::Request::new(());
        if grpc {
            req.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
        }
        RescueLayer::new().layer(svc).oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn statuses_and_headers_name_the_cause() {
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let rsp = rescue(refused, false).await;
        assert_eq!(rsp.status(), 502);
        let full = Unavailable::new("web:80", Reason::QueueFull);
        let text = full.to_string();
        let rsp = rescue(Box::new(full), false).await;
        assert_eq!(rsp.status(), 503);
        assert_eq!(rsp.headers()[L5D_PROXY_ERROR], text.as_str());
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("{text}\n"));

        let rsp = rescue(
            Box::new(Unavailable::new("web:80", Reason::NoEndpoints)),
            true,
        )
        .await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["grpc-status"], "14");
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_become_504_and_deadline_exceeded() {
        let slow = service_fn(|req: http::Request<()>| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let _ = req;
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        });
        let svc =
            RescueLayer::new().layer(TimeoutLayer::new(Duration::from_millis(100)).layer(slow));
        let rsp = svc.clone().oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(rsp.status(), 504);
        assert_eq!(
            rsp.headers()[L5D_PROXY_ERROR],
            "request timed out after 100ms"
        );

        let mut req = http::Request::new(());
        req.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        let rsp = svc.oneshot(req).await.unwrap();
        assert_eq!(rsp.headers()["grpc-status"], "4");
        let _ = ResponseTimeout::new(Duration::ZERO, crate::timeout::TimeoutScope::Request);
    }

    #[test]
    fn header_values_are_sanitized() {
        assert_eq!(header_value("bad\r\nheader é"), "bad??header ?");
    }
}
