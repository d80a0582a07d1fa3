use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use mesh_core::BoxError;
use pin_project_lite::pin_project;
use tower::buffer::future::ResponseFuture as BufferFuture;

use super::service::QueueFuture;

pin_project! {
    /// The response of a [`Balancer`](super::Balancer): from an endpoint, or
    /// [`Unavailable`](crate::Unavailable).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Queued { #[pin] inner: BufferFuture<QueueFuture<F>> },
        Failed { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn queued(inner: BufferFuture<QueueFuture<F>>) -> Self {
        Self {
            state: State::Queued { inner },
        }
    }

    pub(super) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    BufferFuture<QueueFuture<F>>: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Queued { inner } => inner.poll(cx),
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "polled after completion".into()))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
