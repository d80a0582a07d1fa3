use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::Body;
use pin_project_lite::pin_project;

use super::TapBody;
use super::inflight::RequestTap;
use crate::BoxError;

pin_project! {
    /// The response of a [`TapService`](super::TapService): the inner future's, with its body
    /// in a [`TapBody`] and, when tapped, `ResponseInit` (or `ResponseEnd` on an error) sent.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        tap: Option<RequestTap>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) const fn new(inner: F, tap: Option<RequestTap>) -> Self {
        Self { inner, tap }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: Body,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<TapBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(rsp) => {
                let rsp = match this.tap.take().and_then(|tap| tap.response(&rsp)) {
                    None => rsp.map(TapBody::passthrough),
                    Some(observer) => rsp.map(|body| TapBody::tapped(body, observer)),
                };
                Poll::Ready(Ok(rsp))
            }
            Err(error) => {
                let error = error.into();
                if let Some(tap) = this.tap.take() {
                    tap.fail(&*error);
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tapped", &self.tap.is_some())
            .finish_non_exhaustive()
    }
}
