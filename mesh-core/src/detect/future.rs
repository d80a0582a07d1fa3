use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::io::AsyncRead;
use tower_service::Service;

use super::{Detected, Detection, PrefixedIo, ReadError};
use crate::BoxError;

pin_project! {
    /// Detects the protocol, then completes the inner service's future.
    pub struct ResponseFuture<IO, S>
    where
        S: Service<(Detected, PrefixedIo<IO>)>,
    {
        #[pin]
        state: State<IO, S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<IO, S>
    where
        S: Service<(Detected, PrefixedIo<IO>)>,
    {
        Detect {
            #[pin]
            detection: Detection<IO>,
            inner: Option<S>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
    }
}

// === impl ResponseFuture ===

impl<IO, S> ResponseFuture<IO, S>
where
    S: Service<(Detected, PrefixedIo<IO>)>,
{
    pub(super) fn new(detection: Detection<IO>, inner: S) -> Self {
        Self {
            state: State::Detect {
                detection,
                inner: Some(inner),
            },
        }
    }
}

impl<IO, S> Future for ResponseFuture<IO, S>
where
    IO: AsyncRead + Unpin,
    S: Service<(Detected, PrefixedIo<IO>)>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Detect { detection, inner } => {
                    let (detected, io) = ready!(detection.poll(cx)).map_err(ReadError::new)?;
                    tracing::debug!(
                        protocol = %detected.protocol(),
                        sni = detected.protocol().sni(),
                        decided_by = %detected.decided_by(),
                        read = io.prefix().len(),
                        "Detected"
                    );
                    let mut svc = inner.take().expect("detection completes only once");
                    let future = svc.call((detected, io));
                    this.state.set(State::Inner { future });
                }
                StateProj::Inner { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}

impl<IO, S> fmt::Debug for ResponseFuture<IO, S>
where
    S: Service<(Detected, PrefixedIo<IO>)>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
