use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{ResponseTimeout, TimeoutScope};
use crate::BoxError;

pin_project! {
    /// The inner future, raced against the timeout.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        after: Duration,
        scope: TimeoutScope,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, after: Option<Duration>, scope: TimeoutScope) -> Self {
        Self {
            inner,
            sleep: after.map(tokio::time::sleep),
            after: after.unwrap_or_default(),
            scope,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.inner.poll(cx) {
            return Poll::Ready(res.map_err(Into::into));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => match sleep.poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Err(ResponseTimeout::new(*this.after, *this.scope).into()))
                }
                Poll::Pending => Poll::Pending,
            },
            None => Poll::Pending,
        }
    }
}
